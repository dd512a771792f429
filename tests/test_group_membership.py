"""One answer to "who is in this group": power's walk, status, snapshot --group, exec/ssh
targets, up/down targets and the inventory all resolve nested groups the same way."""

from __future__ import annotations

from typing import Any

import pytest

from vmfleet.core import groups, targets
from vmfleet.core.expand import expand
from vmfleet.engine.snapshots import group_vms
from vmfleet.spec.models import FleetSpec

# Each nests `inner` in `outer` a different way; all must agree on the members.
NESTINGS: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    "child names its parent in group:": (
        {"a": {}, "b": {}, "c": {"group": "inner"}},
        {"outer": {"members": ["a"]}, "inner": {"group": "outer", "members": ["b"]}},
        ["a", "b", "c"],
    ),
    "parent lists the child": (
        {"a": {}, "b": {"replicas": 2}},
        {"outer": {"members": ["a", "inner"]}, "inner": {"members": ["b"]}},
        ["a", "b-0", "b-1"],
    ),
    "parent holds only the child": (
        {"a": {}, "b": {}},
        {"outer": {"boot_order": [{"members": ["inner"]}]}, "inner": {"members": ["a", "b"]}},
        ["a", "b"],
    ),
    "a VM listed by one group but naming another is not linked there": (
        {"a": {}, "b": {"group": "elsewhere"}},
        {
            "outer": {"members": ["a", "inner"]},
            "inner": {"members": ["b"]},
            "elsewhere": {},
        },
        ["a"],
    ),
}


@pytest.mark.parametrize("case", NESTINGS)
def test_every_command_resolves_a_nested_group_to_the_same_vms(case: str) -> None:
    vms, groups_, expected = NESTINGS[case]
    spec = FleetSpec.model_validate({"vms": vms, "groups": groups_})
    instances = expand(spec, fleet="t")
    power = groups.walk(spec, instances, "outer").all_vms()  # power on/off, up's group step
    status = groups.vms_of(spec, instances, "outer")
    snapshot = group_vms(spec, instances, "outer")  # snapshot --group
    target = [i.name for i in targets.resolve(spec, instances, "outer", fleet="t")]
    inventory = [vm for vm, gs in groups.memberships(spec, instances).items() if "outer" in gs]
    assert sorted(power) == expected
    assert sorted(status) == expected
    assert sorted(snapshot) == expected
    assert sorted(target) == expected  # exec, ssh, up, down, start, stop, reboot
    assert sorted(inventory) == expected


def test_targets_name_vms_replicas_templates_groups_and_all() -> None:
    spec = FleetSpec.model_validate(
        {"vms": {"web": {"replicas": 3}, "db": {}}, "groups": {"front": {"members": ["web"]}}}
    )
    instances = expand(spec, fleet="t")

    def names(*words: str) -> list[str]:
        return [i.name for i in targets.resolve_all(spec, instances, words, fleet="t")]

    assert names("web") == ["web-0", "web-1", "web-2"]
    assert names("web@1") == ["web-1"]
    assert names("db", "web-2") == ["web-2", "db"]
    assert names("front", "web-0") == ["web-0", "web-1", "web-2"]
    assert names("all") == ["web-0", "web-1", "web-2", "db"]


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("nope", "unknown VM, template or group 'nope' in fleet t"),
        ("web@7", "web@7: index 7 is out of range for web (0..2)"),
        ("db@0", "db@0: index 0 is out of range for db (only the bare name (1 replica))"),
    ],
)
def test_an_unknown_target_is_a_usage_error_naming_it(word: str, message: str) -> None:
    from vmfleet.errors import UsageError

    spec = FleetSpec.model_validate({"vms": {"web": {"replicas": 3}, "db": {}}})
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        targets.resolve(spec, expand(spec, fleet="t"), word, fleet="t")
