"""Bulk statistics of a host's domains in one call (`virDomainListGetStats`).

A scrape of a hundred VMs must not cost a hundred round trips per metric: one call returns
state, CPU time, balloon, vCPU, block and interface counters for all domains at once. Who
owns each domain comes from its metadata, read once per domain UUID and cached (a redefined
domain keeps its UUID and its owner; only its spec hash changes, which stats do not need).
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import libvirt

from vmfleet.drivers.libvirt.capabilities import _Capabilities
from vmfleet.drivers.libvirt.types import STATES, DomainState, KiB
from vmfleet.drivers.metadata import NAMESPACE, OwnerMetadata

_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
_NOWAIT = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
_RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_BLOCKED)


@dataclass(frozen=True, slots=True)
class DomainStats:
    """One domain's counters as libvirt reports them. Bytes and seconds; a counter the driver
    does not report is None (the test driver reports only the state; libvirt does not see
    user-mode NICs that vmfleet adds through `<qemu:commandline>`, so they have no net bytes).
    """

    name: str
    uuid: str
    state: DomainState
    owner: OwnerMetadata | None
    vcpus: int | None
    cpu_seconds: float | None
    memory_bytes: int | None
    max_memory_bytes: int | None
    rss_bytes: int | None
    disk_read_bytes: int | None
    disk_write_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None
    uptime_seconds: float | None


class _Stats(_Capabilities):
    """`all_domain_stats`: the counters of every domain in one libvirt call."""

    _owner_cache: dict[str, OwnerMetadata | None]
    _owner_lock = threading.Lock()

    def all_domain_stats(self, *, fleet: str | None = None) -> list[DomainStats]:
        """Every domain's counters, sorted by name; with `fleet`, only that fleet's own.

        One bulk statistics call per host, for the chosen domains only (libvirt asks each
        running QEMU of the list over its monitor: other fleets' guests cost nothing), with
        libvirt's NOWAIT: a domain whose monitor is busy with a job (booting under load, a
        snapshot, a migration) is reported without the counters that need it this time
        instead of holding the whole call. A domain seen for the first time costs one
        metadata read. A domain removed while being read is left out.
        """
        conn = self._connection()
        with self._call("list domains"):
            domains = conn.listAllDomains(0)
        owners: dict[str, OwnerMetadata | None] = {}
        chosen = []
        for dom in domains:
            owner = self._owner_of(dom)
            if fleet is None or (owner is not None and owner.fleet == fleet):
                owners[str(dom.UUIDString())] = owner
                chosen.append(dom)
        if not chosen:
            return []
        with self._call("read domain statistics"):
            records = conn.domainListGetStats(chosen, _STATS, _NOWAIT)
        found = []
        for dom, stats in records:
            owner = owners.get(str(dom.UUIDString()))
            name = str(dom.name())
            running = int(stats.get("state.state", 0)) in _RUNNING
            uptime = self._local_qemu_uptime(name) if running else None
            found.append(_to_stats(name, str(dom.UUIDString()), owner, stats, uptime))
        return sorted(found, key=lambda s: s.name)

    def _owner_of(self, dom: Any) -> OwnerMetadata | None:
        uuid = str(dom.UUIDString())
        with self._owner_lock:
            cache: dict[str, OwnerMetadata | None] = self.__dict__.setdefault("_owner_cache", {})
            if uuid in cache:
                return cache[uuid]
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, 0)
            owner = _owner_from_metadata(str(xml))
        except libvirt.libvirtError as err:
            if err.get_error_code() not in (
                libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                libvirt.VIR_ERR_NO_DOMAIN,
            ):
                raise self._error(err, doing="read domain metadata", vm=_name(dom)) from err
            owner = None  # no element of ours: not vmfleet's (a removed domain: gone anyway)
        with self._owner_lock:
            cache[uuid] = owner
        return owner


def _to_stats(
    name: str, uuid: str, owner: OwnerMetadata | None, s: dict[str, Any], uptime: float | None
) -> DomainStats:
    state = STATES.get(int(s.get("state.state", 0)), DomainState.NOSTATE)
    cpu_ns = s.get("cpu.time")
    rss = s.get("balloon.rss")
    current = s.get("balloon.current")
    maximum = s.get("balloon.maximum")
    return DomainStats(
        name=name,
        uuid=uuid,
        state=state,
        owner=owner,
        vcpus=_int(s.get("vcpu.current")),
        cpu_seconds=None if cpu_ns is None else int(cpu_ns) / 1e9,
        memory_bytes=None if current is None else int(current) * KiB,
        max_memory_bytes=None if maximum is None else int(maximum) * KiB,
        rss_bytes=None if rss is None else int(rss) * KiB,
        disk_read_bytes=_sum(s, "block", "rd.bytes"),
        disk_write_bytes=_sum(s, "block", "wr.bytes"),
        net_rx_bytes=_sum(s, "net", "rx.bytes"),
        net_tx_bytes=_sum(s, "net", "tx.bytes"),
        uptime_seconds=uptime,
    )


def _owner_from_metadata(xml: str) -> OwnerMetadata | None:
    """libvirt hands the element back without its namespace: put it back, then read it."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if not element.tag.startswith("{"):
            element.tag = f"{{{NAMESPACE}}}{element.tag}"
    return OwnerMetadata.from_element(root)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _sum(stats: dict[str, Any], family: str, field: str) -> int | None:
    """The sum over every device of a family (`block.0.rd.bytes` + `block.1.rd.bytes` ...)."""
    count = stats.get(f"{family}.count")
    if count is None:
        return None
    return sum(int(stats.get(f"{family}.{i}.{field}", 0)) for i in range(int(count)))


def _name(dom: Any) -> str | None:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return None
