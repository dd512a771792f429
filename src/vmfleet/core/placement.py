"""Placement: which host each new VM goes to, and why. Pure: data in, decisions out.

Input: the hosts as facts (`HostFacts`: reachability, labels, architectures, KVM, capacity
after overcommit, what is already allocated), the VMs already on hosts (`Placed`, never
moved), the new VMs (`VmRequest`) and a strategy (`spread` or `pack`). Output: a host for
every VM that fits, and for every VM that does not, the reasons host by host.

A host is rejected for a VM when (in this order, every reason kept when explaining):
unreachable; the VM is pinned elsewhere (`host:`); not schedulable (a pin overrides it);
it cannot run the VM's architecture; not enough vCPUs, memory or disk left; the template's
`max_per_host` is reached; a required anti-affinity term of the VM matches a VM in the same
topology domain (host, zone, or any host label), or a placed VM's required anti-affinity
matches this VM there (anti-affinity holds both ways); a required affinity term has no
matching VM in that domain.

Among the hosts left, the best is the lowest of (position in `node_preference`, minus the
preferred-affinity score, 0 for KVM else 1, the strategy's load key, the host's order), so
node preference beats soft affinity, which beats KVM, which beats spreading or packing;
ties go to the host listed first. Every VM is placed in input order (pinned ones first);
one whose required affinity waits for VMs not placed yet is deferred until they are, and a
VM whose selector matches itself may start its own domain when nothing matching is placed.

Speed: hosts sit in one heap per architecture, keyed by what does not depend on the VM
(KVM, load, order); hosts a VM's soft rules favour are scored beside the heap's first host
that fits, which gives exactly the answer of scoring every host (`explain` does that).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vmfleet.spec.models import Affinity, AffinityRule
from vmfleet.spec.units import format_size

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


# --- the state while placing ----------------------------------------------------------------


class _State:
    """Hosts, their allocation, and indexes of placed VMs by label and domain."""

    def __init__(self, hosts: Sequence[HostFacts], keys: Iterable[str]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.order = {h.name: n for n, h in enumerate(hosts)}
        self.used = {h.name: [h.used.cpus, h.used.memory, h.used.disk] for h in hosts}
        self.keys = set(keys) | {HOST}
        self.per_template: Counter[tuple[str, str]] = Counter()
        # the lowest max_per_host among the template's VMs placed on a host
        self.template_cap: dict[tuple[str, str], int] = {}
        # (label, value) -> key -> domain -> number of placed VMs with that label pair
        self.pair_counts: dict[tuple[str, str], dict[str, Counter[str]]] = {}
        self.pair_vms: dict[tuple[str, str], list[tuple[Mapping[str, str], str]]] = {}
        # anti-affinity held by placed VMs, filed under their selectors' first pair
        self.holders: dict[tuple[str, str] | None, list[tuple[Term, str, str]]] = {}
        self.domain_hosts: dict[str, dict[str, list[str]]] = defaultdict(dict)
        for key in self.keys:
            for h in hosts:
                d = domain(h, key)
                if d is not None:
                    self.domain_hosts[key].setdefault(d, []).append(h.name)

    def utilisation(self, name: str) -> float:
        cap = self.hosts[name].capacity
        used = self.used[name]
        parts = [
            used[0] / cap.cpus if cap.cpus else 1.0,
            used[1] / cap.memory if cap.memory else 1.0,
        ]
        if cap.disk:
            parts.append(used[2] / cap.disk)
        return max(parts)

    def add(
        self,
        *,
        name: str,
        host: str,
        template: str,
        labels: Mapping[str, str],
        terms: Sequence[Term],
        size: tuple[float, int, int] | None,
        max_per_host: int | None = None,
    ) -> None:
        facts = self.hosts.get(host)
        if size is not None and host in self.used:
            used = self.used[host]
            used[0] += size[0]
            used[1] += size[1]
            used[2] += size[2]
        self.per_template[(template, host)] += 1
        if max_per_host is not None:
            cap = self.template_cap.get((template, host))
            self.template_cap[(template, host)] = min(max_per_host, cap or max_per_host)
        if facts is None:
            return  # a VM on a host the spec no longer names: it counts nowhere
        for pair in labels.items():
            by_key = self.pair_counts.setdefault(pair, {})
            for key in self.keys:
                d = domain(facts, key)
                if d is not None:
                    by_key.setdefault(key, Counter())[d] += 1
            self.pair_vms.setdefault(pair, []).append((labels, host))
        for term in terms:
            if term.anti and term.required:
                d = domain(facts, term.key)
                if d is None:
                    continue
                for sel in term.selectors:
                    first = sel[0] if sel else None
                    self.holders.setdefault(first, []).append((term, d, name))

    def match_domains(self, term: Term) -> Counter[str]:
        """Domains (of the term's key) holding placed VMs the term matches, with counts."""
        out: Counter[str] = Counter()
        for sel in term.selectors:
            if len(sel) == 1:
                out.update(self.pair_counts.get(sel[0], {}).get(term.key, Counter()))
                continue
            if not sel:
                for h, used_by in self._all_hosts():
                    d = domain(self.hosts[h], term.key)
                    if d is not None:
                        out[d] += used_by
                continue
            for labels, host in self.pair_vms.get(sel[0], []):
                if all(labels.get(k) == v for k, v in sel):
                    d = domain(self.hosts[host], term.key)
                    if d is not None:
                        out[d] += 1
        return out

    def _all_hosts(self) -> list[tuple[str, int]]:
        counts: Counter[str] = Counter()
        for (_t, host), n in self.per_template.items():
            counts[host] += n
        return sorted(counts.items())

    def reverse_anti(self, labels: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """(key, domain, holder VM) where a placed VM's required anti-affinity matches."""
        found: list[tuple[str, str, str]] = []
        seen: set[tuple[int, str, str]] = set()
        firsts: list[tuple[str, str] | None] = [*labels.items(), None]
        for first in firsts:
            for term, d, holder in self.holders.get(first, []):
                marker = (id(term), d, holder)
                if marker not in seen and term.matches(labels):
                    seen.add(marker)
                    found.append((term.key, d, holder))
        return found


# --- one VM ---------------------------------------------------------------------------------


@dataclass
class _Rules:
    """What one VM asks, computed once against the current state."""

    request: VmRequest
    forbidden: dict[str, dict[str, Term | str]]  # key -> domain -> the term, or the holder
    required: list[tuple[Term, Counter[str]]]
    preferred: list[tuple[Term, Counter[str]]]


def _rules(state: _State, request: VmRequest, terms: Sequence[Term]) -> _Rules:
    forbidden: dict[str, dict[str, Term | str]] = defaultdict(dict)
    required: list[tuple[Term, Counter[str]]] = []
    preferred: list[tuple[Term, Counter[str]]] = []
    for term in terms:
        counts = state.match_domains(term)
        if term.required and term.anti:
            for d in counts:
                forbidden[term.key].setdefault(d, term)
        elif term.required:
            required.append((term, counts))
        else:
            preferred.append((term, counts))
    for key, d, holder in state.reverse_anti(request.labels):
        forbidden[key].setdefault(d, holder)
    return _Rules(request, forbidden, required, preferred)


def _check(state: _State, rules: _Rules, name: str, *, every: bool) -> list[str]:
    """Why `name` cannot take the VM (empty: it can); the first reason, or all with `every`."""
    req = rules.request
    host = state.hosts[name]
    reasons: list[str] = []

    def fail(reason: str) -> bool:
        reasons.append(reason)
        return not every

    if not host.reachable:
        return [f"unreachable: {host.unreachable_reason}".rstrip(": ")]  # nothing else known
    if host.problem:
        return [host.problem]
    if req.pin is not None and req.pin != name and fail(f"the VM is pinned to {req.pin}"):
        return reasons
    if req.pin is None and not host.schedulable and fail("not schedulable"):
        return reasons
    if not _runs(host, req.arch) and fail(
        f"cannot run {req.arch} guests (runs {', '.join(sorted(host.arches)) or 'none'})"
    ):
        return reasons
    cap, used = host.capacity, state.used[name]
    if used[0] + req.vcpus > cap.cpus and fail(
        f"not enough vCPUs: needs {req.vcpus}, {max(cap.cpus - used[0], 0):g} of {cap.cpus:g} left"
    ):
        return reasons
    if used[1] + req.memory > cap.memory and fail(
        f"not enough memory: needs {format_size(req.memory)}, "
        f"{format_size(max(cap.memory - int(used[1]), 0))} of {format_size(cap.memory)} left"
    ):
        return reasons
    if (
        cap.disk
        and used[2] + req.disk > cap.disk
        and fail(
            f"not enough disk: needs {format_size(req.disk)}, "
            f"{format_size(max(cap.disk - int(used[2]), 0))} of {format_size(cap.disk)} left"
        )
    ):
        return reasons
    count = state.per_template[(req.template, name)]
    limits = [m for m in (req.max_per_host, state.template_cap.get((req.template, name))) if m]
    if (
        limits
        and count >= min(limits)
        and fail(f"holds {count} of {req.template} (max_per_host {min(limits)})")
    ):
        return reasons
    for key, domains in rules.forbidden.items():
        d = domain(host, key)
        if d is not None and d in domains and fail(_forbidden_reason(domains[d], key, d)):
            return reasons
    for term, counts in rules.required:
        d = domain(host, term.key)
        if counts and (d is None or d not in counts):
            where = f"{term.key} {d}" if d is not None else f"no {term.key} label"
            if fail(f"affinity: no VM matching {term.describe()} in {where}"):
                return reasons
    return reasons


def _forbidden_reason(why: Term | str, key: str, d: str) -> str:
    if isinstance(why, Term):
        return f"anti-affinity: a VM matching {why.describe()} is in {key} {d}"
    return f"{why}'s anti-affinity excludes this VM from {key} {d}"


def _score(
    state: _State, rules: _Rules, name: str, strategy: Strategy
) -> tuple[float, float, float, float, float]:
    req = rules.request
    host = state.hosts[name]
    pref = req.preference.index(name) if name in req.preference else len(req.preference)
    soft = 0
    for term, counts in rules.preferred:
        d = domain(host, term.key)
        if d is not None and d in counts:
            soft += -1 if term.anti else 1
    kvm = 0 if req.arch in host.kvm_arches else 1
    return (pref, -soft, kvm, *_load_key(state, name, strategy))


def _load_key(state: _State, name: str, strategy: Strategy) -> tuple[float, float]:
    load = state.utilisation(name)
    return (load if strategy == "spread" else -load, state.order[name])


# --- the whole placement --------------------------------------------------------------------


class _Heaps:
    """One lazy heap per architecture over usable hosts, keyed (kvm, load, order)."""

    def __init__(self, state: _State, strategy: Strategy) -> None:
        self.state = state
        self.strategy = strategy
        self.version: Counter[str] = Counter()
        self.heaps: dict[str, list[tuple[int, float, float, int, str]]] = {}

    def _entry(self, arch: str, name: str) -> tuple[int, float, float, int, str]:
        kvm = 0 if arch in self.state.hosts[name].kvm_arches else 1
        load, order = _load_key(self.state, name, self.strategy)
        return (kvm, load, order, self.version[name], name)

    def heap(self, arch: str) -> list[tuple[int, float, float, int, str]]:
        if arch not in self.heaps:
            entries = [
                self._entry(arch, h.name)
                for h in self.state.hosts.values()
                if h.reachable and h.schedulable and not h.problem and _runs(h, arch)
            ]
            heapq.heapify(entries)
            self.heaps[arch] = entries
        return self.heaps[arch]

    def changed(self, name: str) -> None:
        self.version[name] += 1
        for arch, heap in self.heaps.items():
            heapq.heappush(heap, self._entry(arch, name))

    def candidates(self, rules: _Rules) -> Generator[str, None, None]:
        """Hosts in heap order, each once; the caller stops when it has what it needs."""
        heap = self.heap(rules.request.arch)
        popped: list[tuple[int, float, float, int, str]] = []
        try:
            while heap:
                entry = heapq.heappop(heap)
                if entry[3] != self.version[entry[4]]:
                    continue  # stale: the host changed since
                popped.append(entry)
                yield entry[4]
        finally:
            for entry in popped:
                heapq.heappush(heap, entry)


def place(
    hosts: Sequence[HostFacts],
    requests: Sequence[VmRequest],
    *,
    placed: Sequence[Placed] = (),
    strategy: Strategy = "spread",
    explain: Iterable[str] = (),
) -> PlacementResult:
    """Place `requests` on `hosts` around the `placed` VMs; see the module docstring."""
    explain_set = set(explain)
    terms = {r.name: terms_of(r.affinity) for r in requests}
    placed_terms = {p.name: terms_of(p.affinity) for p in placed}
    keys = {t.key for ts in [*terms.values(), *placed_terms.values()] for t in ts}
    state = _State(hosts, keys)
    for p in placed:
        state.add(
            name=p.name,
            host=p.host,
            template=p.template,
            labels=p.labels,
            terms=placed_terms[p.name],
            size=None,
        )
    heaps = _Heaps(state, strategy)
    chosen: dict[str, str] = {}
    failures: dict[str, tuple[str, ...]] = {}
    explained: dict[str, tuple[HostVerdict, ...]] = {}
    queue = sorted(requests, key=lambda r: r.pin is None)  # stable: pinned ones first
    pending = {r.name for r in queue}
    by_name = {r.name: r for r in requests}
    seeding = False
    while queue:
        deferred: list[VmRequest] = []
        for request in queue:
            rules = _rules(state, request, terms[request.name])
            waiting = _waits_for(rules, request.name, pending, by_name)
            if waiting and not seeding:
                deferred.append(request)
                continue
            seeding = False
            if not _seedable(rules):
                pending.discard(request.name)
                failures[request.name] = tuple(
                    f"affinity: no VM matching {t.describe()} is placed"
                    for t, counts in rules.required
                    if not counts and not t.matches(request.labels)
                )
                continue
            host = _choose(state, heaps, rules, strategy)
            if request.name in explain_set:
                explained[request.name] = _explain(state, rules, strategy, host)
            pending.discard(request.name)
            if host is None:
                failures[request.name] = _summary(state, rules)
                continue
            chosen[request.name] = host
            state.add(
                name=request.name,
                host=host,
                template=request.template,
                labels=request.labels,
                terms=terms[request.name],
                size=(request.vcpus, request.memory, request.disk),
                max_per_host=request.max_per_host,
            )
            heaps.changed(host)
        if len(deferred) == len(queue):
            seeding = True  # a cycle of required affinities: let the first one start
        queue = deferred
    return PlacementResult(
        hosts={r.name: chosen[r.name] for r in requests if r.name in chosen},
        failures={r.name: failures[r.name] for r in requests if r.name in failures},
        explained=explained,
        unreachable={h.name: h.unreachable_reason for h in hosts if not h.reachable},
    )


def _waits_for(rules: _Rules, me: str, pending: set[str], by_name: Mapping[str, VmRequest]) -> bool:
    """A required affinity term with nothing placed yet, but other VMs to place that match."""
    for term, counts in rules.required:
        if not counts and any(n != me and term.matches(by_name[n].labels) for n in pending):
            return True
    return False


def _seedable(rules: _Rules) -> bool:
    """Every required affinity term has a match placed, or the VM matches it itself."""
    return all(counts or term.matches(rules.request.labels) for term, counts in rules.required)


def _choose(state: _State, heaps: _Heaps, rules: _Rules, strategy: Strategy) -> str | None:
    req = rules.request
    if req.pin is not None:
        if req.pin in state.hosts and not _check(state, rules, req.pin, every=False):
            return req.pin
        return None
    best: tuple[tuple[float, ...], str] | None = None
    favoured = _favoured(state, rules)
    for name in favoured:
        if not _check(state, rules, name, every=False):
            score = _score(state, rules, name, strategy)
            if best is None or score < best[0]:
                best = (score, name)
    # Hosts outside `favoured` score at best this much on preference and soft affinity.
    bound = -sum(1 for t, c in rules.preferred if not t.anti and t.key != HOST and c)
    baseline = (len(req.preference), bound)
    candidates = heaps.candidates(rules)
    try:
        for name in candidates:
            if name in favoured or _check(state, rules, name, every=False):
                continue
            score = _score(state, rules, name, strategy)
            if best is None or score < best[0]:
                best = (score, name)
            if score[:2] == baseline:
                break  # every host after this one (not favoured) scores the same or worse
    finally:
        candidates.close()  # puts the hosts it took back into the heap
    return None if best is None else best[1]


def _favoured(state: _State, rules: _Rules) -> list[str]:
    """Hosts the heap order could miss: preferred ones, and hosts holding VMs a preferred
    host affinity matches. (Zone-wide preferences are found by walking the heap.)"""
    out = dict.fromkeys(h for h in rules.request.preference if h in state.hosts)
    for term, counts in rules.preferred:
        if not term.anti and term.key == HOST:
            out.update(dict.fromkeys(h for h in counts if h in state.hosts))
    return list(out)


def _explain(
    state: _State, rules: _Rules, strategy: Strategy, chosen: str | None
) -> tuple[HostVerdict, ...]:
    out: list[HostVerdict] = []
    for name in state.hosts:
        reasons = _check(state, rules, name, every=True)
        if reasons:
            out.append(HostVerdict(name, False, tuple(reasons)))
            continue
        score = _score(state, rules, name, strategy)
        out.append(
            HostVerdict(name, True, _merits(state, rules, name, score), score, name == chosen)
        )
    return tuple(out)


def _merits(state: _State, rules: _Rules, name: str, score: tuple[float, ...]) -> tuple[str, ...]:
    req = rules.request
    merits: list[str] = []
    if req.pin == name:
        merits.append("the VM is pinned here")
    if name in req.preference:
        merits.append(f"node_preference #{req.preference.index(name) + 1}")
    if score[1] < 0:
        merits.append(f"preferred affinity +{-score[1]:g}")
    elif score[1] > 0:
        merits.append(f"preferred anti-affinity -{score[1]:g}")
    merits.append("kvm" if score[2] == 0 else "emulated (qemu)")
    merits.append(f"load {state.utilisation(name):.0%}")
    return tuple(merits)


def _summary(state: _State, rules: _Rules) -> tuple[str, ...]:
    """Why no host would take the VM: each reason with the hosts it applies to."""
    by_reason: dict[str, list[str]] = {}
    for name in state.hosts:
        reasons = _check(state, rules, name, every=False)
        if reasons:
            by_reason.setdefault(_kind(reasons[0]), []).append(name)
    if not by_reason:
        return ("no hosts",)
    out: list[str] = []
    for reason, names in by_reason.items():
        if len(names) == 1:
            out.append(f"{names[0]}: {_check(state, rules, names[0], every=False)[0]}")
            continue
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(f"{shown}: {reason}")
    return tuple(out)


def _kind(reason: str) -> str:
    """Reasons that differ only in numbers per host are grouped under their first words."""
    for head in ("not enough vCPUs", "not enough memory", "not enough disk", "holds "):
        if reason.startswith(head):
            return head.strip() if head != "holds " else "max_per_host reached"
    return reason
