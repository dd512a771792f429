"""The plan: a pure diff between the VMs the fleet wants and the VMs the hosts have, as a
list of explicit steps that `up` executes exactly.

Each wanted VM is `create`, `unchanged`, or `change` (with the fields that differ and
whether they apply live); each VM the hosts have but the spec no longer names is `orphan`,
removed only with `prune`. Every action carries its steps, and hosts get steps of their own
(networks, base images).

Two hashes in each domain's metadata decide "unchanged": the live domain's `spec-hash` is
what the running VM runs, the persistent definition's is what its next boot runs (libvirt
keeps both). A change a running VM only takes at its next boot is defined at once and stays
`pending` — shown by `plan` and `list` — until the VM restarts (`up --restart` does it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from vmfleet.core.drift import PinDrift, pin_drift
from vmfleet.core.expand import Instance

ActionKind = Literal["create", "change", "unchanged", "orphan"]
StepKind = Literal[
    "create",  # a whole new VM: disks, seed, definition
    "add-disk",  # a data disk volume for an existing VM
    "grow-disk",  # grow a volume: live (block resize) on a running VM, else offline
    "change-live",  # apply changes to the running VM and mark it as running the new spec
    "define",  # write the persistent definition (takes effect now if off, else at next boot)
    "remove-disk",  # delete a data disk volume the spec dropped (VM off, or after restart)
    "stop",
    "start",
    "remove",  # a whole VM (orphan, with prune)
    "network-create",
    "network-remove",
    "image-upload",
]
RUNNING_STATES = ("running", "paused", "blocked")


@dataclass(frozen=True, slots=True)
class Observed:
    """What a host reports about one of this fleet's domains.

    `spec_hash` is what the live domain runs, `config_hash` what its persistent definition
    holds (the same when off; None: no separate definition known, taken as `spec_hash`).
    `data_disks` are the capacities of its data volumes `data-0`…, None when not looked at;
    `attached_data_disks` how many of them the live domain has.
    """

    name: str
    host: str
    spec_hash: str
    state: str
    vcpus: int
    memory_bytes: int
    disk_bytes: int | None = None
    config_hash: str | None = None
    data_disks: tuple[int, ...] | None = None
    attached_data_disks: int | None = None  # data disks the running domain has (None: unknown)
    runtime_hash: str | None = None  # of what the live VM runs (`runtime_hash`); None: unknown
    # `memory_bytes` is what the VM has now (a running VM's balloon); this its boot maximum,
    # up to which the balloon gives memory back live (None: unknown, taken as memory_bytes).
    max_memory_bytes: int | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def defined_hash(self) -> str:
        return self.config_hash if self.config_hash is not None else self.spec_hash


@dataclass(frozen=True, slots=True)
class HostObserved:
    """What a host already has for the fleet: its networks (by fleet network name), the
    images (by image name) with a base volume there, and those volumes' names (a base is
    named by its file's digest: a changed file gets a new one)."""

    name: str
    networks: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    bases: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    old: object
    new: object
    live: bool


@dataclass(frozen=True, slots=True)
class Step:
    """One thing `up` does: on a VM (`vm` set) or on a host (`target`: network, image)."""

    kind: StepKind
    host: str
    vm: str | None = None
    target: str = ""
    changes: tuple[Change, ...] = ()
    live: bool = False  # grow-disk: on the running VM (block resize), else the volume offline

    def describe(self) -> str:
        """One line for people: `define (memory: 1 GiB -> 2 GiB, next boot)`."""
        what = self.kind + (f" {self.target}" if self.target else "")
        if self.changes:
            what += " (" + ", ".join(_change_text(c) for c in self.changes) + ")"
        return what


def _change_text(change: Change) -> str:
    if change.old is None and change.new is None:
        return change.field
    return f"{change.field}: {change.old} -> {change.new}"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    vm: str
    host: str
    instance: Instance | None = None
    observed: Observed | None = None
    changes: tuple[Change, ...] = ()
    steps: tuple[Step, ...] = ()
    pending: tuple[Change, ...] = ()  # staged for the next boot, not yet running

    @property
    def needs_restart(self) -> bool:
        """A change that this running VM only takes at its next boot."""
        return bool(self.pending)

    @property
    def drift(self) -> PinDrift | None:
        """A VM that runs elsewhere than its `host:` pin: shown, never moved by `up`."""
        if self.instance is None or self.observed is None:
            return None
        return pin_drift(self.instance, self.observed.host)


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    """What a network step creates or removes: its mode and address range."""

    mode: str
    cidr: str | None = None


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What an image upload sends: the local file's size and format. None when not known
    before `up` (a URL image not downloaded yet; a file qemu-img cannot read, which `up`'s
    preflight reports; a prepared image not built yet, which `up` builds first)."""

    source: str
    size_bytes: int | None = None
    format: str | None = None
    prepare: str | None = None  # "cached" or "not cached" for an image with `prepare:`


@dataclass(frozen=True, slots=True)
class Facts:
    """What the plan shows about the networks and images its host steps name (by name)."""

    networks: Mapping[str, NetworkFacts] = field(default_factory=dict)
    images: Mapping[str, ImageFacts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = field(default=())
    host_steps: tuple[Step, ...] = ()
    facts: Facts = field(default_factory=Facts)

    def of(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step in the order `up` runs them: hosts' setup first, then the VMs'."""
        setup = tuple(s for s in self.host_steps if s.kind != "network-remove")
        teardown = tuple(s for s in self.host_steps if s.kind == "network-remove")
        return setup + tuple(s for a in self.actions for s in a.steps) + teardown

    @property
    def empty(self) -> bool:
        """Nothing for `up` to do (pending changes wait for a restart and do not count)."""
        return not self.steps

    @property
    def pending(self) -> list[Action]:
        return [a for a in self.actions if a.pending]

    @property
    def drift(self) -> list[PinDrift]:
        """VMs that run elsewhere than their pin (moved only by `vmfleet migrate`)."""
        return [d for a in self.actions if (d := a.drift) is not None]


def spec_hash(instance: Instance) -> str:
    """A short, stable hash of everything that shapes a VM's domain and disks."""
    fields = _plain(asdict(instance.fields))
    assert isinstance(fields, dict)
    fields.pop("power", None)  # whether `up` starts the VM does not shape its domain
    # A password (even as a reference) never goes into a hash stored in domain metadata;
    # cloud-init applies it at first boot only, so changing it is no reason to redefine.
    cloud_init = fields.get("cloud_init")
    if isinstance(cloud_init, dict) and cloud_init.get("password") is not None:
        cloud_init["password"] = "set"
    payload = {
        "fields": fields,
        "nics": [_plain(asdict(n)) for n in instance.nics],
        "name": instance.name,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def runtime_hash(instance: Instance) -> str:
    """A hash of what shapes the running VM besides the sizes a host reports (memory, vCPUs,
    disk sizes and count, compared directly): NICs, machine, firmware, image... A change
    elsewhere (labels, groups, readiness, placement rules) needs no restart."""
    f = instance.fields
    payload = {
        "fields": {name: _plain(getattr(f, name)) for name in RUNTIME_FIELDS},
        "nics": [_plain(asdict(n)) for n in instance.nics],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


RUNTIME_FIELDS = (
    "image", "clone", "arch", "machine", "cpu_model", "firmware", "kernel", "graphics",
)  # fmt: skip


def diff(
    wanted: Iterable[tuple[Instance, str]],
    observed: Iterable[Observed],
    *,
    hosts: Mapping[str, HostObserved] | None = None,
    prune: bool = False,
    restart: bool = False,
    hold: Collection[str] = frozenset(),
) -> Plan:
    """The plan turning `observed` into `wanted` ((instance, host) pairs), wanted order first.

    `prune` removes orphans; `restart` stops and starts running VMs with pending changes;
    VMs in `hold` (their group decides their power) and standby VMs (`power: off`) are never
    started or stopped. `hosts`
    (what each host has) adds the hosts' network and image steps; without it, none.
    """
    have = {o.name: o for o in observed}
    actions: list[Action] = []
    for instance, host in wanted:
        seen = have.pop(instance.name, None)
        # Standby VMs (`power: off`) are defined but never started, like a group's VMs.
        held = instance.name in hold or instance.fields.power == "off"
        if seen is None:
            start = () if held else (Step("start", host, instance.name),)
            create = (Step("create", host, instance.name), *start)
            actions.append(Action("create", instance.name, host, instance, steps=create))
        else:
            actions.append(_existing(instance, seen, restart=restart and not held, held=held))
    for orphan in sorted(have.values(), key=lambda o: o.name):
        removal = (Step("remove", orphan.host, orphan.name),) if prune else ()
        actions.append(Action("orphan", orphan.name, orphan.host, observed=orphan, steps=removal))
    return Plan(tuple(actions), _host_steps(actions, hosts or {}, prune=prune))


def replan(
    plan: Plan,
    *,
    hosts: Mapping[str, HostObserved] | None = None,
    prune: bool = False,
    restart: bool = False,
    hold: Collection[str] = frozenset(),
) -> Plan:
    """The same diff with other options (after the user declined --restart or --prune),
    keeping the plan's facts."""
    wanted = [(a.instance, a.host) for a in plan.actions if a.instance is not None]
    observed = [a.observed for a in plan.actions if a.observed is not None]
    again = diff(wanted, observed, hosts=hosts, prune=prune, restart=restart, hold=hold)
    return replace(again, facts=plan.facts)


def _existing(instance: Instance, seen: Observed, *, restart: bool, held: bool) -> Action:
    """Steps for a VM the host has: nothing, start, or its changes (see the module)."""
    want, host, vm = spec_hash(instance), seen.host, instance.name
    start: tuple[Step, ...] = () if held else (Step("start", host, vm),)
    steps: tuple[Step, ...]
    if seen.spec_hash == want and seen.defined_hash == want:
        steps = start if seen.state == "shutoff" else ()
        return Action("unchanged", vm, host, instance, seen, steps=steps)
    changes = _changes(instance, seen)
    wanted_disks = len(instance.fields.data_disks)
    have_disks = len(seen.data_disks or ())
    added = tuple(
        Step("add-disk", host, vm, target=f"data-{n}") for n in range(have_disks, wanted_disks)
    )
    dropped = tuple(
        Step("remove-disk", host, vm, target=f"data-{n}") for n in range(wanted_disks, have_disks)
    )
    grow = tuple(
        Step("grow-disk", host, vm, target=_grown_volume(c), changes=(c,), live=seen.running)
        for c in changes
        if _grown_volume(c)
    )
    define = Step("define", host, vm, changes=changes)
    if not seen.running:
        steps = (*added, *grow, define, *dropped, *start)
        return Action("change", vm, host, instance, seen, changes, steps)
    staged = tuple(c for c in changes if not c.live)
    if not staged:  # everything applies to the running VM
        rest = tuple(c for c in changes if not any(c in g.changes for g in grow))
        live = Step("change-live", host, vm, changes=rest)
        return Action("change", vm, host, instance, seen, changes, (*grow, define, live))
    defined = seen.defined_hash == want  # staged by an earlier run: only the restart is left
    steps = () if defined else (*added, *grow, define)
    if restart:
        steps += (Step("stop", host, vm), *dropped, Step("start", host, vm))
    kind: ActionKind = "change" if steps else "unchanged"
    return Action(kind, vm, host, instance, seen, changes, steps, pending=staged)


def _grown_volume(change: Change) -> str:
    """The volume role a change grows (`root`, `data-N`), else ''."""
    if change.field == "disk":
        return "root"
    return change.field if change.field.startswith("data-") and change.field[5:].isdigit() else ""


def _changes(instance: Instance, seen: Observed) -> tuple[Change, ...]:
    """What differs between the spec and the VM as it runs; `live` when the running VM can
    take it (a VM that is off takes everything at its next start)."""
    fields, off = instance.fields, not seen.running
    out: list[Change] = []
    if fields.memory != seen.memory_bytes:
        # The balloon works live up to the boot maximum; past it needs a restart.
        ceiling = seen.max_memory_bytes or seen.memory_bytes
        out.append(
            Change("memory", seen.memory_bytes, fields.memory, off or fields.memory <= ceiling)
        )
    if fields.vcpus != seen.vcpus:
        out.append(Change("vcpus", seen.vcpus, fields.vcpus, live=off))
    if seen.disk_bytes is not None and fields.disk > seen.disk_bytes:
        out.append(Change("disk", seen.disk_bytes, fields.disk, live=True))  # block resize
    if seen.disk_bytes is not None and fields.disk < seen.disk_bytes:
        # Volumes only grow: the disk keeps its size, the spec is recorded.
        out.append(Change("disk-shrink", seen.disk_bytes, fields.disk, live=True))
    if seen.data_disks is not None:
        sizes = [d.size for d in fields.data_disks]
        for n, (new, old) in enumerate(zip(sizes, seen.data_disks, strict=False)):
            if new > old:
                out.append(Change(f"data-{n}", old, new, live=True))  # block resize
        attached = seen.attached_data_disks
        if attached is None:
            attached = len(seen.data_disks)
        if len(sizes) != attached:
            out.append(Change("data-disks", attached, len(sizes), live=off))
    if seen.runtime_hash != runtime_hash(instance):
        # NICs, machine, image...: what exactly is not known, only that it differs
        out.append(Change("definition", None, None, live=off))
    elif not out:
        out.append(Change("settings", None, None, live=True))  # labels, groups, readiness...
    return tuple(out)


def _host_steps(
    actions: list[Action], hosts: Mapping[str, HostObserved], *, prune: bool
) -> tuple[Step, ...]:
    """Networks to create where a wanted VM needs one, base images to upload where a new
    VM needs one, and (with prune) networks of hosts the fleet leaves entirely."""
    out: list[Step] = []
    for name, have in hosts.items():
        wanted = [a.instance for a in actions if a.instance is not None and a.host == name]
        nets = sorted({n.network for i in wanted for n in i.nics if n.mode in ("nat", "isolated")})
        out += [Step("network-create", name, target=n) for n in nets if n not in have.networks]
        new = [a.instance for a in actions if a.kind == "create" and a.host == name]
        images = sorted({i.fields.image for i in new if i and i.fields.image})
        out += [Step("image-upload", name, target=i) for i in images if i not in have.images]
        staying = [
            a for a in actions if a.host == name and not any(s.kind == "remove" for s in a.steps)
        ]
        if prune and not staying:
            out += [Step("network-remove", name, target=n) for n in sorted(have.networks)]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Summary:
    """The plan in counts, as Terraform's "Plan: …" line: VMs to create, change (restarts
    included), remove (pruned), start (unchanged but off); networks to create and remove;
    image uploads and their bytes (`upload_unknown`: uploads whose size is not known yet)."""

    create: int = 0
    change: int = 0
    remove: int = 0
    start: int = 0
    unchanged: int = 0
    not_in_spec: int = 0  # orphans kept (removed only with prune)
    pending: int = 0  # VMs whose changes stay staged for their next boot (not restarted)
    networks_create: int = 0
    networks_remove: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    upload_unknown: int = 0


def summarize(plan: Plan) -> Summary:
    """Count what the plan does (see `Summary`)."""
    actions, steps = plan.actions, plan.host_steps
    uploads = [plan.facts.images.get(s.target) for s in steps if s.kind == "image-upload"]
    sizes = [f.size_bytes for f in uploads if f is not None and f.size_bytes is not None]
    return Summary(
        create=sum(a.kind == "create" for a in actions),
        change=sum(a.kind == "change" for a in actions),
        remove=sum(a.kind == "orphan" and bool(a.steps) for a in actions),
        start=sum(a.kind == "unchanged" and bool(a.steps) for a in actions),
        unchanged=sum(a.kind == "unchanged" and not a.steps for a in actions),
        not_in_spec=sum(a.kind == "orphan" and not a.steps for a in actions),
        pending=sum(not any(s.kind == "stop" for s in a.steps) for a in plan.pending),
        networks_create=sum(s.kind == "network-create" for s in steps),
        networks_remove=sum(s.kind == "network-remove" for s in steps),
        uploads=len(uploads),
        upload_bytes=sum(sizes),
        upload_unknown=len(uploads) - len(sizes),
    )
