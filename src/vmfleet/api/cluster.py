"""The `Fleet` methods for HA VMs on Pacemaker clusters (`clusters:` and `ha:`): apply,
remove, start, stop, migrate, status, standby, and the export of what a cluster gets."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmfleet import engine
from vmfleet.api.base import FleetBase
from vmfleet.api.events import Stage, VmProgress
from vmfleet.api.results import VmInfo, VmOutcome
from vmfleet.core.expand import expand
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError
from vmfleet.spec.resolve import is_ha
from vmfleet.spec.units import format_size

if TYPE_CHECKING:
    from vmfleet.engine.ha import Change, ClusterReport


class Clusters(FleetBase):
    """Operations on the fleet's HA VMs; see `Fleet`. The cluster owns their lifecycle."""

    def ha_vms(self) -> set[str]:
        """Names of the VMs a cluster manages."""
        if not self.spec.clusters:  # no cluster: none (and the HA engine stays unloaded)
            return set()
        return engine.ha.ha_vm_names(self._context())

    def cluster_up(self) -> tuple[Change, ...]:
        """Storage, definitions and cluster configuration of every HA VM (idempotent)."""
        with self._locked(f"cluster up {self.path}") as ctx:
            return tuple(engine.ha.up(ctx))

    def cluster_down(self, vms: Sequence[str] = ()) -> tuple[Change, ...]:
        """Seed 001's vm_delete for the HA VMs (all, or `vms`)."""
        with self._locked(f"cluster down {self.path}") as ctx:
            return tuple(engine.ha.down(ctx, set(vms) if vms else None))

    def cluster_start(self, vm: str) -> str:
        """Start an HA VM through its cluster; returns the node it runs on."""
        return engine.ha.start(self._context(), vm)

    def cluster_stop(self, vm: str) -> None:
        engine.ha.stop(self._context(), vm)

    def cluster_migrate(self, vm: str, node: str) -> str:
        """Move an HA VM to `node` (live when allowed), wait, clear the move; returns the
        node it left."""
        return engine.ha.migrate(self._context(), vm, node)

    def cluster_status(self) -> tuple[ClusterReport, ...]:
        return tuple(engine.ha.status(self._context()))

    def standby(self, node: str, *, on: bool = True) -> None:
        """Drain a cluster node (or let it run resources again)."""
        engine.ha.standby(self._context(), node, on=on)

    def cluster_export(self, *, fmt: str = "cib", cluster: str | None = None) -> str:
        """What `cluster_up` applies, touching nothing: a `<cib>` per cluster, or `pcs`
        command lines."""
        from vmfleet.core import cluster as core_cluster

        names = [cluster] if cluster else list(self.spec.clusters)
        unknown = [n for n in names if n not in self.spec.clusters]
        if unknown or not names:
            raise UsageError(f"no cluster {unknown[0] if unknown else ''!r} in {self.path}")
        if fmt not in ("cib", "pcs"):
            raise UsageError(f"unknown export format {fmt!r} (cib or pcs)")
        instances = expand(self.spec, fleet=self.name)
        parts = []
        for name in names:
            config = core_cluster.wanted(self.spec, instances, fleet=self.name, cluster=name)
            if fmt == "pcs":
                lines = [f"# cluster {name}: pcs -f cib.xml <command>, then pcs cluster cib-push"]
                lines += [shlex.join(argv) for argv in core_cluster.pcs_commands(config)]
                parts.append("\n".join(lines) + "\n")
            else:
                fragment = core_cluster.fragment(config)
                root = core_cluster.standalone(fragment, fleet=self.name, nodes=config.spec.nodes)
                parts.append(core_cluster.tostring(root))
        return "".join(parts)

    # --- routing of up/down/start/stop/list (called by `Fleet`) -------------------------------

    def _ha_templates(self) -> dict[str, str]:
        """HA VM name → its template."""
        return {
            i.name: i.template
            for i in expand(self.spec, fleet=self.name)
            if is_ha(self.spec, i.template, i.index)
        }

    def _split(self, targets: Sequence[str]) -> tuple[list[str], list[str]]:
        """Target words naming HA VMs (or templates of them), and the others."""
        index = self._ha_templates()
        mine = [t for t in targets if t in index or t in index.values()]
        return mine, [t for t in targets if t not in mine]

    def _ha_named(self, words: Sequence[str]) -> set[str]:
        index = self._ha_templates()
        return {vm for vm, template in index.items() if vm in words or template in words}

    def _cluster_apply(self, ctx: FleetContext, targets: Sequence[str]) -> None:
        """`up`'s cluster part: every HA VM's storage, definition and resources (the whole
        configuration is applied at once, so targets only decide whether it runs)."""
        if not self.spec.clusters or (targets and not self._split(targets)[0]):
            return
        names = sorted(engine.ha.ha_vm_names(ctx))
        if not names:
            return
        self._on_event(Stage(f"cluster up {self.name}", tuple(names)))
        for change in engine.ha.up(ctx):
            self._on_event(VmProgress(change.vm or names[0], "cluster", change.action))

    def _cluster_remove(self, ctx: FleetContext, targets: Sequence[str]) -> tuple[VmOutcome, ...]:
        if not self.spec.clusters:
            return ()
        chosen = self._ha_named(self._split(targets)[0]) if targets else None
        if chosen is not None and not chosen:
            return ()
        done = engine.ha.down(ctx, chosen)
        return tuple(
            VmOutcome(vm, "remove", True, "through the cluster")
            for vm in sorted({c.vm for c in done if c.vm})
        )

    def _cluster_power(self, words: Sequence[str], verb: str) -> tuple[VmOutcome, ...]:
        out = []
        for vm in sorted(self._ha_named(words)):
            try:
                if verb == "start":
                    detail = f"running on {engine.ha.start(self._context(), vm)}"
                elif verb == "stop":
                    engine.ha.stop(self._context(), vm)
                    detail = "stopped through the cluster"
                else:
                    raise UsageError(f"{vm} is an HA VM: {verb} it through its cluster")
            except FleetError as error:
                out.append(VmOutcome(vm, verb, False, str(error)))
                continue
            out.append(VmOutcome(vm, verb, True, detail))
        return tuple(out)

    def _cluster_rows(self) -> tuple[VmInfo, ...]:
        """`list` rows for HA VMs: the node the cluster runs each on and its state."""
        if not self.spec.clusters:
            return ()
        sizes = {i.name: i.fields for i in expand(self.spec, fleet=self.name)}
        templates = self._ha_templates()
        try:
            reports = engine.ha.status(self._context())
        except FleetError:
            return tuple(
                VmInfo(vm, "", "", "unreachable", None, None, None, None, None, None)
                for vm in sorted(self.ha_vms())
            )
        rows = []
        for report in reports:
            for vm in report.vms:
                fields = sizes[vm.vm]
                state = f"{vm.state} (cluster {report.name})"
                if vm.fail_count:
                    state += f", {vm.fail_count} failures"
                if vm.problem:
                    state += f": {vm.problem}"
                rows.append(
                    VmInfo(
                        vm.vm, templates[vm.vm],
                        vm.where, state, fields.vcpus, format_size(fields.memory),
                        format_size(fields.disk), None, None, None, ha=vm,
                    )
                )  # fmt: skip
        return tuple(rows)
