"""What a command's target words name: the one resolver behind up, down, start, stop,
reboot, exec, ssh and snapshots.

A target is `NAME@i` (replica i of a template), a VM name, a template (all its replicas), a
group (its members and its nested groups' members, `core.groups.vms_of`) or `all`. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vmfleet.core import groups
from vmfleet.core.expand import Instance
from vmfleet.errors import UsageError
from vmfleet.spec.models import FleetSpec

_INDEXED = re.compile(r"^(?P<base>[a-z0-9][a-z0-9-]*)@(?P<index>\d+)$")


def resolve(
    spec: FleetSpec, instances: Sequence[Instance], target: str, *, fleet: str
) -> list[Instance]:
    """The VMs one target names, in spec order; UsageError naming what is known otherwise."""
    by_name = {i.name: i for i in instances}
    match = _INDEXED.match(target)
    if match:
        base, index = match["base"], int(match["index"])
        replicas = [i for i in instances if i.template == base]
        if not replicas:
            raise UsageError(f"unknown VM template {base!r} in fleet {fleet}")
        if replicas[0].index is None or not any(i.index == index for i in replicas):
            valid = (
                "only the bare name (1 replica)"
                if replicas[0].index is None
                else f"0..{len(replicas) - 1}"
            )
            raise UsageError(f"{target}: index {index} is out of range for {base} ({valid})")
        return [i for i in replicas if i.index == index]
    if target in by_name:
        return [by_name[target]]
    if target == "all":
        return list(instances)
    if target in spec.groups:
        inside = set(groups.vms_of(spec, instances, target))
        return [i for i in instances if i.name in inside]
    replicas = [i for i in instances if i.template == target]
    if not replicas:
        known = sorted({i.template for i in instances} | set(by_name) | set(spec.groups))
        raise UsageError(
            f"unknown VM, template or group {target!r} in fleet {fleet}; known: {', '.join(known)}"
        )
    return replicas


def resolve_all(
    spec: FleetSpec, instances: Sequence[Instance], targets: Sequence[str], *, fleet: str
) -> list[Instance]:
    """The VMs several targets name together, each once, in spec order."""
    chosen = {i.name for t in targets for i in resolve(spec, instances, t, fleet=fleet)}
    return [i for i in instances if i.name in chosen]
