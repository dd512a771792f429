"""`Fleet`: everything the `vmfleet` command does, as a Python object.

    from vmfleet import Fleet

    with Fleet.open("fleet.yaml", on_event=print) as fleet:
        result = fleet.up()
        result.raise_for_failures()
        for vm in fleet.list():
            print(vm.name, vm.state, vm.ip)

Each method runs one command's whole sequence (for `up`: lock, recover, pull images, plan,
preflight, apply, then the groups' power step) and returns frozen data; progress goes to
`on_event` as `vmfleet.api.events` objects. Bad input raises a FleetError subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet import engine
from vmfleet.api.cluster import Clusters
from vmfleet.api.day2 import Day2
from vmfleet.api.eventlog import EventLog
from vmfleet.api.events import EventCallback, Notice, Planned, Recovered
from vmfleet.api.farm import FarmMethods
from vmfleet.api.moves import Moves
from vmfleet.api.results import (
    Confirm,
    ExpandedVm,
    Outcomes,
    TemplateSummary,
    UpResult,
    Validation,
    VmInfo,
    VmOutcome,
    from_row,
)
from vmfleet.core import groups as core_groups
from vmfleet.core import targets as core_targets
from vmfleet.core.expand import expand
from vmfleet.errors import FleetError
from vmfleet.spec.load import load
from vmfleet.spec.units import format_size

if TYPE_CHECKING:
    from vmfleet.core.plan import Plan
    from vmfleet.drivers.commands import CommandRunner
    from vmfleet.engine.apply import Outcome
    from vmfleet.engine.context import FleetContext, HostFactory

ConfirmCallback = Callable[[Confirm], bool]


class Fleet(Moves, Day2, EventLog, FarmMethods, Clusters):
    """One fleet file and the hosts it runs on. Use as a context manager (or call `close`)."""

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        state: Path | str | None = None,
        hosts: HostFactory | None = None,
        runner: CommandRunner | None = None,
        on_event: EventCallback | None = None,
        lock_wait: float = 0.0,
    ) -> Fleet:
        """Load and validate a fleet file (SpecError with every problem's file:line).

        `state`: the state folder (default `.vmfleet/` beside the file). `hosts`: the host
        factory, `(uri, host name) → LibvirtHost`. `runner`: the command runner for local
        programs (qemu-img, ssh-keygen, gate commands). `on_event`: progress callback.
        `lock_wait`: seconds to wait for another run's lock. Nothing is touched until a
        method needs it; no host is contacted here.
        """
        return cls(
            load(Path(path)),
            state=None if state is None else Path(state),
            hosts=hosts,
            runner=runner,
            on_event=on_event,
            lock_wait=lock_wait,
        )

    def __enter__(self) -> Fleet:
        return self

    # --- the file alone -----------------------------------------------------------------------

    def validate(self) -> Validation:
        """Check what needs no host (referenced files exist inside the fleet's folder or
        `trusted_paths`, `{env:}` secrets are set, each VM's user-data renders to valid
        cloud-config; SpecError with every problem) and summarise the file: templates,
        their VMs and sizes."""
        instances = expand(self.spec, fleet=self.name)
        engine.checks.offline(self.loaded, instances)
        details = []
        for name, template in self.spec.vms.items():
            mine = [i for i in instances if i.template == name]
            first = mine[0].fields
            details.append(
                TemplateSummary(
                    template=name,
                    replicas=template.replicas,
                    vms=tuple(i.name for i in mine),
                    vcpus=first.vcpus,
                    memory=format_size(first.memory),
                    disk=format_size(first.disk),
                )
            )
        return Validation(
            file=str(self.path),
            format=self.loaded.format,
            fleet=self.name,
            templates=len(details),
            vms=len(instances),
            groups=len(self.spec.groups),
            valid=True,
            details=tuple(details),
        )

    def show(self) -> tuple[ExpandedVm, ...]:
        """Every VM the file expands to, with sizes, MACs, IPs, groups and labels."""
        instances = expand(self.spec, fleet=self.name)
        member_of = core_groups.memberships(self.spec, instances)
        return tuple(
            ExpandedVm(
                name=i.name,
                template=i.template,
                index=i.index,
                vcpus=i.fields.vcpus,
                memory=format_size(i.fields.memory),
                memory_bytes=i.fields.memory,
                disk=format_size(i.fields.disk),
                disk_bytes=i.fields.disk,
                image=i.fields.image,
                mac=tuple(n.mac for n in i.nics),
                ip=tuple(n.ip for n in i.nics if n.ip) or None,
                networks=tuple(n.network for n in i.nics),
                groups=member_of[i.name],
                labels=dict(i.fields.labels),
                host=i.fields.host,
            )
            for i in instances
        )

    # --- plan, up, down -----------------------------------------------------------------------

    def plan(
        self, targets: Sequence[str] = (), *, prune: bool = False, restart: bool = False
    ) -> Plan:
        """The steps `up` would take now (for `targets` only, when given; `prune` and
        `restart` as for `up`). Takes no lock and changes nothing: no KVM probe (an unknown
        answer is planned as KVM; see `kvm_unknown`), no state folder, lease or key."""
        ctx = self._context(readonly=True)
        plan = engine.make_plan(ctx, prune=prune, restart=restart, hold=engine.groups.held(ctx))
        return self._limit(ctx, plan, targets)

    def kvm_unknown(self) -> tuple[str, ...]:
        """The `domain_type: auto` hosts whose KVM probe has not run yet (`up` runs it)."""
        return tuple(engine.hosts.kvm_unknown(self._context(readonly=True)))

    def explain(self, vm: str) -> engine.hosts.Explanation:
        """Host by host, why `vm` goes (or went) where it does."""
        ctx = self._context(readonly=True)
        observed = {o.name: o.host for o in engine.observe(ctx).vms}
        return engine.hosts.explain(ctx, vm, observed)

    def up(
        self,
        targets: Sequence[str] = (),
        *,
        prune: bool = False,
        restart: bool = False,
        workers: int = 8,
        confirm: ConfirmCallback | None = None,
    ) -> UpResult:
        """Make the hosts match the file (only `targets`' VMs when given): roll back what an
        interrupted run left, pull missing images, plan, preflight (every fault before any
        change), apply with `workers` in parallel, wait for readiness, then apply the
        groups' `power_state`. `prune` also removes VMs the spec dropped; `restart` restarts
        running VMs whose change needs a reboot. `confirm` is asked before either.

        A VM that fails is rolled back and reported in the result (see
        `UpResult.raise_for_failures`); the groups' step then does not run.
        """
        from vmfleet.core.plan import Plan, replan

        with self._locked(f"up {self.path}") as ctx, self._timed(ctx, "up"):
            engine.checks.offline(ctx.loaded, ctx.instances(), images=False)
            recovered = tuple(engine.recover(ctx))
            for item in recovered:
                self._on_event(Recovered(item))
            self._cluster_apply(ctx, targets)
            targets = self._split(targets)[1] if targets else targets
            if targets == []:  # only HA VMs were named: their cluster has them
                return UpResult(self.name, Plan(()), (), (), None, recovered, (), up_to_date=True)
            lost_key = ctx.generated_key_missing()  # before anything makes a new one
            pulled = self._pull(ctx, None) if engine.images.missing(ctx) else ()
            self._prepare(ctx, sorted({i.fields.image for i in ctx.instances() if i.fields.image}))
            hold = engine.groups.held(ctx)
            seen = engine.observe(ctx)
            full = engine.make_plan(ctx, seen, probe=True, prune=prune, restart=restart, hold=hold)
            the_plan = self._limit(ctx, full, targets)
            existing = [a.vm for a in the_plan.actions if a.observed is not None]
            if lost_key is not None and existing:
                self._on_event(
                    Notice(
                        f"the fleet's login key {lost_key} is missing: a new one is made for "
                        f"new VMs, but {', '.join(existing)} accept only the old key, which "
                        "vmfleet never keeps in libvirt (restore it, or recreate those VMs)"
                    )
                )
            for warning in engine.preflight.check(ctx, the_plan):
                self._on_event(Notice(warning))
            only = {a.vm for a in the_plan.actions} if targets else None
            if the_plan.empty:
                # Nothing to change, but every running VM must be ready (a killed run may
                # have started one and never seen it come up): engine.up waits for them.
                waited = _outcomes(engine.up(ctx, the_plan, workers=workers))
                if not all(o.ok for o in waited):
                    return UpResult(self.name, the_plan, waited, (), None, recovered, pulled)
                groups, error = self._apply_groups(ctx, created=(), only=only)
                return UpResult(
                    self.name, the_plan, waited, groups, error, recovered, pulled, up_to_date=True
                )
            restart = restart and self._agree(confirm, "restart", _doing(the_plan, "stop"))
            prune = prune and self._agree(confirm, "prune", _doing(the_plan, "remove"))
            if not (restart and prune):
                full = replan(full, hosts=seen.hosts, prune=prune, restart=restart, hold=hold)
                the_plan = self._limit(ctx, full, targets)
            self._on_event(Planned(the_plan, prune))
            busy = [
                a.vm
                for a in the_plan.actions
                if a.steps
                or (a.kind == "unchanged" and a.observed and a.observed.state == "running")
            ]
            results = engine.up(
                ctx,
                the_plan,
                progress=self._stage(f"up {self.name}", busy),
                workers=workers,
            )
            outcomes = _outcomes(results)
            if not all(o.ok for o in outcomes):
                return UpResult(self.name, the_plan, outcomes, (), None, recovered, pulled)
            created = {o.vm for o in outcomes if o.action == "create"}
            groups, error = self._apply_groups(ctx, created=created, only=only)
            return UpResult(self.name, the_plan, outcomes, groups, error, recovered, pulled)

    def down(
        self,
        targets: Sequence[str] = (),
        *,
        workers: int = 8,
        confirm: ConfirmCallback | None = None,
        graceful: float | None = None,
    ) -> Outcomes:
        """Stop and remove the fleet's VMs (all, or those `targets` name), their disks and
        seeds; base images stay. Running VMs are pulled (destroyed) at once, or with
        `graceful` asked to shut down and pulled after that many seconds. `confirm` is asked
        first; False cancels (FleetError)."""
        with self._locked(f"down {self.path}") as ctx:
            recovered = tuple(engine.recover(ctx))
            for item in recovered:
                self._on_event(Recovered(item))
            seen = engine.observe(ctx)
            ha_targets, targets = self._split(targets) if targets else ([], [])
            ha_chosen = sorted(self._ha_named(ha_targets) if ha_targets else ())
            if not ha_targets and not targets:
                ha_chosen = sorted(self.ha_vms())
            if (ha_targets and not targets) or (ha_chosen and not ctx.instances()):
                # only HA VMs: libvirt's hosts are not needed (a cluster node may be down)
                if not self._agree(confirm, "remove", ha_chosen):
                    raise FleetError("cancelled: nothing was removed")
                removed = self._cluster_remove(ctx, ha_targets)
                return Outcomes(self.name, removed, recovered)
            names = self._existing(ctx, targets, seen) if targets else None
            chosen = [o.name for o in seen.vms if names is None or o.name in names]
            if (chosen or ha_chosen) and not self._agree(confirm, "remove", chosen + ha_chosen):
                raise FleetError("cancelled: nothing was removed")
            results = engine.down(
                ctx,
                names,
                progress=self._stage(f"down {self.name}", chosen),
                workers=workers,
                graceful=graceful,
                observation=seen,
            )
            removed = self._cluster_remove(ctx, ha_targets) if ha_targets or not names else ()
            return Outcomes(self.name, _outcomes(results) + removed, recovered)

    # --- what runs, and power -----------------------------------------------------------------

    def list(self) -> tuple[VmInfo, ...]:
        """Every VM of the fleet as the hosts report it (also those the spec dropped)."""
        rows = tuple(from_row(VmInfo, row) for row in engine.listing(self._context(readonly=True)))
        return rows + self._cluster_rows()

    def start(self, targets: Sequence[str]) -> Outcomes:
        """Start the VMs `targets` name (already running ones are left as they are)."""
        return self._power_verb(targets, "start")

    def stop(self, targets: Sequence[str]) -> Outcomes:
        """Shut the VMs `targets` name down gracefully (forced after a timeout)."""
        return self._power_verb(targets, "stop")

    def reboot(self, targets: Sequence[str]) -> Outcomes:
        """Reboot the VMs `targets` name."""
        return self._power_verb(targets, "reboot")

    def _power_verb(self, targets: Sequence[str], verb: str) -> Outcomes:
        ha_targets, targets = self._split(targets)
        cluster_done = self._cluster_power(ha_targets, verb)
        if ha_targets and not targets:
            return Outcomes(self.name, cluster_done)
        ctx = self._context()
        seen = engine.observe(ctx)
        names = self._existing(ctx, targets, seen)
        self._require_present(names, seen, fleet=self.name)
        with self._timed(ctx, "vm-power"):
            done = _outcomes(engine.power(ctx, names, verb))
        return Outcomes(self.name, done + cluster_done)

    # --- helpers ------------------------------------------------------------------------------

    def _limit(self, ctx: FleetContext, plan: Plan, targets: Sequence[str]) -> Plan:
        if not targets:
            return plan
        from vmfleet.core.plan import Plan

        chosen = core_targets.resolve_all(self.spec, ctx.instances(), targets, fleet=self.name)
        names = {i.name for i in chosen}
        actions = tuple(a for a in plan.actions if a.vm in names)
        hosts = {a.host for a in actions if a.kind != "orphan"}
        steps = tuple(s for s in plan.host_steps if s.host in hosts)
        return Plan(actions, steps, plan.facts)

    @staticmethod
    def _agree(confirm: ConfirmCallback | None, action: str, vms: Sequence[str]) -> bool:
        if not vms:
            return True
        return confirm is None or confirm(Confirm(action, tuple(vms)))  # type: ignore[arg-type]

    def _apply_groups(
        self, ctx: FleetContext, *, created: Collection[str], only: Collection[str] | None
    ) -> tuple[tuple[engine.groups.MemberOutcome, ...], str | None]:
        if not core_groups.governing(self.spec):
            return (), None
        progress = self._stage(f"groups of {self.name}", sorted(engine.groups.held(ctx)))
        try:
            done = engine.groups.apply_spec(ctx, created=created, progress=progress, only=only)
        except engine.groups.GroupPowerError as error:
            return tuple(error.outcomes), str(error)
        return tuple(done), None


def _doing(plan: Plan, step: str) -> list[str]:
    """The VMs whose steps include `step` (stop: a restart; remove: a prune)."""
    return [a.vm for a in plan.actions if any(s.kind == step for s in a.steps)]


def _outcomes(results: Sequence[Outcome]) -> tuple[VmOutcome, ...]:
    return tuple(
        VmOutcome(r.vm, r.action, r.ok, r.detail, r.seconds, r.ready_seconds) for r in results
    )
