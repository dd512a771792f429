"""Placement speed: 10,000 VMs on 1,000 hosts in 3 zones, and 4,000 VMs on 32 hosts.

Capacity limits, required host anti-affinity in groups of 10 (no two VMs of a group on one
host) and a share of VMs with preferred host affinity to their group. Every placement is
checked afterwards: capacity and anti-affinity violations are counted (target: zero).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from vmfleet.core import placement
from vmfleet.spec.models import Affinity

GIB = 1 << 30


def _affinity(group: str, *, soft: bool) -> Affinity:
    term = {"labelSelector": [{"matchLabels": {"group": group}}], "topologyKey": "hostname"}
    data: dict[str, object] = {
        "vmAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    }
    if soft:
        pair = {"labelSelector": [{"matchLabels": {"pair": group}}], "topologyKey": "zone"}
        data["zoneAffinity"] = {"preferredDuringSchedulingIgnoredDuringExecution": [pair]}
    return Affinity.model_validate(data)


def scenario(vms: int, hosts: int, *, soft_share: float = 0.2) -> dict[str, object]:
    """Place `vms` VMs on `hosts` hosts; time, rate, utilisation and violations."""
    cpus = -(-25 * vms // (hosts * 7))  # vCPUs (2.5 a VM on average) fill ~70 % too
    facts = [
        placement.HostFacts(
            name=f"h{n:04d}",
            capacity=placement.Resources(cpus=cpus, memory=256 * GIB, disk=4000 * GIB),
            labels={"zone": f"z{n % 3}"},
        )
        for n in range(hosts)
    ]
    # Size the VMs so the fleet fills about 70 % of the memory.
    memory = int(0.7 * hosts * 256 * GIB / vms) // (1 << 20) * (1 << 20)
    affinities = {
        g: _affinity(f"g{g}", soft=g % round(1 / soft_share) == 0) for g in range(vms // 10 + 1)
    }
    requests = [
        placement.VmRequest(
            name=f"vm-{i}",
            template=f"t{i // 10}",
            vcpus=1 + i % 4,
            memory=memory,
            disk=20 * GIB,
            labels={"group": f"g{i // 10}", "pair": f"g{i // 20 * 2}"},
            affinity=affinities[i // 10],
        )
        for i in range(vms)
    ]
    started = time.perf_counter()
    result = placement.place(facts, requests)
    seconds = time.perf_counter() - started
    used: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    groups: Counter[tuple[str, str]] = Counter()
    for request in requests:
        host = result.hosts.get(request.name)
        if host is None:
            continue
        used[host][0] += request.vcpus
        used[host][1] += request.memory
        groups[(request.labels["group"], host)] += 1
    violations = sum(1 for n in groups.values() if n > 1)
    violations += sum(1 for u in used.values() if u[0] > cpus or u[1] > 256 * GIB)
    load = [max(u[0] / cpus, u[1] / (256 * GIB)) for u in used.values()]
    load += [0.0] * (hosts - len(used))
    return {
        "vms": vms,
        "hosts": hosts,
        "placed": len(result.hosts),
        "unplaced": len(result.failures),
        "seconds": seconds,
        "placements/s": len(result.hosts) / seconds,
        "violations": violations,
        "max util %": 100 * max(load),
        "mean util %": 100 * sum(load) / len(load),
    }


def run() -> list[dict[str, object]]:
    return [scenario(10_000, 1_000), scenario(4_000, 32)]


if __name__ == "__main__":
    for row in run():
        print(row)
