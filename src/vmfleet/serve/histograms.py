"""Operation durations as Prometheus histograms, built from the store's `durations` table.

The CLI runs that do the work (`up`, `power`, `snapshot create`, `migrate`, ...) are other
processes than `serve`: they write each duration into the state store (`state.durations`)
and this collector turns the rows into `vmfleet_operation_duration_seconds{fleet,operation}`
when /metrics is scraped. The work per scrape is bounded: it reads only the rows recorded
since the last scrape, at most SCRAPE_ROWS of them (a larger backlog is counted over the
following scrapes); the first scrape reads the rows recorded since STARTUP_WINDOW seconds
before `serve` started. The counts are kept in memory and only grow, as Prometheus counters
do; a restarted `serve` starts again from the rows of its window (Prometheus reads that as a
counter reset).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vmfleet.state.durations import OPERATIONS
from vmfleet.state.store import DurationRow

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SCRAPE_ROWS = 5_000
STARTUP_WINDOW = 3600.0
# read(after=id, since=epoch seconds or None, limit=rows) -> rows oldest first
Reader = Callable[[int, float | None, int], list[DurationRow]]


@dataclass
class _Counts:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def add(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip(
            (*map(floatToGoString, DURATION_BUCKETS), "+Inf"), self.buckets, strict=True
        ):
            running += n
            out.append((bound, float(running)))
        return out


class DurationCollector(Collector):
    """One histogram series per operation (all present from the start, at 0)."""

    def __init__(
        self,
        read: Reader,
        *,
        fleet: str,
        window: float = STARTUP_WINDOW,
        batch: int = SCRAPE_ROWS,
    ) -> None:
        self._read = read
        self._fleet = fleet
        self._since: float | None = time.time() - window
        self._batch = batch
        self._last = 0
        self._counts = {operation: _Counts() for operation in OPERATIONS}
        self._lock = threading.Lock()  # two scrapes at once count each row once

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._catch_up()
            family = HistogramMetricFamily(
                "vmfleet_operation_duration_seconds",
                "How long operations took, whichever process ran them (CLI, API, serve).",
                labels=["fleet", "operation"],
            )
            for operation, counts in self._counts.items():
                family.add_metric(
                    [self._fleet, operation], counts.cumulative(), sum_value=counts.total
                )
        yield family

    def _catch_up(self) -> None:
        rows = self._read(self._last, self._since, self._batch)
        self._since = None  # after the first read, rows follow by id alone
        for row_id, _at, operation, _subject, seconds in rows:
            self._last = row_id
            counts = self._counts.get(operation)
            if counts is not None:  # an operation a newer vmfleet records is skipped
                counts.add(seconds)
