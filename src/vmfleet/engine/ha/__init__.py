"""HA VMs on Pacemaker clusters: `up`, `down`, `start`/`stop`, `migrate`, `status`, `standby`.

The cluster owns these VMs' lifecycle (seed 001: "never use virsh directly"): vmfleet makes
their storage, writes their domain XML where every node reads it, and applies the cluster
configuration as one CIB replace; after that it only changes target roles, moves and
standby flags, and waits for what crm_mon reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from vmfleet.core import cluster as cib
from vmfleet.core.cluster import ClusterConfig, HaVm
from vmfleet.core.expand import Instance, expand
from vmfleet.drivers.pacemaker import ClusterStatus, ClusterTools
from vmfleet.engine.context import FleetContext
from vmfleet.engine.ha.definition import domain_xml
from vmfleet.engine.ha.disks import read_views
from vmfleet.engine.ha.nodes import node_tools, per_node, reachable, wait_for
from vmfleet.engine.ha.status import HaVmState, vm_state
from vmfleet.errors import UsageError
from vmfleet.state import durations

START_TIMEOUT = 120.0
MIGRATE_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Change:
    """One thing `up` or `down` did (or found already done)."""

    cluster: str
    vm: str | None
    action: str


def configs(ctx: FleetContext, vms: set[str] | None = None) -> list[ClusterConfig]:
    """The wanted configuration of every cluster with HA VMs (all VMs, or those in `vms`)."""
    spec = ctx.loaded.spec
    instances = expand(spec, fleet=ctx.fleet)  # ctx.instances() holds libvirt's VMs only
    out = []
    for name in spec.clusters:
        config = cib.wanted(spec, instances, fleet=ctx.fleet, cluster=name)
        if vms is not None:
            config = _only(config, vms)
        out.append(config)
    return out


def _only(config: ClusterConfig, vms: set[str]) -> ClusterConfig:
    return replace(config, vms=tuple(v for v in config.vms if v.name in vms))


def ha_vm_names(ctx: FleetContext) -> set[str]:
    """Names of the fleet's VMs that a cluster manages."""
    return {vm.name for config in configs(ctx) for vm in config.vms}


def _tools(ctx: FleetContext, config: ClusterConfig) -> ClusterTools:
    return reachable(ctx.runner, config.spec, name=config.name)


def _file_tools(ctx: FleetContext, config: ClusterConfig) -> list[ClusterTools]:
    """Where definitions go: on shared storage through one node that answers; otherwise on
    every node when each has its own command, else here."""
    if config.spec.storage.type == "shared" and config.spec.definitions is None:
        return [_tools(ctx, config)]
    nodes = config.spec.nodes if per_node(config.spec) else config.spec.nodes[:1]
    return [node_tools(ctx.runner, config.spec, node) for node in nodes]


def up(ctx: FleetContext) -> list[Change]:
    """Storage, definitions and the CIB for every HA VM; a second run changes nothing."""
    changes: list[Change] = []
    instances = {i.name: i for i in expand(ctx.loaded.spec, fleet=ctx.fleet)}
    for config in configs(ctx):
        if not config.vms:
            continue
        tools = _tools(ctx, config)
        for vm in config.vms:
            changes += _storage(ctx, config, tools, vm)
            changes += _definition(ctx, config, vm, instances[vm.name])
        current = tools.cib()
        new = cib.merged(current, cib.fragment(config), fleet=ctx.fleet)
        if cib.canonical(new) != cib.canonical(cib.configuration(current)):
            tools.replace_configuration(cib.tostring(new))
            changes.append(Change(config.name, None, "cib updated"))
            ctx.store.event(kind="ha", message=f"cluster {config.name}: configuration applied")
    return changes


def _storage(
    ctx: FleetContext, config: ClusterConfig, tools: ClusterTools, vm: HaVm
) -> list[Change]:
    changes = []
    if config.drbd:
        existing = tools.linstor_definitions()
        create = cib.linstor_create(config, vm)
        for disk in vm.disks:
            if disk.resource in existing:
                continue
            for argv in create:
                if disk.resource in argv:
                    tools.linstor(argv)
            changes.append(Change(config.name, vm.name, f"linstor {disk.resource} created"))
    else:
        for disk in vm.disks:
            if not tools.exists(disk.path):
                tools.create_disk(disk.path, disk.size_gib)
                changes.append(Change(config.name, vm.name, f"disk {disk.path} created"))
    return changes


def _definition(
    ctx: FleetContext, config: ClusterConfig, vm: HaVm, instance: Instance
) -> list[Change]:
    xml = domain_xml(ctx.loaded.spec, config, vm, instance, fleet=ctx.fleet).encode()
    changes = []
    for tools in _file_tools(ctx, config):
        current = tools.run(["cat", vm.config], check=False)
        if not current.ok or current.stdout != xml:
            tools.write_file(vm.config, xml)
            changes.append(Change(config.name, vm.name, f"definition {vm.config} written"))
    return changes


def _find(ctx: FleetContext, vm: str) -> ClusterConfig:
    for config in configs(ctx):
        if any(v.name == vm for v in config.vms):
            return _only(config, {vm})
    raise UsageError(f"{vm!r} is not a VM of a cluster in this fleet")


def _active_nodes(status: ClusterStatus, vm: HaVm) -> list[str]:
    return status.running_on(vm.resource)


def start(ctx: FleetContext, vm: str, *, timeout: float = START_TIMEOUT) -> str:
    """target-role=Started, then wait until the cluster runs it; returns its node."""
    config = _find(ctx, vm)
    ha = config.vms[0]
    tools = _tools(ctx, config)
    tools.set_target_role(ha.resource, "Started")
    status = wait_for(
        tools,
        lambda s: _runs_on_one_node(ctx, config, ha, s),
        timeout=timeout,
        what=f"{vm} to start",
    )
    ctx.store.event(kind="power", vm=vm, message="started through the cluster")
    return _active_nodes(status, ha)[0]


def _runs_on_one_node(
    ctx: FleetContext, config: ClusterConfig, vm: HaVm, status: ClusterStatus
) -> bool:
    """Pacemaker reports the VM on one node and that node's libvirt runs it: crm_mon alone
    can still show a copy that went away since the last probe or monitor."""
    nodes = _active_nodes(status, vm)
    if len(nodes) != 1:
        return False
    there = node_tools(ctx.runner, config.spec, nodes[0])
    return vm.name in there.running_domains(config.spec.hypervisor)


def stop(ctx: FleetContext, vm: str, *, timeout: float = START_TIMEOUT) -> None:
    """target-role=Stopped, then wait until it runs nowhere."""
    config = _find(ctx, vm)
    ha = config.vms[0]
    tools = _tools(ctx, config)
    tools.set_target_role(ha.resource, "Stopped")
    wait_for(tools, lambda s: not s.active_on(ha.resource), timeout=timeout, what=f"{vm} to stop")
    ctx.store.event(kind="power", vm=vm, message="stopped through the cluster")


def migrate(ctx: FleetContext, vm: str, node: str, *, timeout: float = MIGRATE_TIMEOUT) -> str:
    """Seed 001's vm_migrate: check the source, move, wait for the real state, clear the move
    constraint, verify the new location. Returns the node it left."""
    config = _find(ctx, vm)
    if node not in config.spec.nodes:
        raise UsageError(f"{node!r} is not a node of cluster {config.name!r}")
    ha = config.vms[0]
    tools = _tools(ctx, config)
    source = _active_nodes(tools.status(), ha)
    if len(source) != 1:
        raise UsageError(f"{vm} is not running on exactly one node ({source or 'stopped'})")
    if source == [node]:
        return node
    began = time.monotonic()
    tools.move(ha.resource, node)
    try:
        wait_for(
            tools,
            lambda s: _active_nodes(s, ha) == [node],
            timeout=timeout,
            what=f"{vm} to run on {node}",
        )
    finally:
        tools.clear(ha.resource)
    wait_for(
        tools,
        lambda s: _active_nodes(s, ha) == [node] and _runs_on_one_node(ctx, config, ha, s),
        timeout=timeout,
        what=f"{vm} to stay",
    )
    durations.record(ctx.store, "ha-migration", time.monotonic() - began, subject=vm)
    ctx.store.event(kind="migrate", vm=vm, message=f"{source[0]} -> {node}")
    return source[0]


@dataclass(frozen=True, slots=True)
class ClusterReport:
    name: str
    status: ClusterStatus
    vms: tuple[HaVmState, ...]


def status(ctx: FleetContext) -> list[ClusterReport]:
    """Each cluster's nodes and HA VMs as crm_mon reports them; a VM that libvirt runs on a
    node where the cluster does not is flagged (`outside`); each DRBD disk carries what
    drbdsetup (else LINSTOR) reports on each online node."""
    return [cluster_status(ctx, config) for config in configs(ctx)]


def cluster_status(ctx: FleetContext, config: ClusterConfig) -> ClusterReport:
    """One cluster's report (see `status`)."""
    tools = _tools(ctx, config)
    report = tools.status()
    running: dict[str, list[str]] = {}
    for node in report.nodes:
        if node.online:
            each = node_tools(ctx.runner, config.spec, node.name)
            running[node.name] = each.running_domains(config.spec.hypervisor)
    views = read_views(ctx.runner, config, report)
    vms = tuple(
        vm_state(config, vm, report, libvirt_running=running, drbd=views) for vm in config.vms
    )
    return ClusterReport(config.name, report, vms)


def standby(ctx: FleetContext, node: str, *, on: bool) -> None:
    """Drain a node through Pacemaker (or let it take resources again)."""
    for config in configs(ctx):
        if node in config.spec.nodes:
            _tools(ctx, config).standby(node, on=on)
            return
    raise UsageError(f"{node!r} is not a node of a cluster in this fleet")


def down(
    ctx: FleetContext, vms: set[str] | None = None, *, timeout: float = START_TIMEOUT
) -> list[Change]:
    """Seed 001's vm_delete for each HA VM: stop the resource, remove it from Pacemaker,
    remove the definition, delete the storage. Each step is recorded and safe to repeat, so
    a `down` killed half-way finishes on the next run."""
    changes: list[Change] = []
    for config in configs(ctx, vms):
        if not config.vms:
            continue
        tools = _tools(ctx, config)
        current = tools.cib()
        owned = cib.owned_resources(cib.configuration(current), ctx.fleet)
        present = [vm for vm in config.vms if vm.resource in owned]
        for vm in present:
            tools.set_target_role(vm.resource, "Stopped")
        if present:
            wait_for(tools, _none_active(present), timeout=timeout, what="the VMs to stop")
            _record(ctx, config, present, "stopped", changes)
            names = {vm.name for vm in config.vms}
            tools.replace_configuration(
                cib.tostring(cib.without(tools.cib(), fleet=ctx.fleet, vms=names))
            )
            _record(ctx, config, present, "removed from the cluster", changes)
        for vm in config.vms:
            for file_tools in _file_tools(ctx, config):
                file_tools.remove_file(vm.config)
            _record(ctx, config, [vm], "definition removed", changes)
            _delete_storage(config, tools, vm)
            _record(ctx, config, [vm], "storage deleted", changes)
    return changes


def _none_active(vms: list[HaVm]) -> Callable[[ClusterStatus], bool]:
    return lambda status: not any(status.active_on(vm.resource) for vm in vms)


def _record(
    ctx: FleetContext, config: ClusterConfig, vms: list[HaVm], what: str, changes: list[Change]
) -> None:
    for vm in vms:
        ctx.store.event(kind="ha-down", vm=vm.name, message=what)
        changes.append(Change(config.name, vm.name, what))


def _delete_storage(config: ClusterConfig, tools: ClusterTools, vm: HaVm) -> None:
    if config.drbd:
        existing = tools.linstor_definitions()
        for argv in cib.linstor_delete(config, vm):
            if argv[-1] in existing:
                tools.linstor(argv)
    else:
        for disk in vm.disks:
            tools.remove_file(disk.path)
