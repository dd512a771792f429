"""What `vmfleet up`, `list` and `down` do, in Python: python examples/api.py fleet.yaml

Brings the fleet up (printing each VM's phases), lists it, and with --down removes it again.
"""

from __future__ import annotations

import sys
from typing import Any

from vmfleet import Fleet, VmProgress


def main(path: str, *, down: bool = False, **options: Any) -> None:
    """`options` go to `Fleet.open` (state=, hosts=, runner=, lock_wait=)."""

    def show(event: object) -> None:
        if isinstance(event, VmProgress):
            print(f"  {event.vm}: {event.phase} {event.detail}".rstrip())

    with Fleet.open(path, on_event=show, **options) as fleet:
        print(f"plan: {len(fleet.plan().of('create'))} to create")
        fleet.up().raise_for_failures()  # FleetError naming the VMs that failed
        for vm in fleet.list():
            print(f"{vm.name:<12} {vm.state:<10} {vm.host:<10} {', '.join(vm.ip or ())}")
        if down:
            fleet.down().raise_for_failures()


if __name__ == "__main__":
    main(sys.argv[1], down="--down" in sys.argv[2:])
