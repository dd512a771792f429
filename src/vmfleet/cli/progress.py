"""A live table with a row per VM while long work runs (plain lines when not a terminal)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.live import Live
from rich.table import Table

from vmfleet.cli.output import err_console

PHASES = ("disk", "seed", "define", "start", "ready", "stop", "undefine", "volumes")


class VmProgress:
    """Collects (vm, phase, detail) events and draws them; usable as the engine's callback."""

    def __init__(self, title: str, vms: list[str]) -> None:
        self.title = title
        self.rows: dict[str, tuple[str, str, float]] = {
            vm: ("waiting", "", time.monotonic()) for vm in vms
        }
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._interactive = err_console.is_terminal

    def __call__(self, vm: str, phase: str, detail: str) -> None:
        with self._lock:
            first = self.rows.get(vm, ("", "", time.monotonic()))[2]
            self.rows[vm] = (phase, detail, first)
        if self._live is not None:
            self._live.update(self._table())
        elif phase in ("done", "failed"):
            err_console.print(f"{vm}: {phase} {detail}".rstrip(), highlight=False)

    def _table(self) -> Table:
        table = Table(title=f"{self.title} ({time.monotonic() - self.started:.0f}s)")
        table.add_column("VM", no_wrap=True)
        table.add_column("Phase", no_wrap=True)
        table.add_column("Detail", overflow="fold")
        with self._lock:
            for vm, (phase, detail, _t) in self.rows.items():
                style = {"done": "green", "failed": "red"}.get(phase, "yellow")
                table.add_row(vm, f"[{style}]{phase}[/]", detail)
        return table

    def __enter__(self) -> VmProgress:
        if self._interactive and self.rows:
            self._live = Live(self._table(), console=err_console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(kind, error, trace)
            self._live = None
