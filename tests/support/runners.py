"""A command-runner seam for tests that let real programs run: every call is recorded, and
calls of chosen programs go to another runner (a `RecordingRunner` with scripted answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vmfleet.drivers.commands import CommandResult, CommandRunner, SubprocessRunner


@dataclass
class Passthrough:
    """Runs each program through `real`, or through `routes[program]` when it has one."""

    real: CommandRunner = field(default_factory=SubprocessRunner)
    routes: Mapping[str, CommandRunner] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append(tuple(argv))
        target = self.routes.get(argv[0], self.real)
        return target.run(argv, input=input, timeout=timeout, check=check, env=env)
