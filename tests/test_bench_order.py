"""The benchmarks' fair order (`bench.provision.alternate`): each side's up and down back to
back with no other side in between, who goes first turning from round to round, and the best
run of each side kept. No guests: the sides here only record when they ran."""

from __future__ import annotations

from functools import partial

from bench.provision import Timing, alternate


def test_each_side_runs_alone_and_the_first_side_alternates() -> None:
    log: list[str] = []
    walls = {"a up": [3.0, 1.0, 2.0], "a down": [5.0, 6.0, 4.0], "b up": [7.0, 8.0, 9.0]}
    walls["b down"] = [2.0, 2.0, 1.0]

    def step(name: str) -> Timing:
        log.append(name)
        return walls[name].pop(0), 0.1 * len(log)

    best = alternate(
        {
            "a": (partial(step, "a up"), partial(step, "a down")),
            "b": (partial(step, "b up"), partial(step, "b down")),
        },
        rounds=3,
    )
    assert log == [
        *("a up", "a down", "b up", "b down"),
        *("b up", "b down", "a up", "a down"),
        *("a up", "a down", "b up", "b down"),
    ]
    # the best wall of each, with the CPU of that same run
    assert best["a"] == ((1.0, 0.1 * 7), (4.0, 0.1 * 10))
    assert best["b"] == ((7.0, 0.1 * 3), (1.0, 0.1 * 12))
