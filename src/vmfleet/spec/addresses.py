"""A network's address pool, walked lazily: the lowest free address, one at a time.

A CIDR is never listed out (a /8 has sixteen million addresses, a /0 four billion): the pool
is integer arithmetic over the network's bounds, the gateway, the `reserved:` ranges (kept
as sorted intervals) and a set of addresses already handed out. Handing out N addresses
costs O(N + taken + reserved ranges), whatever the size of the network.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

from vmfleet.spec.models import NetworkSpec

Interval = tuple[int, int]  # first and last address, both included, as integers


def reserved_intervals(entries: Iterable[str]) -> list[Interval]:
    """The `reserved:` entries (addresses, CIDRs, `a-b` ranges) as sorted, merged intervals.

    Entries are assumed valid (the model checks each, and that a range is not reversed).
    """
    intervals: list[Interval] = []
    for entry in entries:
        if "-" in entry:
            start, end = (int(ipaddress.IPv4Address(x.strip())) for x in entry.split("-", 1))
        elif "/" in entry:
            net = ipaddress.IPv4Network(entry, strict=False)
            start, end = int(net.network_address), int(net.broadcast_address)
        else:
            start = end = int(ipaddress.IPv4Address(entry))
        intervals.append((start, end))
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gateway_of(network: NetworkSpec) -> ipaddress.IPv4Address | None:
    """The network's gateway: as given, else the first host for nat/isolated networks."""
    if network.gateway:
        return ipaddress.IPv4Address(network.gateway)
    if network.cidr and network.mode in ("nat", "isolated"):
        return ipaddress.IPv4Network(network.cidr).network_address + 1
    return None


def allocates(network: NetworkSpec) -> bool:
    """Whether vmfleet hands out static addresses on this network.

    Not on user-mode networks (QEMU's own), networks without a cidr, or bridged and
    existing networks whose addresses come from someone else's DHCP.
    """
    if network.mode == "user" or network.cidr is None:
        return False
    return not (network.mode in ("bridge", "existing") and network.dhcp)


class AddressPool:
    """The free addresses of one network, handed out lowest first.

    `take` marks an address that is spoken for (written in the file, leased to a VM). The
    cursor only moves up: every address below it is handed out, reserved or taken already.
    """

    def __init__(self, network: NetworkSpec) -> None:
        assert network.cidr is not None
        net = ipaddress.IPv4Network(network.cidr)
        self._cursor = int(net.network_address) + 1
        self._last = int(net.broadcast_address) - 1
        self._taken: set[int] = set()
        gateway = gateway_of(network)
        if gateway is not None:
            self._taken.add(int(gateway))
        self._reserved = reserved_intervals(network.reserved)
        self._starts = [start for start, _end in self._reserved]

    def take(self, address: str) -> None:
        """Mark `address` as used (outside the network or already taken: no effect)."""
        self._taken.add(int(ipaddress.IPv4Address(address)))

    def next_free(self) -> str | None:
        """The lowest address not taken, reserved, network, gateway or broadcast; None if none.

        The address returned is taken.
        """
        cursor = self._cursor
        while cursor <= self._last:
            at = bisect_right(self._starts, cursor) - 1
            if at >= 0 and self._reserved[at][1] >= cursor:
                cursor = self._reserved[at][1] + 1
            elif cursor in self._taken:
                cursor += 1
            else:
                self._taken.add(cursor)
                self._cursor = cursor + 1
                return str(ipaddress.IPv4Address(cursor))
        self._cursor = cursor
        return None
