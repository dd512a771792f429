"""Placement's state while placing, and the rules and checks of one VM against it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vmfleet.core.placement.facts import (
    HOST,
    HostFacts,
    Strategy,
    Term,
    VmRequest,
    _runs,
    domain,
)
from vmfleet.spec.units import format_size

# --- the state while placing ----------------------------------------------------------------


class State:
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
        """Count a VM on `host`; `size` None when the host's `used` already includes it."""
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

    def remove(self, request: VmRequest, host: str, terms: Sequence[Term]) -> None:
        """Undo `add` of one VM on `host`, its size included (a VM moving away)."""
        used = self.used.get(host)
        if used is not None:
            used[0] -= request.vcpus
            used[1] -= request.memory
            used[2] -= request.disk
        self.per_template[(request.template, host)] -= 1
        facts = self.hosts.get(host)
        if facts is None:
            return
        for pair in request.labels.items():
            for key, counts in self.pair_counts.get(pair, {}).items():
                d = domain(facts, key)
                if d is not None and d in counts:
                    counts[d] -= 1
                    if counts[d] <= 0:
                        del counts[d]  # placement asks `d in counts`
            entries = self.pair_vms.get(pair, [])
            for n, (placed, where) in enumerate(entries):
                if where == host and placed == request.labels:
                    del entries[n]
                    break
        for term in terms:
            if term.anti and term.required:
                for sel in term.selectors:
                    first = sel[0] if sel else None
                    held = self.holders.get(first, [])
                    self.holders[first] = [h for h in held if h[2] != request.name]

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
class Rules:
    """What one VM asks, computed once against the current state."""

    request: VmRequest
    forbidden: dict[str, dict[str, Term | str]]  # key -> domain -> the term, or the holder
    required: list[tuple[Term, Counter[str]]]
    preferred: list[tuple[Term, Counter[str]]]


def rules_for(state: State, request: VmRequest, terms: Sequence[Term]) -> Rules:
    """What the VM's terms (and placed VMs' anti-affinity) ask of a host, against `state`."""
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
    return Rules(request, forbidden, required, preferred)


def check(state: State, rules: Rules, name: str, *, every: bool) -> list[str]:
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


def rank(
    state: State, rules: Rules, name: str, strategy: Strategy
) -> tuple[float, float, float, float, float]:
    """Host `name`'s rank for the VM, lowest best: (node preference, minus the preferred
    affinity score, 0 for KVM else 1, the strategy's load key, the host's order)."""
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


def _load_key(state: State, name: str, strategy: Strategy) -> tuple[float, float]:
    load = state.utilisation(name)
    return (load if strategy == "spread" else -load, state.order[name])
