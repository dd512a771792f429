"""Placement's input and output: hosts as facts, VMs asked for and placed, and affinity terms
normalised to topology keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from vmfleet.spec.models import Affinity, AffinityRule

Strategy = Literal["spread", "pack"]
HOST_KEYS = frozenset({"kubernetes.io/hostname", "hostname", "host"})
ZONE_KEYS = frozenset({"topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"})
HOST = "host"  # the normalised topology key of "same host"


@dataclass(frozen=True, slots=True)
class Resources:
    """vCPUs, memory bytes and disk bytes."""

    cpus: float
    memory: int
    disk: int


@dataclass(frozen=True, slots=True)
class HostFacts:
    """One host as placement sees it. `capacity` is already multiplied by overcommit; a disk
    capacity of 0 sets no disk limit."""

    name: str
    capacity: Resources
    used: Resources = Resources(0, 0, 0)
    labels: Mapping[str, str] = field(default_factory=dict)
    arches: frozenset[str] = frozenset({"x86_64"})  # "*": any
    kvm_arches: frozenset[str] = frozenset()
    schedulable: bool = True
    reachable: bool = True
    unreachable_reason: str = ""
    problem: str = ""  # reachable, but cannot take VMs (say, its pool is missing)


@dataclass(frozen=True, slots=True)
class Placed:
    """A VM already on a host: counts for affinity and `max_per_host`, never moves."""

    name: str
    host: str
    template: str
    labels: Mapping[str, str] = field(default_factory=dict)
    affinity: Affinity | None = None


@dataclass(frozen=True, slots=True)
class VmRequest:
    """A new VM to place."""

    name: str
    template: str
    vcpus: int
    memory: int
    disk: int
    arch: str = "x86_64"
    labels: Mapping[str, str] = field(default_factory=dict)
    pin: str | None = None
    preference: tuple[str, ...] = ()
    affinity: Affinity | None = None
    max_per_host: int | None = None


@dataclass(frozen=True, slots=True)
class HostVerdict:
    """Why one host was chosen or rejected for one VM (`score`: lower is better)."""

    host: str
    ok: bool
    reasons: tuple[str, ...]
    score: tuple[float, ...] | None = None
    chosen: bool = False


@dataclass(frozen=True, slots=True)
class PlacementResult:
    hosts: Mapping[str, str]
    failures: Mapping[str, tuple[str, ...]]
    explained: Mapping[str, tuple[HostVerdict, ...]] = field(default_factory=dict)
    unreachable: Mapping[str, str] = field(default_factory=dict)  # host -> why


# --- affinity terms, normalised -------------------------------------------------------------

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Term:
    """One affinity term: a selector (OR of AND-ed label pairs) and a topology key."""

    selectors: tuple[Pairs, ...]
    key: str
    anti: bool
    required: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(all(labels.get(k) == v for k, v in sel) for sel in self.selectors)

    def describe(self) -> str:
        sel = " or ".join(",".join(f"{k}={v}" for k, v in s) or "any" for s in self.selectors)
        return f"{sel} per {self.key}"


def topology_key(key: str, *, zone_rule: bool) -> str:
    """`host` for host keys (in a zone rule: `zone`), `zone` for zone keys, else the label."""
    if key in HOST_KEYS:
        return "zone" if zone_rule else HOST
    if key in ZONE_KEYS:
        return "zone"
    return key


def terms_of(affinity: Affinity | None) -> tuple[Term, ...]:
    """Every term of a spec `affinity`, normalised."""
    if affinity is None:
        return ()
    out: list[Term] = []
    rules: list[tuple[AffinityRule | None, bool, bool]] = [
        (affinity.vm_affinity, False, False),
        (affinity.vm_anti_affinity, True, False),
        (affinity.zone_affinity, False, True),
        (affinity.zone_anti_affinity, True, True),
    ]
    for rule, anti, zone_rule in rules:
        if rule is None:
            continue
        for required, terms in ((True, rule.required), (False, rule.preferred)):
            for term in terms:
                selectors = tuple(
                    tuple(sorted(s.match_labels.items())) for s in term.label_selector
                )
                key = topology_key(term.topology_key, zone_rule=zone_rule)
                out.append(Term(selectors, key, anti, required))
    return tuple(out)


def _runs(host: HostFacts, arch: str) -> bool:
    """Whether the host runs `arch` guests (`*`: any, as libvirt's test driver does)."""
    return arch in host.arches or "*" in host.arches


def domain(host: HostFacts, key: str) -> str | None:
    """The host's value for a topology key (None: the host is in no domain of that key)."""
    return host.name if key == HOST else host.labels.get(key)
