"""Groups, pure: membership from both sides (GroupLinked), boot tiers with nested groups,
reverse power-off order, which groups `up` governs, and the conditions `status` shows."""

from __future__ import annotations

from typing import Any

import pytest

from vmfleet.core import groups
from vmfleet.core.expand import Instance, expand
from vmfleet.spec.models import FleetSpec


def fleet(vms: dict[str, Any], groups_: dict[str, Any]) -> tuple[FleetSpec, list[Instance]]:
    spec = FleetSpec.model_validate({"vms": vms, "groups": groups_})
    return spec, expand(spec, fleet="t")


# The seed's three-tier-app, with templates standing for all their replicas.
THREE_TIER = (
    {
        "postgres": {"replicas": 2},
        "app": {"replicas": 3},
        "nginx": {"replicas": 2},
    },
    {
        "three-tier-app": {
            "power_state": "PoweredOn",
            "boot_order": [
                {"members": ["postgres"], "delay": "30s", "wait_for": "ssh"},
                {"members": ["app"], "delay": "20s"},
                {"members": ["nginx"]},
            ],
        }
    },
)


def tier_vms(w: groups.Walk) -> list[tuple[str, ...]]:
    return [t.vms for t in w.tiers]


def test_tiers_resolve_templates_to_their_replicas_in_order() -> None:
    spec, inst = fleet(*THREE_TIER)
    w = groups.walk(spec, inst, "three-tier-app")
    assert tier_vms(w) == [
        ("postgres-0", "postgres-1"),
        ("app-0", "app-1", "app-2"),
        ("nginx-0", "nginx-1"),
    ]
    assert [t.delay for t in w.tiers] == [30.0, 20.0, 0.0]
    assert [t.gate.wait_for for t in w.tiers] == ["ssh", "running", "running"]


def test_power_off_goes_in_reverse_boot_order_with_the_shutdown_timeout() -> None:
    spec, inst = fleet(*THREE_TIER)
    steps = groups.shutdown_steps(groups.walk(spec, inst, "three-tier-app"))
    assert [tuple(vm for vm, _t in s) for s in steps] == [
        ("nginx-0", "nginx-1"),
        ("app-0", "app-1", "app-2"),
        ("postgres-0", "postgres-1"),
    ]
    assert {t for s in steps for _vm, t in s} == {60.0}


def test_members_no_tier_lists_start_in_a_final_tier() -> None:
    spec, inst = fleet(
        {"db": {}, "web": {"group": "g"}, "extra": {}},
        {"g": {"members": ["extra"], "boot_order": [{"members": ["db"]}]}},
    )
    assert tier_vms(groups.walk(spec, inst, "g")) == [("db",), ("extra", "web")]


def test_a_group_without_boot_order_starts_all_members_together() -> None:
    spec, inst = fleet({"a": {"group": "g"}, "b": {"group": "g"}}, {"g": {}})
    assert tier_vms(groups.walk(spec, inst, "g")) == [("a", "b")]


# Nested: the parent's first tier holds the child group and a VM; the child has two tiers.
NESTED = (
    {"infra": {"group": "parent"}, "dns": {}, "ntp": {}, "web": {}},
    {
        "parent": {
            "boot_order": [
                {"members": ["infra", "child"], "delay": "5s"},
                {"members": ["web"]},
            ]
        },
        "child": {
            "group": "parent",
            "boot_order": [{"members": ["dns"], "wait_for": "ssh"}, {"members": ["ntp"]}],
        },
    },
)


def test_a_nested_group_is_walked_inside_its_parents_tier() -> None:
    spec, inst = fleet(*NESTED)
    w = groups.walk(spec, inst, "parent")
    assert tier_vms(w) == [("infra",), ("web",)]
    (child,) = w.tiers[0].groups
    assert child.group == "child"
    assert tier_vms(child) == [("dns",), ("ntp",)]
    assert w.all_vms() == ["infra", "dns", "ntp", "web"]
    assert w.all_groups() == ["parent", "child"]


def test_nested_power_off_reverses_the_child_inside_the_parent_tier() -> None:
    spec, inst = fleet(*NESTED)
    steps = groups.shutdown_steps(groups.walk(spec, inst, "parent"))
    assert [sorted(vm for vm, _t in s) for s in steps] == [["web"], ["ntp"], ["dns", "infra"]]


def test_a_child_named_only_by_its_own_group_field_is_nested() -> None:
    spec, inst = fleet(
        {"a": {"group": "kid"}, "b": {"group": "top"}},
        {"top": {"boot_order": [{"members": ["b"]}]}, "kid": {"group": "top"}},
    )
    w = groups.walk(spec, inst, "top")
    assert tier_vms(w) == [("b",), ()]
    assert [n.group for n in w.tiers[1].groups] == ["kid"]
    assert groups.parent_of(spec, "kid") == "top"
    assert groups.roots(spec) == ["top"]


@pytest.mark.parametrize(
    ("vm_group", "linked", "reason"),
    [
        (None, True, "MemberListed"),  # only the group declares it
        ("g", True, "MemberLinked"),  # both sides agree
        ("other", False, "GroupNameMismatch"),  # both declare it and disagree
    ],
)
def test_group_linked_when_both_sides_agree(
    vm_group: str | None, linked: bool, reason: str
) -> None:
    fields = {"group": vm_group} if vm_group else {}
    spec, inst = fleet({"v": fields}, {"g": {"members": ["v"]}, "other": {}})
    (member,) = groups.members(spec, inst, "g")
    assert (member.linked, member.reason) == (linked, reason)


def test_an_unlinked_member_is_left_out_of_the_walk() -> None:
    spec, inst = fleet(
        {"v": {"group": "other"}, "w": {}},
        {"g": {"boot_order": [{"members": ["v", "w"]}]}, "other": {}},
    )
    assert tier_vms(groups.walk(spec, inst, "g")) == [("w",)]
    assert groups.vms_of(spec, inst, "other") == ["v"]


def test_a_child_group_that_names_another_parent_is_not_linked() -> None:
    spec, inst = fleet({}, {"a": {"members": ["c"]}, "b": {}, "c": {"group": "b"}})
    (member,) = [m for m in groups.members(spec, inst, "a") if m.name == "c"]
    assert not member.linked and member.reason == "GroupNameMismatch"


def test_up_applies_the_outermost_power_state_over_its_subtree() -> None:
    spec, _inst = fleet(
        {},
        {
            "top": {"power_state": "PoweredOn", "members": ["mid"]},
            "mid": {"power_state": "PoweredOff"},
            "alone": {"power_state": "Suspended"},
            "none": {},
        },
    )
    assert groups.governing(spec) == ["top", "alone"]


# --- conditions -----------------------------------------------------------------------------------

TWO = ({"a": {"group": "g"}, "b": {"group": "g"}}, {"g": {"power_state": "PoweredOn"}})


def conditions(status: groups.GroupStatus, member: str) -> dict[str, tuple[str, str]]:
    (m,) = [m for m in status.members if m.name == member]
    return {c.type: (c.status, c.reason) for c in m.conditions}


@pytest.mark.parametrize(
    ("record", "state_a", "synced", "ready"),
    [
        (None, "running", ("True", "PowerStateMatches"), "True"),
        (
            groups.PowerRecord("PoweredOn", "done", 10.0),
            "running",
            ("True", "PowerStateMatches"),
            "True",
        ),
        (
            groups.PowerRecord("PoweredOn", "pending", 10.0),
            "running",
            ("False", "Pending"),
            "False",
        ),
        (groups.PowerRecord("PoweredOn", "done", 10.0), "shutoff", ("False", "NotSynced"), "False"),
        (
            groups.PowerRecord("PoweredOff", "done", 10.0),
            "shutoff",
            ("True", "PowerStateMatches"),
            "False",
        ),
        (groups.PowerRecord("PoweredOn", "failed", 10.0), "shutoff", ("False", "Failed"), "False"),
        (
            groups.PowerRecord("Suspended", "done", 10.0),
            "paused",
            ("True", "PowerStateMatches"),
            "False",
        ),
    ],
)
def test_power_state_synced_from_record_and_observed_state(
    record: groups.PowerRecord | None, state_a: str, synced: tuple[str, str], ready: str
) -> None:
    spec, inst = fleet(*TWO)
    observed = {"a": groups.Placed("local", state_a), "b": groups.Placed("local", "running")}
    (g,) = groups.status(spec, inst, observed, {"g": record} if record else {})
    assert conditions(g, "a")["PowerStateSynced"] == synced
    assert g.conditions[0].status == ready


def test_ready_names_the_members_not_ready() -> None:
    spec, inst = fleet(*TWO)
    observed = {"a": groups.Placed("local", "shutoff")}  # b exists on no host
    (g,) = groups.status(spec, inst, observed, {"g": groups.PowerRecord("PoweredOn", "done", 5.0)})
    ready = g.conditions[0]
    assert (ready.status, ready.reason) == ("False", "MembersNotReady")
    assert ready.message.startswith("2 of 2 members not ready: a (PowerStateSynced: NotSynced)")
    assert "b (PowerStateSynced: NotSynced; PlacementReady: NotPlaced)" in ready.message
    assert conditions(g, "b")["PlacementReady"] == ("False", "NotPlaced")
    assert g.last_updated_power_state_time == 5.0


def test_a_nested_group_takes_its_parents_newer_record_and_reports_up() -> None:
    spec, inst = fleet(*NESTED)
    observed = {vm: groups.Placed("local", "running") for vm in ("infra", "dns", "ntp", "web")}
    observed["ntp"] = groups.Placed("local", "shutoff")
    records = {
        "child": groups.PowerRecord("PoweredOff", "done", 1.0),
        "parent": groups.PowerRecord("PoweredOn", "done", 2.0),
    }
    by_name = {g.name: g for g in groups.status(spec, inst, observed, records)}
    assert list(by_name) == ["parent", "child"]
    assert by_name["child"].power_state == "PoweredOn"
    assert by_name["child"].conditions[0].message.startswith("1 of 2 members not ready: ntp")
    assert conditions(by_name["parent"], "child") == {
        "GroupLinked": ("True", "MemberLinked"),
        "Ready": ("False", "MembersNotReady"),
    }


def test_without_any_power_state_members_are_synced() -> None:
    spec, inst = fleet({"a": {"group": "g"}}, {"g": {}})
    (g,) = groups.status(spec, inst, {"a": groups.Placed("local", "shutoff")}, {})
    assert conditions(g, "a")["PowerStateSynced"] == ("True", "NoPowerState")
    assert g.conditions[0].status == "True"
