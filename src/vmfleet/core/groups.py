"""Groups: who belongs where, in which order members start and stop, and their conditions.

Pure: the spec, the expanded instances and what the hosts report go in; plain data comes out.
- Membership is declared from both sides: a group lists a member (a VM, a template meaning
  all its replicas, or a group) in `members` or `boot_order`, and a VM (or group) names its
  group in `group:`. When both sides declare it and disagree (the group lists a VM whose
  `group:` names another group), the member is reported `GroupLinked=False` and left out of
  the group's power operations.
- Boot order: the group's tiers in order; a nested group is walked inside the tier of its
  parent that lists it (or, if no tier lists it, in the last tier). Linked members no tier
  lists start in a final tier of their own, after the listed ones.
- Power-off goes through the same tiers in reverse; a nested group's tiers are reversed
  inside its parent's tier, and its first tier stops together with the parent tier's VMs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vmfleet.core.expand import Instance
from vmfleet.spec.models import FleetSpec, GroupSpec

POWERED_ON = "PoweredOn"
POWERED_OFF = "PoweredOff"
SUSPENDED = "Suspended"

# libvirt domain states (as `virsh domstate` names them) → the power state they mean.
_POWER_OF_STATE = {
    "running": POWERED_ON,
    "blocked": POWERED_ON,
    "shutdown": POWERED_ON,  # still running while it shuts down
    "paused": SUSPENDED,
    "pmsuspended": SUSPENDED,
    "shutoff": POWERED_OFF,
    "crashed": POWERED_OFF,
    "nostate": POWERED_OFF,
}


def power_of(state: str | None) -> str | None:
    """The power state a libvirt domain state means; None for a VM no host has."""
    return None if state is None else _POWER_OF_STATE.get(state, POWERED_OFF)


# --- membership -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """A direct member of a group: a VM or a nested group, and whether the link holds."""

    kind: str  # "VirtualMachine" | "VirtualMachineGroup"
    name: str
    linked: bool
    reason: str
    message: str


def members(spec: FleetSpec, instances: Sequence[Instance], group: str) -> list[Member]:
    """The direct members of `group`, in the order the spec names them.

    Listed entries come first (members, then boot order), then VMs and groups that only name
    this group in their own `group:`.
    """
    g = spec.groups[group]
    by_template: dict[str, list[Instance]] = {}
    by_name = {i.name: i for i in instances}
    for inst in instances:
        by_template.setdefault(inst.template, []).append(inst)
    out: dict[tuple[str, str], Member] = {}

    def add_vm(inst: Instance, *, listed: bool) -> None:
        key = ("VirtualMachine", inst.name)
        if key in out:
            return
        own = inst.fields.group
        if listed and own is not None and own != group:
            out[key] = _mismatch(key[0], inst.name, group, own)
        elif listed and own is None:
            out[key] = Member(key[0], inst.name, True, "MemberListed", "listed by the group")
        else:
            out[key] = Member(key[0], inst.name, True, "MemberLinked", "linked to this group")

    for name in _listed(g):
        if name in spec.groups:
            own = spec.groups[name].group
            key = ("VirtualMachineGroup", name)
            if own is not None and own != group:
                out[key] = _mismatch(key[0], name, group, own)
            else:
                out[key] = Member(key[0], name, True, "MemberLinked", "nested in this group")
        elif name in by_template:
            for inst in by_template[name]:
                add_vm(inst, listed=True)
        elif name in by_name:
            add_vm(by_name[name], listed=True)
    for inst in instances:
        if inst.fields.group == group:
            add_vm(inst, listed=False)
    for name, child in spec.groups.items():
        if child.group == group and ("VirtualMachineGroup", name) not in out:
            out[("VirtualMachineGroup", name)] = Member(
                "VirtualMachineGroup", name, True, "MemberLinked", "nested in this group"
            )
    return list(out.values())


def _mismatch(kind: str, name: str, group: str, own: str) -> Member:
    """A member the group lists whose own `group:` names another group: not linked."""
    message = f"listed in group {group} but its group is {own}"
    return Member(kind, name, False, "GroupNameMismatch", message)


def _listed(g: GroupSpec) -> list[str]:
    return list(dict.fromkeys([*g.members, *(m for tier in g.boot_order for m in tier.members)]))


def parent_of(spec: FleetSpec, group: str) -> str | None:
    """The group a group is nested in: its own `group:`, else a group that lists it."""
    own = spec.groups[group].group
    if own is not None:
        return own
    for name, g in spec.groups.items():
        if name != group and group in _listed(g):
            return name
    return None


def roots(spec: FleetSpec) -> list[str]:
    """Groups nested in no other group, in spec order."""
    return [name for name in spec.groups if parent_of(spec, name) is None]


def children(spec: FleetSpec, instances: Sequence[Instance], group: str) -> list[str]:
    """Linked nested groups of `group`."""
    return [
        m.name
        for m in members(spec, instances, group)
        if m.kind == "VirtualMachineGroup" and m.linked
    ]


def vms_of(
    spec: FleetSpec, instances: Sequence[Instance], group: str, _seen: frozenset[str] = frozenset()
) -> list[str]:
    """Every linked VM of a group and of its nested groups, each once: the one answer to
    "who is in this group" for every command (power walks the same members in tiers)."""
    out: list[str] = []
    for m in members(spec, instances, group):
        if not m.linked:
            continue
        if m.kind == "VirtualMachine":
            out.append(m.name)
        elif m.name not in _seen:
            out += vms_of(spec, instances, m.name, _seen | {group})
    return list(dict.fromkeys(out))


def memberships(spec: FleetSpec, instances: Sequence[Instance]) -> dict[str, tuple[str, ...]]:
    """VM name → every group it is in (nested ones included), by the same rule as `vms_of`:
    the one answer `show`, `inventory`, snapshot retention and targets use."""
    out: dict[str, list[str]] = {i.name: [] for i in instances}
    for name in spec.groups:
        for vm in vms_of(spec, instances, name):
            out.setdefault(vm, []).append(name)
    return {vm: tuple(sorted(groups)) for vm, groups in out.items()}


# --- boot order ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gate:
    """What must hold for every member of a tier before the next tier starts."""

    wait_for: str = "running"
    timeout: float = 300.0
    command: str | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    """VMs that start together, nested groups walked inside this tier, then delay and gate."""

    vms: tuple[str, ...]
    groups: tuple[Walk, ...] = ()
    delay: float = 0.0
    gate: Gate = field(default_factory=Gate)


@dataclass(frozen=True, slots=True)
class Walk:
    """A group's boot order, resolved to VM names, nested groups included."""

    group: str
    tiers: tuple[Tier, ...]
    shutdown_timeout: float = 60.0

    def all_vms(self) -> list[str]:
        out: list[str] = []
        for tier in self.tiers:
            out += tier.vms
            for nested in tier.groups:
                out += nested.all_vms()
        return list(dict.fromkeys(out))

    def all_groups(self) -> list[str]:
        out = [self.group]
        for tier in self.tiers:
            for nested in tier.groups:
                out += nested.all_groups()
        return out


def walk(
    spec: FleetSpec, instances: Sequence[Instance], group: str, _seen: frozenset[str] = frozenset()
) -> Walk:
    """The boot walk of `group`: its tiers with linked members only, nested groups resolved."""
    g = spec.groups[group]
    linked = [m for m in members(spec, instances, group) if m.linked]
    linked_vms = {m.name for m in linked if m.kind == "VirtualMachine"}
    linked_groups = [
        m.name for m in linked if m.kind == "VirtualMachineGroup" and m.name not in _seen
    ]
    by_template: dict[str, list[str]] = {}
    for inst in instances:
        by_template.setdefault(inst.template, []).append(inst.name)
    placed: set[str] = set()
    tiers: list[Tier] = []
    for spec_tier in g.boot_order:
        vms: list[str] = []
        nested: list[str] = []
        for name in spec_tier.members:
            if name in spec.groups:
                if name in linked_groups and name not in placed:
                    nested.append(name)
                    placed.add(name)
                continue
            for vm in by_template.get(name, [name]):
                if vm in linked_vms and vm not in placed:
                    vms.append(vm)
                    placed.add(vm)
        tiers.append(
            Tier(
                vms=tuple(vms),
                groups=tuple(walk(spec, instances, n, _seen | {group}) for n in nested),
                delay=spec_tier.delay,
                gate=Gate(spec_tier.wait_for, spec_tier.timeout, spec_tier.command),
            )
        )
    rest_vms = tuple(m.name for m in linked if m.kind == "VirtualMachine" and m.name not in placed)
    rest_groups = tuple(n for n in linked_groups if n not in placed)
    if rest_vms or rest_groups or not tiers:
        tiers.append(
            Tier(
                vms=rest_vms,
                groups=tuple(walk(spec, instances, n, _seen | {group}) for n in rest_groups),
            )
        )
    return Walk(group, tuple(tiers), g.shutdown_timeout)


def shutdown_steps(w: Walk) -> list[tuple[tuple[str, float], ...]]:
    """Power-off order: steps of (vm, graceful timeout) that stop together, tiers reversed.

    Within a tier, nested groups' reversed steps are aligned so that their first tier stops
    together with the tier's own VMs (the reverse of starting together).
    """
    steps: list[tuple[tuple[str, float], ...]] = []
    for tier in reversed(w.tiers):
        nested = [shutdown_steps(n) for n in tier.groups]
        depth = max([len(n) for n in nested] + [1])
        block: list[list[tuple[str, float]]] = [[] for _ in range(depth)]
        for n in nested:
            offset = depth - len(n)
            for i, step in enumerate(n):
                block[offset + i] += step
        block[-1] += [(vm, w.shutdown_timeout) for vm in tier.vms]
        steps += [tuple(b) for b in block if b]
    return steps


def governing(spec: FleetSpec) -> list[str]:
    """Groups whose `power_state` `up` applies: those with one and no ancestor with one.

    An enclosing group's power state covers its whole subtree.
    """
    out = []
    for name, g in spec.groups.items():
        if g.power_state is None:
            continue
        parent = parent_of(spec, name)
        seen = {name}
        covered = False
        while parent is not None and parent not in seen:
            if spec.groups[parent].power_state is not None:
                covered = True
                break
            seen.add(parent)
            parent = parent_of(spec, parent)
        if not covered:
            out.append(name)
    return out


# --- conditions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str
    message: str
    time: float | None = None


@dataclass(frozen=True, slots=True)
class PowerRecord:
    """The last power change vmfleet made to a group (from the state store)."""

    state: str
    status: str  # "pending" | "done" | "failed"
    at: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Placed:
    """What a host reports for one VM."""

    host: str
    state: str


@dataclass(frozen=True, slots=True)
class MemberStatus:
    kind: str
    name: str
    conditions: tuple[Condition, ...]

    @property
    def ready(self) -> bool:
        return all(c.status == "True" for c in self.conditions)


@dataclass(frozen=True, slots=True)
class GroupStatus:
    name: str
    parent: str | None
    power_state: str | None
    last_updated_power_state_time: float | None
    members: tuple[MemberStatus, ...]
    conditions: tuple[Condition, ...]


def desired_state(
    spec: FleetSpec, group: str, records: Mapping[str, PowerRecord]
) -> tuple[str | None, PowerRecord | None]:
    """The power state a group should be in: the last one vmfleet applied to it or to an
    enclosing group (whichever is newer), else its spec's, else its parent's spec's."""
    best: PowerRecord | None = None
    name: str | None = group
    seen: set[str] = set()
    fallback: str | None = None
    while name is not None and name not in seen:
        seen.add(name)
        record = records.get(name)
        if record is not None and (best is None or record.at > best.at):
            best = record
        if fallback is None:
            fallback = spec.groups[name].power_state
        name = parent_of(spec, name)
    if best is not None:
        return best.state, best
    return fallback, None


def _vm_conditions(
    member: Member, desired: str | None, record: PowerRecord | None, placed: Placed | None
) -> tuple[Condition, ...]:
    linked = Condition(
        "GroupLinked", "True" if member.linked else "False", member.reason, member.message
    )
    actual = power_of(placed.state) if placed else None
    if desired is None:
        synced = Condition(
            "PowerStateSynced", "True", "NoPowerState", "the group sets no power state"
        )
    elif record is not None and record.status == "pending":
        synced = Condition(
            "PowerStateSynced", "False", "Pending", f"changing to {desired}", record.at
        )
    elif actual == desired:
        synced = Condition(
            "PowerStateSynced",
            "True",
            "PowerStateMatches",
            f"{desired} as the group wants",
            record.at if record else None,
        )
    elif record is not None and record.status == "failed":
        synced = Condition(
            "PowerStateSynced", "False", "Failed", record.detail or f"not {desired}", record.at
        )
    elif actual is None:
        synced = Condition(
            "PowerStateSynced", "False", "NotSynced", f"not created yet; the group wants {desired}"
        )
    else:
        synced = Condition(
            "PowerStateSynced",
            "False",
            "NotSynced",
            f"{actual}, the group wants {desired} (vmfleet power --sync)",
        )
    if placed is not None:
        placement = Condition(
            "PlacementReady", "True", "PlacementComputed", f"on host {placed.host}"
        )
    else:
        placement = Condition(
            "PlacementReady", "False", "NotPlaced", "no host has this VM (vmfleet up)"
        )
    return (linked, synced, placement)


def status(
    spec: FleetSpec,
    instances: Sequence[Instance],
    observed: Mapping[str, Placed],
    records: Mapping[str, PowerRecord],
) -> list[GroupStatus]:
    """Every group's member conditions and Ready condition, parents before children."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        order.append(name)
        for child in children(spec, instances, name):
            visit(child)

    for root in roots(spec):
        visit(root)
    for name in spec.groups:  # groups only reachable through a cycle (a spec error) still show
        visit(name)
    done: dict[str, GroupStatus] = {}
    for name in reversed(order):
        done[name] = _group_status(spec, instances, name, observed, records, done)
    return [done[name] for name in order]


def _failing(member: MemberStatus) -> str:
    return "; ".join(f"{c.type}: {c.reason}" for c in member.conditions if c.status != "True")


def _group_status(
    spec: FleetSpec,
    instances: Sequence[Instance],
    name: str,
    observed: Mapping[str, Placed],
    records: Mapping[str, PowerRecord],
    done: Mapping[str, GroupStatus],
) -> GroupStatus:
    desired, record = desired_state(spec, name, records)
    out: list[MemberStatus] = []
    for m in members(spec, instances, name):
        if m.kind == "VirtualMachine":
            conditions = _vm_conditions(m, desired, record, observed.get(m.name))
        else:
            linked = Condition("GroupLinked", "True" if m.linked else "False", m.reason, m.message)
            child = done.get(m.name)
            ready = child.conditions[0] if child else Condition("Ready", "False", "Unknown", "")
            conditions = (linked, Condition("Ready", ready.status, ready.reason, ready.message))
        out.append(MemberStatus(m.kind, m.name, conditions))
    not_ready = [m for m in out if not m.ready]
    if not_ready:
        reasons = ", ".join(f"{m.name} ({_failing(m)})" for m in not_ready)
        ready_condition = Condition(
            "Ready",
            "False",
            "MembersNotReady",
            f"{len(not_ready)} of {len(out)} members not ready: {reasons}",
        )
    else:
        ready_condition = Condition(
            "Ready", "True", "AllMembersReady", "all members are in their desired state"
        )
    last = record.at if record is not None and record.status == "done" else None
    return GroupStatus(
        name=name,
        parent=parent_of(spec, name),
        power_state=desired,
        last_updated_power_state_time=last,
        members=tuple(out),
        conditions=(ready_condition,),
    )
