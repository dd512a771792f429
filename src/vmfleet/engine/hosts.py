"""What the hosts are and hold, gathered in parallel, and the placement of new VMs on them.

`gather` asks every host of the fleet at once for its capabilities (architectures, domain
types, machine types, emulators; KVM from the probe's cached answer when `domain_type: auto`,
booting the probe only when asked to: `up` and `hosts --probe`), its pool
and the domains on it, and turns the answers into `core.placement.HostFacts`. A host that
does not answer is reported unreachable; it never holds up the others (each connection has
its own timeout). `placement` places the fleet's new VMs, once per context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vmfleet.core import placement as core
from vmfleet.core import unplaced
from vmfleet.core.expand import Instance
from vmfleet.engine.context import FleetContext
from vmfleet.errors import (
    FleetError,
    HostUnreachableError,
    HypervisorError,
    PlacementError,
    UsageError,
)
from vmfleet.spec.models import HostSpec
from vmfleet.state import kvmcache

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import HostCapabilities


@dataclass(frozen=True, slots=True)
class HostReport:
    """One host: the facts placement uses, and what `vmfleet hosts` shows besides."""

    facts: core.HostFacts
    uri: str
    domain_type: str
    error: str | None = None
    hostname: str = ""
    libvirt_version: str = ""
    raw: core.Resources = field(default_factory=lambda: core.Resources(0, 0, 0))
    fleet_vms: int = 0
    other_vms: int = 0
    machines: dict[str, list[str]] = field(default_factory=dict)
    emulators: dict[str, str] = field(default_factory=dict)
    domain_types: dict[str, list[str]] = field(default_factory=dict)
    kvm: bool | None = None
    cordoned: bool = False


def gather(ctx: FleetContext, *, probe: bool = False) -> list[HostReport]:
    """Every host of the fleet, in spec order; unreachable ones with their error. With
    `probe`, KVM is probed where no answer is cached (see `kvm_answer`)."""
    specs = ctx.host_specs()
    cordoned = ctx.store.cordoned()  # `drain`/`evacuate` made them unschedulable
    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        futures = [pool.submit(_one, ctx, name, spec, probe) for name, spec in specs.items()]
        reports = [f.result() for f in futures]
    return [
        replace(r, facts=replace(r.facts, schedulable=False), cordoned=True)
        if r.facts.name in cordoned
        else r
        for r in reports
    ]


def _one(ctx: FleetContext, name: str, spec: HostSpec, probe: bool) -> HostReport:
    from vmfleet.engine.context import default_uri

    uri = spec.uri or default_uri()
    try:
        return _ask(ctx, name, spec, uri, probe)
    except FleetError as error:
        facts = core.HostFacts(
            name=name,
            capacity=core.Resources(0, 0, 0),
            labels=dict(spec.labels),
            arches=frozenset(),
            schedulable=spec.schedulable,
            reachable=False,
            unreachable_reason=str(error),
        )
        return HostReport(facts=facts, uri=uri, domain_type=spec.domain_type, error=str(error))


def _ask(ctx: FleetContext, name: str, spec: HostSpec, uri: str, probe: bool) -> HostReport:
    host = ctx.host(name)
    caps = host.capabilities(probe_kvm=False)
    kvm = kvm_answer(ctx, name, probe=probe, caps=caps)
    machines: dict[str, list[str]] = {}
    emulators: dict[str, str] = {}
    types: dict[str, list[str]] = {}
    for guest in caps.guests:
        if guest.os_type != "hvm":
            continue
        machines.setdefault(guest.arch, []).extend(guest.machines)
        if guest.emulator:
            emulators[guest.arch] = guest.emulator
        types.setdefault(guest.arch, []).extend(guest.domain_types)
    if spec.domain_type == "kvm":
        arches = frozenset(a for a, t in types.items() if "kvm" in t)
    else:
        arches = frozenset(a for a, t in types.items() if t)  # qemu, kvm (or test's "test")
    if uri.startswith("test:"):
        arches = frozenset({"*"})  # libvirt's test driver defines domains of any arch
    # An unknown answer (never probed) is planned as the probe's likely one: KVM works
    # where libvirt offers it; `up` probes before it plans.
    likely = kvm if kvm is not None else True
    kvm_arches = frozenset(a for a in arches if likely and a == caps.arch and "kvm" in types[a])
    problem = ""
    try:
        pool = host.pool_info(spec.pool, refresh=True)
        pool_capacity, pool_allocation = pool.capacity, pool.allocation
    except HostUnreachableError:
        raise
    except HypervisorError as error:
        problem = f"storage pool {spec.pool!r}: {error}"
        pool_capacity = pool_allocation = 0
    # libvirt's test driver is a fake host: its sample domain claims more than it has.
    fake = uri.startswith("test:")
    cpus = used_memory = 0
    fleet_vms = other_vms = 0
    for info in host.list_domains():
        mine = info.owner is not None and info.owner.fleet == ctx.fleet
        if mine:
            fleet_vms += 1
        else:
            other_vms += 1
        if mine or (info.active and not fake):  # others' stopped domains use nothing
            cpus += info.max_vcpus
            used_memory += info.max_memory_bytes
    raw = core.Resources(
        cpus=spec.capacity.cpus or caps.cpus,
        memory=spec.capacity.memory or caps.memory_bytes,
        disk=spec.capacity.disk or pool_capacity,
    )
    # Pool space limits placement only when the spec sets `capacity.disk`: disks are thin,
    # and preflight checks the bytes a plan really writes against the pool's free space.
    disk_limit = int(spec.capacity.disk * spec.overcommit.disk) if spec.capacity.disk else 0
    over = spec.overcommit
    facts = core.HostFacts(
        name=name,
        capacity=core.Resources(
            cpus=raw.cpus * over.cpu,
            memory=int(raw.memory * over.memory),
            disk=disk_limit,
        ),
        used=core.Resources(cpus=cpus, memory=used_memory, disk=pool_allocation),
        labels=dict(spec.labels),
        arches=arches,
        kvm_arches=kvm_arches,
        schedulable=spec.schedulable,
        problem=problem,
    )
    return HostReport(
        facts=facts,
        uri=uri,
        domain_type=spec.domain_type,
        hostname=caps.hostname,
        libvirt_version=caps.libvirt_version,
        raw=raw,
        fleet_vms=fleet_vms,
        other_vms=other_vms,
        machines={a: sorted(set(m)) for a, m in machines.items()},
        emulators=emulators,
        domain_types={a: sorted(set(t)) for a, t in types.items()},
        kvm=kvm,
    )


def kvm_answer(
    ctx: FleetContext, name: str, *, probe: bool, caps: HostCapabilities | None = None
) -> bool | None:
    """Whether VMs on host `name` run under KVM: as configured, or for `domain_type: auto`
    the KVM probe's answer, cached across runs (`state.kvmcache`). With `probe`, a host
    without a cached answer is probed and the answer kept; without, it is None (unknown).
    """
    spec = ctx.host_specs()[name]
    if spec.domain_type != "auto":
        return spec.domain_type == "kvm"
    host = ctx.host(name)
    caps = caps or host.capabilities(probe_kvm=False)
    if caps.arch != "x86_64" or "kvm" not in caps.domain_types():
        return False  # nothing to probe: the probe's answer is no without booting it
    key = kvmcache.probe_key(
        uri=host.uri,
        host_uuid=caps.host_uuid or caps.hostname,
        libvirt_version=caps.libvirt_version,
        qemu_version=caps.hypervisor_version,
    )
    known = kvmcache.lookup(key)
    if known is None and probe:
        known = host.probe_kvm(pool=spec.pool)
        kvmcache.remember(key, known)
    if known is not None:
        host.remember_kvm(known)
    return known


def kvm_unknown(ctx: FleetContext) -> list[str]:
    """The `domain_type: auto` hosts whose KVM answer is not known yet (probed at `up`);
    unreachable hosts are left out (their error is reported elsewhere)."""
    unknown = []
    for name, spec in ctx.host_specs().items():
        if spec.domain_type != "auto":
            continue
        try:
            if kvm_answer(ctx, name, probe=False) is None:
                unknown.append(name)
        except FleetError:
            continue
    return unknown


def request(instance: Instance) -> core.VmRequest:
    """A VM the fleet wants, as placement sees it."""
    f = instance.fields
    return core.VmRequest(
        name=instance.name,
        template=instance.template,
        vcpus=f.vcpus,
        memory=f.memory,
        disk=f.disk + sum(d.size for d in f.data_disks),
        arch=f.arch,
        labels=dict(f.labels),
        pin=f.host,
        preference=tuple(f.node_preference),
        affinity=f.affinity,
        max_per_host=f.max_per_host,
    )


def placement(
    ctx: FleetContext,
    observed: dict[str, str],
    *,
    probe: bool = False,
    explain: Iterable[str] = (),
) -> core.PlacementResult:
    """Place the fleet's VMs that no host has (`observed`: VM -> host), all together.

    The result is also kept on the context, for `FleetContext.place`.
    """
    explain = tuple(explain)
    instances = ctx.instances()
    new = [request(i) for i in instances if i.name not in observed]
    if not new:
        result = core.PlacementResult(hosts={}, failures={})
    else:
        by_name = {i.name: i for i in instances}
        placed = [
            core.Placed(
                name=vm,
                host=host,
                template=by_name[vm].template if vm in by_name else "",
                labels=dict(by_name[vm].fields.labels) if vm in by_name else {},
                affinity=by_name[vm].fields.affinity if vm in by_name else None,
            )
            for vm, host in sorted(observed.items())
        ]
        reports = gather(ctx, probe=probe)
        result = core.place(
            [r.facts for r in reports],
            new,
            placed=placed,
            strategy=ctx.loaded.spec.placement.strategy,
            explain=explain,
        )
    ctx.placement = result
    return result


def require_placed(result: core.PlacementResult) -> None:
    """PlacementError listing every VM that has no host with its reasons, VMs failing alike
    in one block, an unreachable host's error once (`core.unplaced`)."""
    if result.failures:
        raise PlacementError(unplaced.report(result.failures, result.unreachable))


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a VM is where it is or would go: host by host, or where it already runs."""

    vm: str
    current_host: str | None
    verdicts: tuple[core.HostVerdict, ...]
    failure: tuple[str, ...]


def explain(ctx: FleetContext, vm: str, observed: dict[str, str]) -> Explanation:
    """Host by host, why `vm` would be placed where it would (UsageError if it is unknown).

    A VM that already has a host stays there (it moves only on request: migrate, drain);
    the verdicts are then what placement would decide if it were new, given every other VM
    where it is.
    """
    if vm not in {i.name for i in ctx.instances()}:
        raise UsageError(f"unknown VM {vm} in fleet {ctx.fleet}")
    current = observed.get(vm)
    others = {name: host for name, host in observed.items() if name != vm}
    result = placement(ctx, others, explain=[vm])
    return Explanation(
        vm=vm,
        current_host=current,
        verdicts=result.explained.get(vm, ()),
        failure=result.failures.get(vm, ()),
    )


def rows(
    reports: list[HostReport], moving: Mapping[str, Mapping[str, list[str]]] | None = None
) -> list[dict[str, object]]:
    """`vmfleet hosts`: one row per host (JSON keeps numbers in bytes and vCPUs); `moving`
    (`inflight.by_host`) gives each host's VMs migrating in and out."""
    out: list[dict[str, object]] = []
    for r in reports:
        f = r.facts
        moves = (moving or {}).get(f.name, {})
        row: dict[str, object] = {
            "host": f.name,
            "uri": r.uri,
            "reachable": f.reachable,
            "schedulable": f.schedulable,
            "cordoned": r.cordoned,
            "labels": dict(f.labels),
            "domain_type": r.domain_type,
            "migrations": {"in": list(moves.get("in", [])), "out": list(moves.get("out", []))},
        }
        if not f.reachable:
            row |= {"error": r.error, "status": "unreachable"}
            out.append(row)
            continue
        row |= {
            "status": "cordoned" if r.cordoned else "ready" if f.schedulable else "not schedulable",
            "hostname": r.hostname,
            "libvirt": r.libvirt_version,
            "kvm": r.kvm,
            "arches": sorted(f.arches),
            "domain_types": r.domain_types,
            "machines": r.machines,
            "emulators": r.emulators,
            "capacity": {"cpus": r.raw.cpus, "memory": r.raw.memory, "disk": r.raw.disk},
            "limit": {
                "cpus": f.capacity.cpus,
                "memory": f.capacity.memory,
                "disk": f.capacity.disk,
            },
            "allocated": {"cpus": f.used.cpus, "memory": f.used.memory, "disk": f.used.disk},
            "fleet_vms": r.fleet_vms,
            "other_vms": r.other_vms,
        }
        out.append(row)
    return out
