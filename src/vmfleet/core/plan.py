"""The plan: a pure diff between the VMs the fleet wants and the VMs the hosts have.

Each wanted VM is `create`, `unchanged`, or `change` (with the fields that differ and whether
they can be applied live); each VM the hosts have but the spec no longer names is `orphan`,
removed only with `--prune`. The spec hash written into every domain decides "unchanged".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from vmfleet.core.expand import Instance

ActionKind = Literal["create", "change", "unchanged", "orphan"]


@dataclass(frozen=True, slots=True)
class Observed:
    """What a host reports about one of this fleet's domains."""

    name: str
    host: str
    spec_hash: str
    state: str
    vcpus: int
    memory_bytes: int
    disk_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    old: object
    new: object
    live: bool


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    vm: str
    host: str
    instance: Instance | None = None
    observed: Observed | None = None
    changes: tuple[Change, ...] = ()

    @property
    def needs_restart(self) -> bool:
        """A change that a running VM only takes at its next boot."""
        return any(not c.live for c in self.changes)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = field(default=())

    def of(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def empty(self) -> bool:
        """Nothing to create, change or remove."""
        return all(a.kind == "unchanged" for a in self.actions)


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


def diff(
    wanted: list[tuple[Instance, str]],
    observed: list[Observed],
) -> Plan:
    """Actions turning `observed` into `wanted` ((instance, host) pairs), wanted order first."""
    have = {o.name: o for o in observed}
    actions: list[Action] = []
    for instance, host in wanted:
        seen = have.pop(instance.name, None)
        if seen is None:
            actions.append(Action("create", instance.name, host, instance=instance))
            continue
        if seen.spec_hash == spec_hash(instance):
            actions.append(Action("unchanged", instance.name, seen.host, instance, seen))
            continue
        actions.append(
            Action("change", instance.name, seen.host, instance, seen, _changes(instance, seen))
        )
    for orphan in sorted(have.values(), key=lambda o: o.name):
        actions.append(Action("orphan", orphan.name, orphan.host, observed=orphan))
    return Plan(tuple(actions))


def _changes(instance: Instance, seen: Observed) -> tuple[Change, ...]:
    fields = instance.fields
    out: list[Change] = []
    running = seen.state in ("running", "paused")
    if fields.memory != seen.memory_bytes:
        # Growing memory past the boot maximum needs a restart; shrinking works live.
        out.append(
            Change(
                "memory",
                seen.memory_bytes,
                fields.memory,
                live=not running or fields.memory <= seen.memory_bytes,
            )
        )
    if fields.vcpus != seen.vcpus:
        out.append(Change("vcpus", seen.vcpus, fields.vcpus, live=not running))
    if seen.disk_bytes is not None and fields.disk > seen.disk_bytes:
        out.append(Change("disk", seen.disk_bytes, fields.disk, live=True))
    if seen.disk_bytes is not None and fields.disk < seen.disk_bytes:
        out.append(Change("disk-shrink", seen.disk_bytes, fields.disk, live=False))
    if not out:
        out.append(Change("definition", None, None, live=not running))
    return tuple(out)
