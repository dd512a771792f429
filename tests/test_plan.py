"""The plan is a pure diff: create what is missing, leave what matches, change what drifted
(live or at next boot), and show VMs no longer in the spec as orphans."""

from __future__ import annotations

from dataclasses import replace

from vmfleet.core.expand import Instance, expand
from vmfleet.core.plan import Observed, diff, spec_hash
from vmfleet.spec.models import FleetSpec
from vmfleet.spec.units import GIB


def fleet(**vms: object) -> list[Instance]:
    spec = FleetSpec.model_validate(
        {"images": {"d": {"source": "/x"}}, "defaults": {"image": "d"}, "vms": vms}
    )
    return expand(spec, fleet="f")


def seen(inst: Instance, *, state: str = "running", **over: object) -> Observed:
    base = Observed(
        name=inst.name,
        host="local",
        spec_hash=spec_hash(inst),
        state=state,
        vcpus=inst.fields.vcpus,
        memory_bytes=inst.fields.memory,
        disk_bytes=inst.fields.disk,
    )
    return replace(base, **over)  # type: ignore[arg-type]


def test_missing_vms_are_created_and_matching_ones_unchanged() -> None:
    web0, web1 = fleet(web={"replicas": 2})
    plan = diff([(web0, "local"), (web1, "local")], [seen(web0)])
    assert [(a.kind, a.vm) for a in plan.actions] == [("unchanged", "web-0"), ("create", "web-1")]
    assert not plan.empty


def test_an_unchanged_fleet_gives_an_empty_plan() -> None:
    vms = fleet(web={"replicas": 3})
    plan = diff([(i, "local") for i in vms], [seen(i) for i in vms])
    assert plan.empty


def test_vms_not_in_the_spec_are_orphans() -> None:
    (web,) = fleet(web={})
    (gone,) = fleet(old={})
    plan = diff([(web, "local")], [seen(web), seen(gone)])
    assert [(a.kind, a.vm) for a in plan.actions] == [("unchanged", "web"), ("orphan", "old")]


def test_memory_growth_on_a_running_vm_waits_for_the_next_boot() -> None:
    (small,) = fleet(web={"memory": "1GiB"})
    (big,) = fleet(web={"memory": "2GiB"})
    (action,) = diff([(big, "local")], [seen(small)]).actions
    assert action.kind == "change"
    (change,) = action.changes
    assert (change.field, change.old, change.new, change.live) == ("memory", GIB, 2 * GIB, False)
    assert action.needs_restart


def test_changes_on_a_stopped_vm_apply_at_once() -> None:
    (small,) = fleet(web={"vcpus": 1})
    (big,) = fleet(web={"vcpus": 4})
    (action,) = diff([(big, "local")], [seen(small, state="shutoff")]).actions
    assert [(c.field, c.live) for c in action.changes] == [("vcpus", True)]


def test_disk_growth_is_live_and_shrink_is_flagged() -> None:
    (v10,) = fleet(web={"disk": "10GiB"})
    (v20,) = fleet(web={"disk": "20GiB"})
    (grow,) = diff([(v20, "local")], [seen(v10)]).actions
    assert [(c.field, c.live) for c in grow.changes] == [("disk", True)]
    (shrink,) = diff([(v10, "local")], [seen(v20)]).actions
    assert [c.field for c in shrink.changes] == ["disk-shrink"]


def test_spec_hash_is_stable_and_sensitive() -> None:
    (a,) = fleet(web={"memory": "1GiB", "labels": {"x": "1"}})
    (b,) = fleet(web={"memory": "1GiB", "labels": {"x": "1"}})
    (c,) = fleet(web={"memory": "1GiB", "labels": {"x": "2"}})
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)


def test_spec_hash_never_depends_on_the_password() -> None:
    (a,) = fleet(web={"cloud_init": {"password": "hunter2"}})
    (b,) = fleet(web={"cloud_init": {"password": "correct horse"}})
    (c,) = fleet(web={})
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)
