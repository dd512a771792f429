"""`/metrics`: the fleet in the Prometheus text format, through the official `prometheus_client`.

Each scrape gathers one `FleetView` (one bulk statistics call per host) and turns it into
metric families. Labels stay bounded: `fleet`, `host`, `vm` (the spec's VMs and orphans of the
fleet), `group`, `state` (the eight libvirt states, `absent`, `unknown`; only the current one
is exported, so a VM has one state series), `operation` (a fixed list). Nothing is
labelled by snapshot, event or time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmfleet.drivers.libvirt import DomainState
from vmfleet.engine.monitor import FleetView
from vmfleet.serve.histograms import DurationCollector, Reader


class FleetCollector(Collector):
    """Collects one `FleetView` per scrape (`gather` is `Monitor.gather` or a cached view)."""

    def __init__(self, gather: Callable[[], FleetView]) -> None:
        self._gather = gather

    def collect(self) -> Iterator[Metric]:
        view = self._gather()
        yield from _vm_metrics(view)
        yield from _host_metrics(view)
        yield from _group_metrics(view)
        scrape = GaugeMetricFamily(
            "vmfleet_gather_seconds", "Seconds the last look at the hosts took.", labels=["fleet"]
        )
        scrape.add_metric([view.fleet], view.seconds)
        yield scrape


# (metric, type, help, DomainStats field); a field the driver does not report is left out
VM_METRICS = (
    ("vmfleet_vm_vcpus", "gauge", "vCPUs the VM runs with.", "vcpus"),
    ("vmfleet_vm_cpu_seconds", "counter", "CPU time the VM used (all vCPUs).", "cpu_seconds"),
    ("vmfleet_vm_memory_bytes", "gauge", "Memory the balloon gives the VM.", "memory_bytes"),
    ("vmfleet_vm_memory_max_bytes", "gauge", "The VM's maximum memory.", "max_memory_bytes"),
    ("vmfleet_vm_memory_rss_bytes", "gauge", "Resident memory of the VM's QEMU.", "rss_bytes"),
    ("vmfleet_vm_disk_read_bytes", "counter", "Bytes read from the disks.", "disk_read_bytes"),
    ("vmfleet_vm_disk_write_bytes", "counter", "Bytes written to the disks.", "disk_write_bytes"),
    (
        "vmfleet_vm_network_receive_bytes",
        "counter",
        "Bytes received (NICs libvirt sees).",
        "net_rx_bytes",
    ),
    (
        "vmfleet_vm_network_transmit_bytes",
        "counter",
        "Bytes sent (NICs libvirt sees).",
        "net_tx_bytes",
    ),
    (
        "vmfleet_vm_uptime_seconds",
        "gauge",
        "Seconds since the VM's QEMU started.",
        "uptime_seconds",
    ),
)


def _vm_metrics(view: FleetView) -> Iterator[Metric]:
    labels = ["fleet", "vm", "host"]
    state = GaugeMetricFamily(
        "vmfleet_vm_state",
        "1, labelled with the VM's current state (one series per VM).",
        labels=[*labels, "state"],
    )
    running = GaugeMetricFamily(
        "vmfleet_vm_running", "1 when the VM runs, 0 otherwise.", labels=labels
    )
    ready = GaugeMetricFamily(
        "vmfleet_vm_ready_seconds",
        "Seconds from start to ready in the VM's last group power-on.",
        labels=labels,
    )
    families = [
        (
            CounterMetricFamily(name, doc, labels=labels)
            if kind == "counter"
            else GaugeMetricFamily(name, doc, labels=labels),
            field,
        )
        for name, kind, doc, field in VM_METRICS
    ]
    for vm in view.vms:
        values = [view.fleet, vm.name, vm.host or ""]
        state.add_metric([*values, vm.state], 1.0)
        running.add_metric(values, 1.0 if vm.state == DomainState.RUNNING else 0.0)
        if vm.ready_seconds is not None:
            ready.add_metric(values, vm.ready_seconds)
        if vm.stats is None:
            continue
        for family, field in families:
            value = getattr(vm.stats, field)
            if value is not None:
                family.add_metric(values, float(value))
    yield state
    yield running
    yield ready
    for family, _field in families:
        yield family


def _gauge(
    name: str, doc: str, labels: tuple[str, ...] = ("fleet", "vm", "host")
) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["fleet", "vm", "host"])


def _host_metrics(view: FleetView) -> Iterator[Metric]:
    labels = ("fleet", "host")
    up = _gauge("vmfleet_host_up", "1 when the host answers, 0 when it does not.", labels)
    cpus = _gauge("vmfleet_host_cpus", "CPUs of the host.", labels)
    memory = _gauge("vmfleet_host_memory_bytes", "Memory of the host.", labels)
    vcpus = _gauge(
        "vmfleet_host_allocated_vcpus", "vCPUs of the host's running domains (all).", labels
    )
    allocated = _gauge(
        "vmfleet_host_allocated_memory_bytes", "Memory of the host's running domains (all).", labels
    )
    vms = _gauge("vmfleet_host_fleet_vms", "Domains of this fleet on the host.", labels)
    for h in view.hosts:
        values = [view.fleet, h.name]
        up.add_metric(values, 1.0 if h.reachable else 0.0)
        if not h.reachable:
            continue
        cpus.add_metric(values, float(h.cpus or 0))
        memory.add_metric(values, float(h.memory_bytes or 0))
        vcpus.add_metric(values, float(h.allocated_vcpus))
        allocated.add_metric(values, float(h.allocated_memory_bytes))
        vms.add_metric(values, float(h.fleet_vms))
    yield from (up, cpus, memory, vcpus, allocated, vms)


def _group_metrics(view: FleetView) -> Iterator[Metric]:
    labels = ("fleet", "group")
    ready = _gauge("vmfleet_group_ready", "1 when the group's Ready condition is True.", labels)
    synced = _gauge(
        "vmfleet_group_power_state_synced",
        "1 when every VM member's PowerStateSynced condition is True.",
        labels,
    )
    for g in view.groups:
        values = [view.fleet, g.name]
        ready.add_metric(values, 1.0 if all(c.status == "True" for c in g.conditions) else 0.0)
        member_synced = [
            c.status == "True"
            for m in g.members
            for c in m.conditions
            if c.type == "PowerStateSynced"
        ]
        synced.add_metric(values, 1.0 if all(member_synced) else 0.0)
    yield ready
    yield synced


def registry(
    gather: Callable[[], FleetView],
    durations: Reader,
    *,
    fleet: str,
    clusters: Collector | None = None,
) -> CollectorRegistry:
    """The one registry `serve` exposes: the fleet collector, the operation histograms
    (`vmfleet_operation_duration_seconds{fleet,operation}`, from the durations any process
    recorded in the state store; see `serve.histograms`) and, for a fleet with HA clusters,
    their Pacemaker and DRBD state (`serve.clusters`)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(gather))
    reg.register(DurationCollector(durations, fleet=fleet))
    if clusters is not None:
        reg.register(clusters)
    return reg
