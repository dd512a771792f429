"""The plan is a pure diff: create what is missing, leave what matches, change what drifted
(live or at next boot), and show VMs no longer in the spec as orphans; each as the explicit
steps `up` carries out."""

from __future__ import annotations

from dataclasses import replace

from vmfleet.core.expand import Instance, expand
from vmfleet.core.plan import HostObserved, Observed, diff, runtime_hash, spec_hash
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
        runtime_hash=runtime_hash(inst),
        data_disks=tuple(d.size for d in inst.fields.data_disks),
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


def kinds(action: object) -> list[str]:
    return [s.kind + (f" {s.target}" if s.target else "") for s in action.steps]  # type: ignore[attr-defined]


def test_new_vms_are_created_and_started_unless_their_group_holds_them() -> None:
    web0, web1 = fleet(web={"replicas": 2})
    plan = diff([(web0, "local"), (web1, "local")], [], hold={"web-1"})
    assert [kinds(a) for a in plan.actions] == [["create", "start"], ["create"]]


def test_a_stopped_unchanged_vm_is_started() -> None:
    (web,) = fleet(web={})
    (action,) = diff([(web, "local")], [seen(web, state="shutoff")]).actions
    assert (action.kind, kinds(action)) == ("unchanged", ["start"])


def test_memory_growth_on_a_running_vm_is_defined_then_pending_until_a_restart() -> None:
    (small,) = fleet(web={"memory": "1GiB"})
    (big,) = fleet(web={"memory": "2GiB"})
    (first,) = diff([(big, "local")], [seen(small)]).actions
    assert kinds(first) == ["define"] and [c.field for c in first.pending] == ["memory"]
    staged = seen(small, config_hash=spec_hash(big))  # what libvirt holds after that define
    (later,) = diff([(big, "local")], [staged]).actions
    assert (later.kind, kinds(later), [c.field for c in later.pending]) == (
        "unchanged", [], ["memory"],
    )  # fmt: skip
    assert diff([(big, "local")], [staged]).empty
    (restart,) = diff([(big, "local")], [staged], restart=True).actions
    assert kinds(restart) == ["stop", "start"]


def test_memory_shrink_and_label_changes_apply_to_the_running_vm() -> None:
    (before,) = fleet(web={"memory": "2GiB", "labels": {"tier": "a"}})
    (after,) = fleet(web={"memory": "1GiB", "labels": {"tier": "b"}})
    (action,) = diff([(after, "local")], [seen(before)]).actions
    assert kinds(action) == ["define", "change-live"] and not action.pending
    (labels_only,) = fleet(web={"memory": "2GiB", "labels": {"tier": "b"}})
    (action,) = diff([(labels_only, "local")], [seen(before)]).actions
    assert [c.field for c in action.changes] == ["settings"]
    assert kinds(action) == ["define", "change-live"]


def test_disk_growth_is_a_block_resize_on_a_running_vm_and_offline_on_a_stopped_one() -> None:
    (v10,) = fleet(web={"disk": "10GiB"})
    (v20,) = fleet(web={"disk": "20GiB"})
    (running,) = diff([(v20, "local")], [seen(v10)]).actions
    assert kinds(running) == ["grow-disk root", "define", "change-live"]
    assert running.steps[0].live
    (stopped,) = diff([(v20, "local")], [seen(v10, state="shutoff")]).actions
    assert kinds(stopped) == ["grow-disk root", "define", "start"]
    assert not stopped.steps[0].live


def test_data_disks_are_added_and_removed_around_the_restart() -> None:
    (none,) = fleet(web={})
    (two,) = fleet(web={"data_disks": [{"size": "1GiB"}, {"size": "1GiB"}]})
    (add,) = diff([(two, "local")], [seen(none)]).actions
    assert kinds(add) == ["add-disk data-0", "add-disk data-1", "define"]
    assert [c.field for c in add.pending] == ["data-disks"]
    (drop,) = diff([(none, "local")], [seen(two)], restart=True).actions
    assert kinds(drop) == ["define", "stop", "remove-disk data-0", "remove-disk data-1", "start"]
    (off,) = diff([(none, "local")], [seen(two, state="shutoff")]).actions
    assert kinds(off) == ["define", "remove-disk data-0", "remove-disk data-1", "start"]


def test_a_network_change_waits_for_the_next_boot() -> None:
    spec = {"networks": {"lab": {"mode": "nat", "cidr": "10.9.0.0/24"}}}
    (user,) = fleet(web={})
    (lab,) = expand(
        FleetSpec.model_validate(
            {**spec, "images": {"d": {"source": "/x"}}, "defaults": {"image": "d"},
             "vms": {"web": {"network": "lab"}}}
        ),
        fleet="f",
    )  # fmt: skip
    plan = diff([(lab, "local")], [seen(user)], hosts={"local": HostObserved("local")})
    (action,) = plan.actions
    assert kinds(action) == ["define"] and [c.field for c in action.pending] == ["definition"]
    assert [(s.kind, s.target) for s in plan.host_steps] == [("network-create", "lab")]


def test_orphans_are_removed_only_with_prune_and_a_left_host_loses_its_networks() -> None:
    (gone,) = fleet(old={})
    have = {"local": HostObserved("local", networks=frozenset({"lab"}))}
    kept = diff([], [seen(gone)], hosts=have)
    assert kept.empty and kept.actions[0].kind == "orphan"
    pruned = diff([], [seen(gone)], hosts=have, prune=True)
    assert [s.kind for s in pruned.steps] == ["remove", "network-remove"]


def test_base_images_are_uploaded_once_per_host_for_new_vms_only() -> None:
    web0, web1 = fleet(web={"replicas": 2})
    plan = diff([(web0, "local"), (web1, "local")], [], hosts={"local": HostObserved("local")})
    assert [(s.kind, s.target) for s in plan.host_steps] == [("image-upload", "d")]
    there = {"local": HostObserved("local", images=frozenset({"d"}))}
    assert diff([(web0, "local"), (web1, "local")], [], hosts=there).host_steps == ()


def test_a_vm_running_off_its_pin_is_drift_and_stays_where_it_runs() -> None:
    (pinned,) = fleet(web={"host": "far"})
    (action,) = diff([(pinned, "local")], [seen(pinned)]).actions
    assert (action.kind, action.host, action.steps) == ("unchanged", "local", ())
    assert action.drift is not None and action.drift.describe().startswith(
        "pinned to far (host:) but runs on local; not moved"
    )
    for vm, running_on in [({}, "local"), ({"host": "local"}, "local")]:
        (instance,) = fleet(web=vm)
        plan = diff([(instance, running_on)], [seen(instance, host=running_on)])
        assert plan.drift == [], vm
    (new,) = fleet(web={"host": "far"})
    assert diff([(new, "far")], []).drift == []  # not created yet: placement follows the pin
