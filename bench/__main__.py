"""`python -m bench [NAME…]`: run benchmarks and print tables and ratios."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from bench import (
    expand,
    groups,
    lightning,
    moves,
    others,
    placement,
    profile,
    provision,
    serve,
    snapshots,
    startup,
)

BENCHMARKS: dict[str, Callable[[], list[dict[str, object]]]] = {
    "up-down": provision.up_down,
    "ssh-ready": provision.ssh_ready,
    "others": lambda: others.compare() + lightning.compare(),
    "others-kcli": others.compare,
    "others-vl": lightning.compare,
    "profile": profile.up_down,
    "placement": placement.run,
    "expand": expand.run,
    "snapshots": snapshots.group_vs_sequential,
    "group-boot": groups.boot_order,
    "scrape": serve.scrape_100,
    "scrape-micro": serve.scrape_micro,
    "rebalance": lambda: [moves.rebalance_planning()],
    "migrate": moves.live_migration,
    "drain": moves.drain,
    "startup": startup.compare,
}


def show(name: str, rows: list[dict[str, object]]) -> None:
    table = Table(title=name)
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        wrong = ", ".join(n for n in unknown if n not in ("-h", "--help"))
        out = sys.stderr if wrong else sys.stdout
        print((f"unknown benchmark: {wrong}\n" if wrong else "") + str(__doc__), file=out)
        print(f"benchmarks: {' '.join(BENCHMARKS)} (none named: all)", file=out)
        sys.exit(2 if wrong else 0)
    for name in names or list(BENCHMARKS):
        show(name, BENCHMARKS[name]())


if __name__ == "__main__":
    main(sys.argv[1:])
