"""The whole placement: every VM in order, through per-architecture heaps of hosts; and
the explanation of a VM that fits nowhere."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Generator, Iterable, Mapping, Sequence

from vmfleet.core.placement.facts import (
    HOST,
    HostFacts,
    HostVerdict,
    Placed,
    PlacementResult,
    Strategy,
    VmRequest,
    _runs,
    terms_of,
)
from vmfleet.core.placement.state import (
    Rules,
    State,
    _load_key,
    check,
    rank,
    rules_for,
)

# --- the whole placement --------------------------------------------------------------------


class _Heaps:
    """One lazy heap per architecture over usable hosts, keyed (kvm, load, order)."""

    def __init__(self, state: State, strategy: Strategy) -> None:
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

    def candidates(self, rules: Rules) -> Generator[str, None, None]:
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
    state = State(hosts, keys)
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
            rules = rules_for(state, request, terms[request.name])
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
                failures[request.name] = summary(state, rules)
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


def _waits_for(rules: Rules, me: str, pending: set[str], by_name: Mapping[str, VmRequest]) -> bool:
    """A required affinity term with nothing placed yet, but other VMs to place that match."""
    for term, counts in rules.required:
        if not counts and any(n != me and term.matches(by_name[n].labels) for n in pending):
            return True
    return False


def _seedable(rules: Rules) -> bool:
    """Every required affinity term has a match placed, or the VM matches it itself."""
    return all(counts or term.matches(rules.request.labels) for term, counts in rules.required)


def _choose(state: State, heaps: _Heaps, rules: Rules, strategy: Strategy) -> str | None:
    req = rules.request
    if req.pin is not None:
        if req.pin in state.hosts and not check(state, rules, req.pin, every=False):
            return req.pin
        return None
    best: tuple[tuple[float, ...], str] | None = None
    favoured = _favoured(state, rules)
    for name in favoured:
        if not check(state, rules, name, every=False):
            score = rank(state, rules, name, strategy)
            if best is None or score < best[0]:
                best = (score, name)
    # Hosts outside `favoured` score at best this much on preference and soft affinity.
    bound = -sum(1 for t, c in rules.preferred if not t.anti and t.key != HOST and c)
    baseline = (len(req.preference), bound)
    candidates = heaps.candidates(rules)
    try:
        for name in candidates:
            if name in favoured or check(state, rules, name, every=False):
                continue
            score = rank(state, rules, name, strategy)
            if best is None or score < best[0]:
                best = (score, name)
            if score[:2] == baseline:
                break  # every host after this one (not favoured) scores the same or worse
    finally:
        candidates.close()  # puts the hosts it took back into the heap
    return None if best is None else best[1]


def _favoured(state: State, rules: Rules) -> list[str]:
    """Hosts the heap order could miss: preferred ones, and hosts holding VMs a preferred
    host affinity matches. (Zone-wide preferences are found by walking the heap.)"""
    out = dict.fromkeys(h for h in rules.request.preference if h in state.hosts)
    for term, counts in rules.preferred:
        if not term.anti and term.key == HOST:
            out.update(dict.fromkeys(h for h in counts if h in state.hosts))
    return list(out)


def _explain(
    state: State, rules: Rules, strategy: Strategy, chosen: str | None
) -> tuple[HostVerdict, ...]:
    out: list[HostVerdict] = []
    for name in state.hosts:
        reasons = check(state, rules, name, every=True)
        if reasons:
            out.append(HostVerdict(name, False, tuple(reasons)))
            continue
        score = rank(state, rules, name, strategy)
        out.append(
            HostVerdict(name, True, _merits(state, rules, name, score), score, name == chosen)
        )
    return tuple(out)


def _merits(state: State, rules: Rules, name: str, score: tuple[float, ...]) -> tuple[str, ...]:
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


def summary(state: State, rules: Rules) -> tuple[str, ...]:
    """Why no host would take the VM: each reason with the hosts it applies to."""
    by_reason: dict[str, list[str]] = {}
    for name in state.hosts:
        reasons = check(state, rules, name, every=False)
        if reasons:
            by_reason.setdefault(_kind(reasons[0]), []).append(name)
    if not by_reason:
        return ("no hosts",)
    out: list[str] = []
    for reason, names in by_reason.items():
        if len(names) == 1:
            out.append(f"{names[0]}: {check(state, rules, names[0], every=False)[0]}")
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
