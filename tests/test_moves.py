"""Move planning (drain, rebalance): a drained host is emptied through placement's rules,
rebalancing lowers the highest load with the fewest moves; as properties, no plan ever breaks
a required rule or a capacity, and rebalancing never raises the highest load."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vmfleet.core.moves import Current, MovePlan, drain, rebalance, where_to
from vmfleet.core.placement import HostFacts, Resources, VmRequest, domain, place, terms_of
from vmfleet.spec.models import Affinity

GIB = 1 << 30


def zone_anti(tier: str) -> Affinity:
    return Affinity.model_validate(
        {
            "zoneAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "labelSelector": [{"matchLabels": {"tier": tier}}],
                    "topologyKey": "topology.kubernetes.io/zone",
                }
            }
        }
    )


def vm(name: str, **kw: Any) -> VmRequest:
    kw.setdefault("vcpus", 1)
    kw.setdefault("memory", GIB)
    kw.setdefault("disk", GIB)
    return VmRequest(name=name, template="t", **kw)


def with_use(hosts: Sequence[HostFacts], vms: Sequence[Current]) -> list[HostFacts]:
    """Hosts whose `used` counts the VMs on them, as `engine.hosts.gather` reports it."""
    cpus: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    for v in vms:
        cpus[v.host] += v.request.vcpus
        memory[v.host] += v.request.memory
    return [
        HostFacts(
            name=h.name,
            capacity=h.capacity,
            used=Resources(cpus[h.name], memory[h.name], 0),
            labels=h.labels,
            schedulable=h.schedulable,
            reachable=h.reachable,
        )
        for h in hosts
    ]


def host(name: str, zone: str, cpus: int = 8, memory: int = 16) -> HostFacts:
    return HostFacts(name=name, capacity=Resources(cpus, memory * GIB, 0), labels={"zone": zone})


def final(vms: Sequence[Current], plan: MovePlan) -> dict[str, str]:
    where = {v.request.name: v.host for v in vms}
    for move in plan.moves:
        assert where[move.vm] == move.source
        where[move.vm] = move.target
    return where


# --- tables ---------------------------------------------------------------------------------


def test_drain_moves_four_vms_off_a_host_keeping_zone_anti_affinity() -> None:
    hosts = [host("a1", "a"), host("a2", "a"), host("b1", "b"), host("c1", "c"), host("d1", "d")]
    vms = [
        Current(vm(f"web-{i}", labels={"tier": "web"}, affinity=zone_anti("web")), h)
        for i, h in enumerate(["a1", "b1", "c1"])
    ]
    vms += [Current(vm(f"db-{i}"), "a1") for i in range(3)]
    plan = drain(with_use(hosts, vms), vms, "a1")
    assert not plan.stuck
    assert {m.vm for m in plan.moves} == {"web-0", "db-0", "db-1", "db-2"}
    where = final(vms, plan)
    assert where["web-0"] in ("a2", "d1")  # zones without another web replica
    assert "a1" not in where.values()


def test_drain_leaves_pinned_and_unplaceable_vms_with_reasons() -> None:
    hosts = [host("a1", "a"), host("b1", "b")]
    vms = [
        Current(vm("pinned", pin="a1"), "a1"),
        Current(vm("web-0", labels={"tier": "web"}, affinity=zone_anti("web")), "a1"),
        Current(vm("web-1", labels={"tier": "web"}, affinity=zone_anti("web")), "b1"),
        Current(vm("big", memory=GIB * 31 // 2), "a1"),
    ]
    plan = drain(with_use(hosts, vms), vms, "a1")
    assert plan.moves == ()
    assert plan.stuck["pinned"] == ("pinned to a1 (host: in the spec)",)
    assert any("anti-affinity" in r for r in plan.stuck["web-0"])
    assert any("not enough memory" in r for r in plan.stuck["big"])


def test_rebalance_after_adding_a_host_takes_the_fewest_moves() -> None:
    hosts = [host("h1", "a", cpus=4), host("h2", "a", cpus=4), host("h3", "a", cpus=4)]
    vms = [Current(vm(f"v{i}"), "h1" if i < 4 else "h2") for i in range(8)]
    plan = rebalance(with_use(hosts, vms), vms, max_moves=10)
    assert max(plan.after.values()) < max(plan.before.values())
    assert len(plan.moves) == 2  # 4/4/0 -> 3/3/2
    assert sorted(Counter(final(vms, plan).values()).values()) == [2, 3, 3]


def test_rebalance_of_a_balanced_fleet_proposes_nothing_and_respects_max_moves() -> None:
    hosts = [host("h1", "a"), host("h2", "a")]
    balanced = [Current(vm(f"v{i}"), f"h{i % 2 + 1}") for i in range(4)]
    assert rebalance(with_use(hosts, balanced), balanced).moves == ()
    skewed = [Current(vm(f"v{i}"), "h1") for i in range(8)]
    assert len(rebalance(with_use(hosts, skewed), skewed, max_moves=1).moves) == 1


def test_rebalance_repairs_a_broken_node_preference() -> None:
    hosts = [host("h1", "a"), host("h2", "a")]
    vms = [Current(vm("v", preference=("h2",)), "h1"), Current(vm("w"), "h2")]
    plan = rebalance(with_use(hosts, vms), vms)
    # v goes where it prefers, then w makes room: preferences first, then load
    assert [(m.vm, m.target) for m in plan.moves] == [("v", "h2"), ("w", "h1")]


def test_rebalance_of_1000_hosts_and_10000_vms_is_planned_in_under_2_seconds() -> None:
    hosts = [host(f"h{i}", f"z{i % 10}", cpus=64, memory=256) for i in range(1000)]
    vms = [
        Current(vm(f"v{i}", labels={"app": f"a{i % 50}"}), f"h{i % 500}")  # half the hosts empty
        for i in range(10000)
    ]
    facts = with_use(hosts, vms)
    began = time.process_time()  # CPU seconds: this machine is shared
    plan = rebalance(facts, vms, max_moves=5000)  # enough to even the load out
    took = time.process_time() - began
    assert len(plan.moves) == 5000
    assert max(plan.after.values()) == max(plan.before.values()) / 2
    assert took < 2.0, took


# --- properties -----------------------------------------------------------------------------


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[HostFacts], list[Current]]:
    hosts = [
        HostFacts(
            name=f"h{i}",
            capacity=Resources(draw(st.integers(2, 8)), draw(st.integers(2, 8)) * GIB, 0),
            labels={"zone": draw(st.sampled_from("abc"))},
            schedulable=draw(st.integers(0, 5)) > 0,
            reachable=draw(st.integers(0, 5)) > 0,
        )
        for i in range(draw(st.integers(2, 6)))
    ]
    requests = []
    for i in range(draw(st.integers(1, 14))):
        tier = draw(st.sampled_from("xyz"))
        kind = draw(st.sampled_from(["none", "vmAntiAffinity", "zoneAntiAffinity", "vmAffinity"]))
        affinity = None
        if kind != "none":
            term = {"labelSelector": [{"matchLabels": {"tier": tier}}]}
            when = draw(st.sampled_from(["required", "preferred"]))
            affinity = Affinity.model_validate(
                {kind: {f"{when}DuringSchedulingIgnoredDuringExecution": term}}
            )
        requests.append(
            VmRequest(
                name=f"v{i}",
                template=draw(st.sampled_from(["t1", "t2"])),
                vcpus=draw(st.integers(1, 3)),
                memory=draw(st.integers(1, 3)) * GIB,
                disk=0,
                labels={"tier": tier},
                preference=tuple(
                    draw(st.lists(st.sampled_from([h.name for h in hosts]), max_size=2))
                ),
                affinity=affinity,
                max_per_host=draw(st.one_of(st.none(), st.integers(1, 3))),
            )
        )
    placed = place(hosts, requests)  # a start that keeps every rule
    vms = [Current(r, placed.hosts[r.name]) for r in requests if r.name in placed.hosts]
    return with_use(hosts, vms), vms


def violations(
    hosts: Sequence[HostFacts], vms: Sequence[Current], where: Mapping[str, str]
) -> list[str]:
    facts = {h.name: h for h in hosts}
    reqs = {v.request.name: v.request for v in vms}
    out: list[str] = []
    cpus: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    per_template: Counter[tuple[str, str]] = Counter()
    for name, h in where.items():
        cpus[h] += reqs[name].vcpus
        memory[h] += reqs[name].memory
        per_template[(reqs[name].template, h)] += 1
    for h in cpus:
        if cpus[h] > facts[h].capacity.cpus or memory[h] > facts[h].capacity.memory:
            out.append(f"{h} over capacity")
    for name, h in where.items():
        req = reqs[name]
        if req.max_per_host is not None and per_template[(req.template, h)] > req.max_per_host:
            out.append(f"{name}: max_per_host on {h}")
        for term in terms_of(req.affinity):
            if not term.required:
                continue
            mine = domain(facts[h], term.key)
            others = [
                domain(facts[w], term.key)
                for n, w in where.items()
                if n != name and term.matches(reqs[n].labels)
            ]
            if term.anti and mine in others:
                out.append(f"{name} on {h} breaks {term.describe()}")
            if not term.anti and mine not in others and not term.matches(req.labels):
                out.append(f"{name} on {h} breaks {term.describe()}")
    return out


@settings(max_examples=100, deadline=None)
@given(fleets(), st.data())
def test_drain_never_breaks_a_rule_and_empties_the_host_unless_it_says_why(
    fleet: tuple[list[HostFacts], list[Current]], data: st.DataObject
) -> None:
    hosts, vms = fleet
    drained = data.draw(st.sampled_from([h.name for h in hosts]))
    before = violations(hosts, vms, {v.request.name: v.host for v in vms})
    plan = drain(hosts, vms, drained)
    where = final(vms, plan)
    assert violations(hosts, vms, where) == before == []
    facts = {h.name: h for h in hosts}
    for move in plan.moves:
        assert move.source == drained and move.target != drained
        assert facts[move.target].reachable and facts[move.target].schedulable
    assert {n for n, h in where.items() if h == drained} == set(plan.stuck)


@settings(max_examples=100, deadline=None)
@given(fleets(), st.integers(0, 5))
def test_rebalance_never_breaks_a_rule_nor_raises_the_highest_load(
    fleet: tuple[list[HostFacts], list[Current]], max_moves: int
) -> None:
    hosts, vms = fleet
    plan = rebalance(hosts, vms, max_moves=max_moves)
    assert len(plan.moves) <= max_moves
    where = final(vms, plan)
    assert violations(hosts, vms, where) == []
    usable = {h.name for h in hosts if h.reachable and h.schedulable}
    assert all(m.target in usable for m in plan.moves)
    soft = any(
        v.request.preference or any(not t.required for t in terms_of(v.request.affinity))
        for v in vms
    )
    if not soft:  # preferences outrank load, as in placement
        assert max(plan.after.values()) <= max(plan.before.values()) + 1e-9
    assert rebalance(hosts, vms, max_moves=max_moves) == plan  # same input, same plan


def test_one_vm_goes_where_placement_says_or_names_what_the_chosen_host_breaks() -> None:
    hosts = [host("a1", "a"), host("a2", "a"), host("b1", "b")]
    vms = [
        Current(vm("web-0", labels={"tier": "web"}, affinity=zone_anti("web")), "a1"),
        Current(vm("web-1", labels={"tier": "web"}, affinity=zone_anti("web")), "b1"),
    ]
    facts = with_use(hosts, vms)
    assert where_to(facts, vms, "web-0") == ("a2", ())
    target, reasons = where_to(facts, vms, "web-0", target="b1")
    assert target is None and any("anti-affinity" in r for r in reasons)
    assert where_to(facts, vms, "web-0", target="a1")[1] == ("web-0 already runs on a1",)
