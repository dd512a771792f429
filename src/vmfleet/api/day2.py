"""The `Fleet` methods for running fleets: group power and status, snapshots, reaching the
VMs (endpoints, ssh_config, inventory, ips, exec), hosts and images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vmfleet import engine
from vmfleet.api.base import FleetBase
from vmfleet.api.events import Notice
from vmfleet.api.results import ImageRow, SnapshotRow, from_row
from vmfleet.core import groups as core_groups
from vmfleet.core.snapshots import DEFAULT_TIMEOUT as SNAPSHOT_TIMEOUT
from vmfleet.engine.context import FleetContext
from vmfleet.errors import UsageError

POWER_VERBS = {
    "on": core_groups.POWERED_ON,
    "off": core_groups.POWERED_OFF,
    "suspend": core_groups.SUSPENDED,
    "resume": "Resumed",
}


class Day2(FleetBase):
    """Operations on a fleet that is up; see `Fleet`."""

    # --- groups -------------------------------------------------------------------------------

    def power(self, group: str, verb: str | None = None) -> tuple[engine.groups.MemberOutcome, ...]:
        """Power a group: `on` walks its boot order tier by tier (gates and delays), `off`
        stops tiers in reverse, `suspend`/`resume` act on all members at once; None brings
        every member back to the group's wanted state. GroupPowerError (with the outcomes)
        when a gate or member failed."""
        if verb is not None and verb not in POWER_VERBS:
            raise UsageError(f"unknown power verb {verb!r} (on, off, suspend, resume)")
        with self._locked(f"power {group}") as ctx:
            self._require_group(ctx, group)
            if verb is None:
                records = engine.groups.records(ctx)
                wanted, _record = core_groups.desired_state(self.spec, group, records)
                if wanted is None:
                    raise UsageError(f"group {group} has no power state to sync to; name a verb")
            else:
                wanted = POWER_VERBS[verb]
            vms = core_groups.vms_of(self.spec, ctx.instances(), group)
            progress = self._stage(f"power {group} {wanted}", vms)
            with self._timed(ctx, "group-power"):
                return tuple(engine.groups.power(ctx, group, wanted, progress=progress))

    def status(self, group: str | None = None) -> tuple[core_groups.GroupStatus, ...]:
        """The group tree (parents first; only `group` and its nested groups when given):
        each member's GroupLinked, PowerStateSynced and PlacementReady, each group's Ready."""
        ctx = self._context(readonly=True)
        if group is not None:
            self._require_group(ctx, group)
        found = engine.groups.group_status(ctx)
        if group is None:
            return tuple(found)
        keep = {group}
        for g in found:  # parents come before children
            if g.parent in keep:
                keep.add(g.name)
        return tuple(g for g in found if g.name in keep)

    def _require_group(self, ctx: FleetContext, group: str) -> None:
        if group not in self.spec.groups:
            raise UsageError(f"no group {group!r} in fleet {ctx.fleet}")

    # --- snapshots ----------------------------------------------------------------------------

    def _members(
        self, ctx: FleetContext, targets: Sequence[str], group: str | None, all_vms: bool
    ) -> list[engine.snapshots.Member]:
        vms = self._existing(ctx, targets, engine.observe(ctx)) if targets else []
        if targets and not vms:
            raise UsageError(f"{', '.join(targets)} names no VM")
        return engine.snapshots.members(ctx, vms=vms, group=group, all_vms=all_vms)

    def snapshot_create(
        self,
        name: str,
        targets: Sequence[str] = (),
        *,
        group: str | None = None,
        all_vms: bool = False,
        timeout: float = SNAPSHOT_TIMEOUT,
        kind: str | None = None,
    ) -> engine.snapshots.CreateReport:
        """Snapshot VMs (targets, or a group, or all) at one moment: freeze or pause, snapshot
        all, thaw/resume; then retention deletes what `snapshots: {keep: N}` drops."""
        with self._locked(f"snapshot {self.path}") as ctx:
            chosen = self._members(ctx, targets, group, all_vms)
            return engine.snapshots.create(
                ctx, chosen, name, group=group, timeout=timeout, kind=kind
            )

    def snapshot_list(
        self, targets: Sequence[str] = (), *, group: str | None = None
    ) -> tuple[SnapshotRow, ...]:
        """Snapshots per VM (of targets, a group, or all VMs), read from libvirt."""
        ctx = self._context()
        chosen = self._members(ctx, targets, group, not targets and group is None)
        return tuple(from_row(SnapshotRow, row) for row in engine.snapshots.listing(ctx, chosen))

    def snapshot_revert(
        self,
        name: str,
        targets: Sequence[str] = (),
        *,
        group: str | None = None,
        all_vms: bool = False,
        timeout: float = SNAPSHOT_TIMEOUT,
    ) -> tuple[engine.snapshots.MemberResult, ...]:
        """Revert VMs to a snapshot, each back to the power state it had then."""
        return self._snapshot_each(engine.snapshots.revert, name, targets, group, all_vms, timeout)

    def snapshot_delete(
        self,
        name: str,
        targets: Sequence[str] = (),
        *,
        group: str | None = None,
        all_vms: bool = False,
        timeout: float = SNAPSHOT_TIMEOUT,
    ) -> tuple[engine.snapshots.MemberResult, ...]:
        """Delete a snapshot of VMs and free its space."""
        return self._snapshot_each(engine.snapshots.delete, name, targets, group, all_vms, timeout)

    def _snapshot_each(
        self,
        verb: engine.snapshots.Verb,
        name: str,
        targets: Sequence[str],
        group: str | None,
        all_vms: bool,
        timeout: float,
    ) -> tuple[engine.snapshots.MemberResult, ...]:
        with self._locked(f"snapshot {self.path}") as ctx:
            chosen = self._members(ctx, targets, group, all_vms)
            return tuple(verb(ctx, chosen, name, timeout=timeout))

    # --- reaching the VMs ---------------------------------------------------------------------

    def endpoints(
        self, targets: Sequence[str] = ("all",), *, readonly: bool = True
    ) -> tuple[engine.access.Endpoint, ...]:
        """Where each named VM's SSH is now: address (or 127.0.0.1 forward), user, key.
        A `Notice` says so when the generated login key those VMs need is gone. `readonly`
        (ssh-config, inventory, ips) writes nothing; otherwise known_hosts is rebuilt from
        libvirt when the state dir was lost."""
        ctx = self._context(readonly=readonly)
        found = tuple(engine.access.endpoints(ctx, self.resolve(targets)))
        missing = ctx.generated_key_missing()
        existing = [e.vm for e in found if e.state not in ("absent", "unreachable")]
        if missing is not None and existing:
            self._on_event(
                Notice(
                    f"the fleet's login key {missing} is missing; {', '.join(existing)} "
                    "accept only that key, which vmfleet never keeps in libvirt: restore it "
                    "from a backup, or recreate the VMs (down, then up)"
                )
            )
        return found

    def ssh_config(self) -> str:
        """A Host block per VM, for `Include` in ~/.ssh/config."""
        return engine.access.ssh_config(list(self.endpoints()))

    def inventory(self) -> dict[str, object]:
        """An Ansible inventory (YAML form): groups per template, group, host and label."""
        return engine.access.inventory(self._context(readonly=True), list(self.endpoints()))

    def ips(self) -> dict[str, engine.access.Endpoint]:
        """VM name → endpoint, for the VMs that have an address now."""
        return {e.vm: e for e in self.endpoints() if e.address}

    def exec(
        self, targets: Sequence[str], command: str, *, timeout: float = 300.0
    ) -> tuple[engine.execute.ExecResult, ...]:
        """Run a shell command over SSH on the named VMs in parallel; one result each."""
        found = self.endpoints(targets, readonly=False)
        progress = self._stage(f"exec {command}", [e.vm for e in found])
        return tuple(engine.execute.run(found, command, timeout=timeout, progress=progress))

    # --- hosts and images ---------------------------------------------------------------------

    def hosts(self, *, probe: bool = False) -> tuple[Mapping[str, object], ...]:
        """Each host: reachable or not, capabilities, capacity, allocation, VMs (one row each,
        numbers in bytes and vCPUs). `probe` boots the KVM probe on `domain_type: auto` hosts
        whose answer is not cached (and caches it); without, an unknown answer is None.
        `migrations` names the VMs moving in and out of each host now."""
        ctx = self._context(readonly=not probe)
        moving = engine.inflight.by_host(engine.inflight.journaled(ctx.store))
        return tuple(engine.hosts.rows(engine.hosts.gather(ctx, probe=probe), moving))

    def image_pull(self, names: Sequence[str] = (), *, update: bool = False) -> tuple[str, ...]:
        """Download the fleet's URL images (or those named) into the cache; those fetched.
        Catalog images are pinned at their first pull; a later pull that finds the publisher's
        "latest" changed raises ImageError, unless `update` takes the new one. Images with
        `prepare:` are then prepared (cached by recipe; a Notice says each one's time)."""
        ctx = self._context()
        fetched = self._pull(ctx, list(names) or None, update=update, check=True)
        self._prepare(ctx, list(names) or None)
        return fetched

    def image_list(self) -> tuple[ImageRow, ...]:
        """Each image: source, local file, hosts holding its base volume, disks using it."""
        return tuple(from_row(ImageRow, row) for row in engine.images.listing(self._context()))

    def image_rm(self, name: str) -> tuple[str, ...]:
        """Remove an image's base volumes and cached download (refused while disks use it)."""
        with self._locked(f"image rm {name}") as ctx:
            return tuple(engine.images.remove(ctx, name))
