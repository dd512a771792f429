"""Expansion speed: N replicas on one /16 network, as `vmfleet show` and `up` expand them.

Addresses are handed out lowest-free first; the figure to watch is how the time grows
with the fleet (it should be linear: 10,000 VMs well under half a second).
"""

from __future__ import annotations

import time

from vmfleet.core.expand import Leases, expand
from vmfleet.spec.models import FleetSpec


def fleet(vms: int) -> FleetSpec:
    """One template of `vms` replicas on a nat /16 with a reserved range."""
    return FleetSpec.model_validate(
        {
            "networks": {
                "lab": {
                    "mode": "nat",
                    "cidr": "10.20.0.0/16",
                    "reserved": ["10.20.0.2-10.20.0.99", "10.20.8.0/24"],
                }
            },
            "images": {"img": {"source": "/x"}},
            "defaults": {"image": "img", "network": "lab"},
            "vms": {"web": {"replicas": vms}},
        }
    )


def scenario(vms: int) -> dict[str, object]:
    """Expand `vms` VMs from scratch, then again with every address leased."""
    spec = fleet(vms)
    started = time.perf_counter()
    first = expand(spec, fleet="bench")
    fresh = time.perf_counter() - started
    leases = Leases(
        macs={(i.name, 0): i.nics[0].mac for i in first},
        ips={(i.name, 0): i.nics[0].ip for i in first if i.nics[0].ip},
    )
    started = time.perf_counter()
    expand(spec, fleet="bench", leases=leases)
    leased = time.perf_counter() - started
    return {"vms": vms, "network": "/16", "fresh s": fresh, "with leases s": leased}


def run() -> list[dict[str, object]]:
    return [scenario(n) for n in (1_000, 3_000, 10_000)]


if __name__ == "__main__":
    for row in run():
        print(row)
