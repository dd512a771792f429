"""Drawing a `Fleet`'s progress events: a live table with a row per VM for each stage
(plain lines when not a terminal), a bar per image download, and notes on recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from vmfleet.api.events import (
    Event,
    ImagePrepared,
    ImageProgress,
    Notice,
    Planned,
    Recovered,
    Stage,
    VmProgress,
)
from vmfleet.cli.output import err_console
from vmfleet.core.plan import Plan


class StageTable:
    """Collects one stage's VM phases and draws them."""

    def __init__(self, title: str, vms: tuple[str, ...]) -> None:
        self.title = title
        self.rows: dict[str, tuple[str, str]] = dict.fromkeys(vms, ("waiting", ""))
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        if err_console.is_terminal and self.rows:
            self._live = Live(self._table(), console=err_console, refresh_per_second=4)
            self._live.__enter__()

    def update(self, event: VmProgress) -> None:
        with self._lock:
            self.rows[event.vm] = (event.phase, event.detail)
        if self._live is not None:
            self._live.update(self._table())
        elif event.phase in ("done", "failed"):
            err_console.print(f"{event.vm}: {event.phase} {event.detail}".rstrip(), highlight=False)

    def _table(self) -> Table:
        table = Table(title=f"{self.title} ({time.monotonic() - self.started:.0f}s)")
        table.add_column("VM", no_wrap=True)
        table.add_column("Phase", no_wrap=True)
        table.add_column("Detail", overflow="fold")
        with self._lock:
            for vm, (phase, detail) in self.rows.items():
                style = {"done": "green", "failed": "red"}.get(phase, "yellow")
                table.add_row(vm, f"[{style}]{phase}[/]", detail)
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)
            self._live = None


class ProgressView:
    """The `on_event` callback of the CLI's Fleet; a context manager that ends the drawing.

    `on_plan` draws `up`'s plan before it is applied (table output only)."""

    def __init__(self, on_plan: Callable[[Plan, bool], None] | None = None) -> None:
        self._on_plan = on_plan
        self._stage: StageTable | None = None
        self._bars: Any = None  # rich.progress.Progress, imported when a download starts
        self._tasks: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, VmProgress):
            if self._stage is not None:
                self._stage.update(event)
        elif isinstance(event, Stage):
            self._end()
            self._stage = StageTable(event.title, event.vms)
        elif isinstance(event, ImageProgress):
            self._download(event)
        elif isinstance(event, Recovered):
            self._end()
            err_console.print(f"recovered: {event.item}", highlight=False)
        elif isinstance(event, ImagePrepared):
            self._prepared(event)
        elif isinstance(event, Notice):
            self._end()
            err_console.print(
                f"[yellow]warning:[/] {escape(event.message)}", highlight=False, soft_wrap=True
            )
        elif isinstance(event, Planned):
            self._end()
            if self._on_plan is not None:
                self._on_plan(event.plan, event.prune)

    def _prepared(self, event: ImagePrepared) -> None:
        """A line as a build starts and one when it is done; nothing for a cached file."""
        if event.state == "cached":
            return
        self._end()
        if event.state == "building":
            text = f"preparing image {event.image}..."
        else:
            steps = ", ".join(f"{step} {secs:.0f} s" for step, secs in event.seconds.items())
            total = sum(event.seconds.values())
            text = f"prepared image {event.image} in {total:.0f} s ({steps}): {event.path}"
        err_console.print(escape(text), highlight=False)

    def _download(self, event: ImageProgress) -> None:
        if self._bars is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._end()
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err_console,
                disable=not err_console.is_terminal,
            )
            self._bars.__enter__()
        if event.image not in self._tasks:
            self._tasks[event.image] = self._bars.add_task(f"pull {event.image}", total=event.total)
        self._bars.update(self._tasks[event.image], completed=event.done, total=event.total)
        if self._bars.finished:  # every download complete: free the terminal (prompts follow)
            self._end()

    def _end(self) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
        if self._bars is not None:
            self._bars.__exit__(None, None, None)
            self._bars = None
            self._tasks = {}

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._end()
