"""Placement: pins, preferences, capabilities, capacity, max_per_host, affinity and
anti-affinity by host and zone, spread and pack, explanations; and, as properties, that no
constraint is ever violated and the same input always gives the same answer."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmfleet.core.placement import (
    HostFacts,
    Placed,
    Resources,
    VmRequest,
    domain,
    place,
    terms_of,
)
from vmfleet.spec.models import Affinity

GIB = 1 << 30


def host(name: str, zone: str = "a", **kw: Any) -> HostFacts:
    kw.setdefault("capacity", Resources(8, 16 * GIB, 0))
    return HostFacts(name=name, labels={"zone": zone}, **kw)


def vm(name: str, template: str = "t", **kw: Any) -> VmRequest:
    kw.setdefault("vcpus", 1)
    kw.setdefault("memory", GIB)
    kw.setdefault("disk", 10 * GIB)
    return VmRequest(name=name, template=template, **kw)


def rule(kind: str, labels: dict[str, str], *, key: str = "", required: bool = True) -> Affinity:
    term: dict[str, Any] = {"labelSelector": [{"matchLabels": labels}]}
    if key:
        term["topologyKey"] = key
    when = "required" if required else "preferred"
    return Affinity.model_validate({kind: {f"{when}DuringSchedulingIgnoredDuringExecution": term}})


THREE_ZONES = [host("a1", "a"), host("a2", "a"), host("b1", "b"), host("c1", "c")]


# --- tables ---------------------------------------------------------------------------------


def test_a_pin_wins_over_load_and_over_schedulable_false() -> None:
    hosts = [host("h1"), host("h2", schedulable=False)]
    result = place(hosts, [vm("v", pin="h2")])
    assert result.hosts == {"v": "h2"}


def test_node_preference_in_order_then_the_next_when_full() -> None:
    hosts = [host("h1"), host("h2", capacity=Resources(8, GIB, 0)), host("h3")]
    result = place(hosts, [vm("v1", preference=("h2", "h3")), vm("v2", preference=("h2", "h3"))])
    assert result.hosts == {"v1": "h2", "v2": "h3"}


def test_unschedulable_and_unreachable_hosts_take_no_new_vms() -> None:
    hosts = [
        host("h1", schedulable=False),
        host("h2", reachable=False, unreachable_reason="down"),
        host("h3"),
    ]
    assert place(hosts, [vm("v")]).hosts == {"v": "h3"}


def test_an_arch_goes_only_where_it_runs_and_kvm_is_preferred() -> None:
    hosts = [
        host("x86", arches=frozenset({"x86_64"})),
        host("arm-tcg", arches=frozenset({"aarch64", "x86_64"})),
        host("arm-kvm", arches=frozenset({"aarch64"}), kvm_arches=frozenset({"aarch64"})),
    ]
    result = place(hosts, [vm("a", arch="aarch64"), vm("p", arch="ppc64")])
    assert result.hosts == {"a": "arm-kvm"}
    assert "cannot run ppc64 guests" in " ".join(result.failures["p"])


def test_capacity_counts_what_is_used_and_never_drops_a_vm_silently() -> None:
    hosts = [host("h1", capacity=Resources(8, 4 * GIB, 0), used=Resources(1, 3 * GIB, 0))]
    result = place(hosts, [vm("small", memory=GIB), vm("big", memory=GIB)])
    assert result.hosts == {"small": "h1"}
    assert result.failures["big"] == ("h1: not enough memory: needs 1GiB, 0B of 4GiB left",)


def test_disk_is_a_limit_only_when_the_host_has_one() -> None:
    hosts = [host("h1", capacity=Resources(8, 16 * GIB, 15 * GIB)), host("h2")]
    assert place(hosts, [vm("v", disk=20 * GIB)]).hosts == {"v": "h2"}


def test_max_per_host_counts_placed_replicas() -> None:
    placed = [Placed("w-0", "h1", "w")]
    result = place(
        [host("h1"), host("h2")],
        [vm("w-1", "w", max_per_host=1), vm("w-2", "w", max_per_host=1)],
        placed=placed,
    )
    assert result.hosts == {"w-1": "h2"}
    assert "max_per_host" in " ".join(result.failures["w-2"])


def test_zone_anti_affinity_puts_one_replica_per_zone_and_fails_the_fourth() -> None:
    anti = rule("zoneAntiAffinity", {"tier": "web"}, key="topology.kubernetes.io/zone")
    web = [vm(f"web-{i}", labels={"tier": "web"}, affinity=anti) for i in range(4)]
    result = place(THREE_ZONES, web)
    zones = [result.hosts[f"web-{i}"][0] for i in range(3)]
    assert sorted(zones) == ["a", "b", "c"]
    assert "web-3" in result.failures


def test_anti_affinity_holds_both_ways() -> None:
    anti = rule("vmAntiAffinity", {"tier": "db"})
    placed = [Placed("guard", "h1", "g", labels={}, affinity=anti)]
    result = place([host("h1"), host("h2")], [vm("db", labels={"tier": "db"})], placed=placed)
    assert result.hosts == {"db": "h2"}


def test_required_host_affinity_follows_the_vm_it_names_even_if_listed_first() -> None:
    near = rule("vmAffinity", {"component": "app"}, key="kubernetes.io/hostname")
    result = place(
        [host("h1"), host("h2"), host("h3")],
        [vm("cache", affinity=near), vm("app", labels={"component": "app"}, pin="h3")],
    )
    assert result.hosts == {"app": "h3", "cache": "h3"}


def test_required_affinity_to_nothing_fails_with_its_reason() -> None:
    near = rule("vmAffinity", {"component": "nobody"})
    result = place([host("h1")], [vm("lonely", affinity=near)])
    assert result.failures["lonely"] == (
        "affinity: no VM matching component=nobody per host is placed",
    )


def test_a_self_matching_affinity_group_starts_its_own_host() -> None:
    together = rule("vmAffinity", {"app": "x"})
    result = place(
        [host("h1"), host("h2")],
        [vm(f"x-{i}", labels={"app": "x"}, affinity=together) for i in range(3)],
    )
    assert len(set(result.hosts.values())) == 1 and len(result.hosts) == 3


def test_preferred_zone_anti_affinity_spreads_but_never_fails() -> None:
    soft = rule("zoneAntiAffinity", {"tier": "web"}, required=False)
    web = [vm(f"web-{i}", labels={"tier": "web"}, affinity=soft) for i in range(5)]
    result = place(THREE_ZONES, web)
    assert not result.failures
    assert {result.hosts[f"web-{i}"][0] for i in range(3)} == {"a", "b", "c"}


def test_spread_uses_the_least_loaded_host_and_pack_the_fullest() -> None:
    hosts = [host("h1", used=Resources(4, 0, 0)), host("h2")]
    assert place(hosts, [vm("v")], strategy="spread").hosts == {"v": "h2"}
    assert place(hosts, [vm("v")], strategy="pack").hosts == {"v": "h1"}


def test_explain_names_every_host_with_its_verdict() -> None:
    anti = rule("zoneAntiAffinity", {"tier": "web"})
    placed = [Placed("web-0", "a1", "web", labels={"tier": "web"})]
    result = place(
        THREE_ZONES,
        [vm("web-1", labels={"tier": "web"}, affinity=anti)],
        placed=placed,
        explain=["web-1"],
    )
    verdicts = {v.host: v for v in result.explained["web-1"]}
    assert not verdicts["a1"].ok and not verdicts["a2"].ok
    assert "in zone a" in verdicts["a2"].reasons[0]
    assert verdicts["b1"].chosen and verdicts["c1"].ok and not verdicts["c1"].chosen


@pytest.mark.parametrize(
    ("kind", "key", "normalised"),
    [
        ("vmAffinity", "", "host"),
        ("vmAntiAffinity", "kubernetes.io/hostname", "host"),
        ("zoneAntiAffinity", "", "zone"),
        ("zoneAffinity", "topology.kubernetes.io/zone", "zone"),
        ("vmAntiAffinity", "rack", "rack"),
    ],
)
def test_topology_keys(kind: str, key: str, normalised: str) -> None:
    assert terms_of(rule(kind, {"a": "b"}, key=key))[0].key == normalised


# --- properties -----------------------------------------------------------------------------

KINDS = ["vmAffinity", "vmAntiAffinity", "zoneAffinity", "zoneAntiAffinity"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[HostFacts], list[VmRequest], str]:
    n_hosts = draw(st.integers(1, 7))
    hosts = [
        HostFacts(
            name=f"h{i}",
            capacity=Resources(draw(st.integers(1, 8)), draw(st.integers(1, 8)) * GIB, 0),
            labels={"zone": draw(st.sampled_from("abc"))},
            arches=frozenset(draw(st.sets(st.sampled_from(["x86_64", "aarch64"]), min_size=1))),
            schedulable=draw(st.booleans()) or i == 0,
            reachable=draw(st.integers(0, 5)) > 0,
        )
        for i in range(n_hosts)
    ]
    vms: list[VmRequest] = []
    for i in range(draw(st.integers(1, 12))):
        affinity = None
        if draw(st.booleans()):
            affinity = rule(
                draw(st.sampled_from(KINDS)),
                {"tier": draw(st.sampled_from("xyz"))},
                required=draw(st.booleans()),
            )
        vms.append(
            VmRequest(
                name=f"v{i}",
                template=draw(st.sampled_from(["t1", "t2"])),
                vcpus=draw(st.integers(1, 4)),
                memory=draw(st.integers(1, 4)) * GIB,
                disk=GIB,
                arch=draw(st.sampled_from(["x86_64", "x86_64", "aarch64"])),
                labels={"tier": draw(st.sampled_from("xyz"))},
                pin=draw(st.one_of(st.none(), st.sampled_from([h.name for h in hosts]))),
                preference=tuple(draw(st.lists(st.sampled_from([h.name for h in hosts]))))[:2],
                affinity=affinity,
                max_per_host=draw(st.one_of(st.none(), st.integers(1, 3))),
            )
        )
    return hosts, vms, draw(st.sampled_from(["spread", "pack"]))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_no_constraint_is_ever_violated(
    scenario: tuple[list[HostFacts], list[VmRequest], str],
) -> None:
    hosts, vms, strategy = scenario
    result = place(hosts, vms, strategy=strategy)  # type: ignore[arg-type]
    facts = {h.name: h for h in hosts}
    assert set(result.hosts) | set(result.failures) == {v.name for v in vms}
    assert not set(result.hosts) & set(result.failures)
    cpus: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    per_template: Counter[tuple[str, str]] = Counter()
    by_name = {v.name: v for v in vms}
    for name, where in result.hosts.items():
        v, h = by_name[name], facts[where]
        assert h.reachable and v.arch in h.arches
        assert h.schedulable or v.pin == where
        assert v.pin in (None, where)
        cpus[where] += v.vcpus
        memory[where] += v.memory
        per_template[(v.template, where)] += 1
        assert v.max_per_host is None or per_template[(v.template, where)] <= v.max_per_host
    for where in cpus:
        assert cpus[where] <= facts[where].capacity.cpus
        assert memory[where] <= facts[where].capacity.memory
    for name, where in result.hosts.items():
        for term in terms_of(by_name[name].affinity):
            if not term.required:
                continue
            mine = domain(facts[where], term.key)
            others = [
                domain(facts[w], term.key)
                for n, w in result.hosts.items()
                if n != name and term.matches(by_name[n].labels)
            ]
            if term.anti:
                assert mine not in others, f"{name} on {where} breaks {term.describe()}"
            else:
                assert mine in others or term.matches(by_name[name].labels), (
                    f"{name} on {where} breaks {term.describe()}"
                )


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_same_input_same_output_and_explaining_changes_nothing(
    scenario: tuple[list[HostFacts], list[VmRequest], str],
) -> None:
    hosts, vms, strategy = scenario
    first = place(hosts, vms, strategy=strategy)  # type: ignore[arg-type]
    again = place(hosts, vms, strategy=strategy)  # type: ignore[arg-type]
    explained = place(hosts, vms, strategy=strategy, explain=[v.name for v in vms])  # type: ignore[arg-type]
    assert first == again
    assert explained.hosts == first.hosts and explained.failures == first.failures
    for name, where in first.hosts.items():
        chosen = [v.host for v in explained.explained[name] if v.chosen]
        assert chosen == [where]
        best = min(v.score for v in explained.explained[name] if v.ok and v.score)
        assert next(v.score for v in explained.explained[name] if v.chosen) == best
