"""Moves: which running VMs go where when a host is drained or the fleet rebalanced. Pure.

Input: the hosts as placement sees them (`HostFacts`, whose `used` counts every VM on
them), every VM where it runs now (`Current`) and, for a drain, the host to empty. Output:
a `MovePlan`: the moves in the order they were decided, the VMs that cannot move with the
reasons host by host, and the load of every host before and after.

Both use placement's own state and checks (`core.placement`: `State`, `check`, `rank`): a
move never breaks a required rule (anti-affinity both ways, affinity, pin, architecture,
capacity, `max_per_host`, an unreachable or unschedulable target), because each VM is taken
out of the state (`State.remove`), its target chosen exactly as `place` would choose a host
for it, and put back there.

- `drain`: every VM on the host leaves it, biggest first; the host is unschedulable while
  deciding. A VM pinned to it (`host:` in the spec) stays, as does one that fits nowhere.
- `rebalance`: first VMs whose node preference or preferred affinity scores better on
  another host move where placement would put them now (placement ranks those above load).
  Then, while the most loaded host has a VM whose move lowers the higher of the two hosts'
  loads, the biggest such VM moves to the least loaded host that takes it and suits its
  preferences no worse (fewest moves first: each move takes the most it can off the top).
  Pinned VMs never move; at most `max_moves` moves in all.

Load is placement's: the highest of vCPU, memory and (when limited) disk use over capacity.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, replace

from vmfleet.core.placement import (
    HostFacts,
    Rules,
    State,
    Strategy,
    VmRequest,
    check,
    rank,
    rules_for,
    summary,
    terms_of,
)


@dataclass(frozen=True, slots=True)
class Current:
    """A VM where it runs now."""

    request: VmRequest
    host: str


@dataclass(frozen=True, slots=True)
class Move:
    vm: str
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class MovePlan:
    """Moves in decision order; VMs that stay, with why; load per host before and after."""

    moves: tuple[Move, ...]
    stuck: Mapping[str, tuple[str, ...]]
    before: Mapping[str, float]
    after: Mapping[str, float]


class _Board:
    """Placement's state over every current VM, with VMs taken out and put back."""

    def __init__(self, hosts: Sequence[HostFacts], vms: Sequence[Current]) -> None:
        self.terms = {v.request.name: terms_of(v.request.affinity) for v in vms}
        keys = {t.key for ts in self.terms.values() for t in ts}
        # `used` already counts every VM: the state starts from it and adds no sizes.
        self.state = State(hosts, keys)
        self.where: dict[str, str] = {}
        self.vms = {v.request.name: v.request for v in vms}
        self.indexed = False
        for v in vms:
            self._add(v.request, v.host, size=False)
        # Lazy heaps of usable hosts by load (lightest first, heaviest first), for rebalance:
        # an entry is current while its version is the host's.
        self.version: Counter[str] = Counter()
        self.low: list[tuple[float, int, int, str]] = []
        self.high: list[tuple[float, int, int, str]] = []

    def index(self) -> None:
        """Start keeping the load heaps (usable hosts only)."""
        self.indexed = True
        for h in self.state.hosts.values():
            if h.reachable and h.schedulable and not h.problem:
                self._push(h.name)
        heapq.heapify(self.low)
        heapq.heapify(self.high)

    def _push(self, host: str) -> None:
        load, order, v = self.state.utilisation(host), self.state.order[host], self.version[host]
        heapq.heappush(self.low, (load, order, v, host))
        heapq.heappush(self.high, (-load, order, v, host))

    def _touch(self, host: str) -> None:
        if self.indexed and host in self.state.hosts:
            facts = self.state.hosts[host]
            if facts.reachable and facts.schedulable and not facts.problem:
                self.version[host] += 1
                self._push(host)

    def ranked(self, heap: list[tuple[float, int, int, str]]) -> Generator[str, None, None]:
        """Hosts in heap order, each current one once; those taken go back when done."""
        taken: list[tuple[float, int, int, str]] = []
        try:
            while heap:
                entry = heapq.heappop(heap)
                if entry[2] != self.version[entry[3]]:
                    continue  # stale: the host changed since
                taken.append(entry)
                yield entry[3]
        finally:
            for entry in taken:
                heapq.heappush(heap, entry)

    def _add(self, req: VmRequest, host: str, *, size: bool) -> None:
        self.state.add(
            name=req.name,
            host=host,
            template=req.template,
            labels=req.labels,
            terms=self.terms[req.name],
            size=(req.vcpus, req.memory, req.disk) if size else None,
            max_per_host=req.max_per_host,
        )
        self.where[req.name] = host
        self._touch(host)

    def take(self, name: str) -> Rules:
        """Take the VM out of the state; its rules against everything else."""
        req = self.vms[name]
        host = self.where.pop(name)
        self.state.remove(req, host, self.terms[name])
        self._touch(host)
        return rules_for(self.state, req, self.terms[name])

    def put(self, name: str, host: str) -> None:
        self._add(self.vms[name], host, size=True)

    def best(self, rules: Rules, strategy: Strategy, *, avoid: str) -> str | None:
        """Where placement would put the VM (never `avoid`), scoring every host."""
        best: tuple[tuple[float, ...], str] | None = None
        for name in self.state.hosts:
            if name == avoid or check(self.state, rules, name, every=False):
                continue
            score = rank(self.state, rules, name, strategy)
            if best is None or score < best[0]:
                best = (score, name)
        return None if best is None else best[1]

    def lightest(self, rules: Rules, *, source: str) -> str | None:
        """The least loaded host that can take the VM and suits its preferences no worse
        than `source` does (never `source` itself); ties go to the host listed first."""
        state = self.state
        here = rank(state, rules, source, "spread")[:2]
        hosts = self.ranked(self.low)
        try:
            for name in hosts:
                if name == source or check(state, rules, name, every=False):
                    continue
                if rank(state, rules, name, "spread")[:2] <= here:
                    return name
        finally:
            hosts.close()
        return None

    def loads(self) -> dict[str, float]:
        return {h: self.state.utilisation(h) for h in self.state.hosts}


def _biggest_first(req: VmRequest) -> tuple[int, int, int, str]:
    return (-req.memory, -req.vcpus, -req.disk, req.name)


def drain(
    hosts: Sequence[HostFacts],
    vms: Sequence[Current],
    host: str,
    *,
    strategy: Strategy = "spread",
) -> MovePlan:
    """Move every VM off `host` (see the module docstring)."""
    cordoned = [replace(h, schedulable=False) if h.name == host else h for h in hosts]
    board = _Board(cordoned, vms)
    before = board.loads()
    leaving = sorted((v.request for v in vms if v.host == host), key=_biggest_first)
    moves: list[Move] = []
    stuck: dict[str, tuple[str, ...]] = {}
    for req in leaving:
        if req.pin == host:
            stuck[req.name] = (f"pinned to {host} (host: in the spec)",)
            continue
        rules = board.take(req.name)
        target = board.best(rules, strategy, avoid=host)
        if target is None:
            stuck[req.name] = summary(board.state, rules)
            board.put(req.name, host)
            continue
        board.put(req.name, target)
        moves.append(Move(req.name, host, target))
    return MovePlan(tuple(moves), stuck, before, board.loads())


def rebalance(
    hosts: Sequence[HostFacts],
    vms: Sequence[Current],
    *,
    max_moves: int = 10,
    strategy: Strategy = "spread",
) -> MovePlan:
    """Lower the highest host load, then repair preferred affinity (module docstring)."""
    board = _Board(hosts, vms)
    before = board.loads()
    moves: list[Move] = []
    on_host: dict[str, list[str]] = {}
    for v in vms:
        on_host.setdefault(v.host, []).append(v.request.name)
    for name in sorted(board.vms):
        if len(moves) >= max_moves:
            break
        move = _prefer(board, name, strategy)
        if move is not None:
            moves.append(move)
            on_host[move.source].remove(move.vm)
            on_host.setdefault(move.target, []).append(move.vm)
    board.index()
    while len(moves) < max_moves:
        top = _heaviest(board, on_host)
        if top is None:
            break
        move = _relieve(board, top, on_host[top])
        if move is None:
            break
        on_host[top].remove(move.vm)
        on_host.setdefault(move.target, []).append(move.vm)
        moves.append(move)
    return MovePlan(tuple(moves), {}, before, board.loads())


def _heaviest(board: _Board, on_host: Mapping[str, list[str]]) -> str | None:
    """The most loaded usable host holding VMs of the fleet (ties: listed first)."""
    hosts = board.ranked(board.high)
    try:
        return next((h for h in hosts if on_host.get(h)), None)
    finally:
        hosts.close()


def _relieve(board: _Board, top: str, names: Sequence[str]) -> Move | None:
    """The biggest VM on `top` whose move lowers max(load of top, load of its target)."""
    peak = board.state.utilisation(top)
    for name in sorted(names, key=lambda n: _biggest_first(board.vms[n])):
        if board.vms[name].pin is not None:
            continue
        rules = board.take(name)
        target = board.lightest(rules, source=top)
        if target is not None:
            board.put(name, target)
            if max(board.state.utilisation(top), board.state.utilisation(target)) < peak:
                return Move(name, top, target)
            board.take(name)
        board.put(name, top)
    return None


def _prefer(board: _Board, name: str, strategy: Strategy) -> Move | None:
    """Move a VM to where placement would put it now, when its node preference or preferred
    affinity scores better there than where it runs."""
    req = board.vms[name]
    if req.pin is not None:
        return None
    if not req.preference and all(t.required for t in board.terms[name]):
        return None
    source = board.where[name]
    rules = board.take(name)
    target = board.best(rules, strategy, avoid=source)
    if target is not None:
        here = rank(board.state, rules, source, strategy)
        there = rank(board.state, rules, target, strategy)
        if there[:2] < here[:2]:
            board.put(name, target)
            return Move(name, source, target)
    board.put(name, source)
    return None


def where_to(
    hosts: Sequence[HostFacts],
    vms: Sequence[Current],
    vm: str,
    *,
    target: str | None = None,
    strategy: Strategy = "spread",
) -> tuple[str | None, tuple[str, ...]]:
    """Where one VM may move: `target` if every required rule holds there, else the host
    placement picks (never its current one); with the reasons when there is none."""
    board = _Board(hosts, vms)
    source = board.where[vm]
    rules = board.take(vm)
    if target is not None:
        if target == source:
            return None, (f"{vm} already runs on {target}",)
        if target not in board.state.hosts:
            return None, (f"no host {target} in the fleet",)
        reasons = check(board.state, rules, target, every=True)
        return (None, tuple(reasons)) if reasons else (target, ())
    chosen = board.best(rules, strategy, avoid=source)
    if chosen is None:
        return None, summary(board.state, rules)
    return chosen, ()
