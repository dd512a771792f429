"""The command-runner seam: every outside program (qemu-img, ssh-keygen, ...) runs through here.

`SubprocessRunner` runs real programs (never through a shell); `RecordingRunner` is the fake
for tests of code that calls programs: it records each call and answers from a script keyed by
argv prefix. Both apply the same rules, so code under test cannot tell them apart:

- a non-zero exit with `check=True` raises `CommandError` (command, exit code, stderr tail);
- a program that cannot be started raises `CommandError` with `returncode=None`;
- a run past its `timeout` is killed and raises `OperationTimeout`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vmfleet import logs
from vmfleet.errors import FleetError, OperationTimeout

_log = logs.get("commands")

STDERR_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished program left behind: its argv, exit code and both output streams."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        """True when the program exited with 0."""
        return self.returncode == 0

    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced, never an error)."""
        return self.stdout.decode("utf-8", errors="replace")

    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (undecodable bytes replaced, never an error)."""
        return self.stderr.decode("utf-8", errors="replace")


class CommandError(FleetError):
    """A program failed: it exited non-zero, or could not be started (`returncode` None).

    The message names the command, the exit code and the last lines of stderr, which is
    what a user needs to see; the full stderr stays on `stderr`.
    """

    def __init__(
        self, *, argv: Sequence[str], returncode: int | None, stderr: bytes, reason: str = ""
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr_tail(stderr)
        status = reason or (
            "could not be started" if returncode is None else f"exited with {returncode}"
        )
        message = f"command `{format_argv(argv)}` {status}"
        if tail:
            message += f": {tail}"
        super().__init__(message)


class CommandRunner(Protocol):
    """Runs one program to completion. Implementations: `SubprocessRunner`, `RecordingRunner`."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run argv (argv[0] looked up on PATH), feed it `input`, wait at most `timeout` s;
        `env` adds variables to the child's environment for this call.

        Raises `CommandError` when the program cannot start, or exits non-zero and `check`
        is set; `OperationTimeout` when it runs past `timeout` (it is killed first).
        """
        ...


def format_argv(argv: Sequence[str]) -> str:
    """argv as a shell would show it, for messages only (we never run through a shell)."""
    return shlex.join(argv)


def stderr_tail(stderr: bytes, *, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` non-empty lines of stderr, joined by `; ` for a one-line message."""
    text = stderr.decode("utf-8", errors="replace")
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(kept[-lines:])


def _checked(result: CommandResult, *, check: bool) -> CommandResult:
    if check and not result.ok:
        raise CommandError(argv=result.argv, returncode=result.returncode, stderr=result.stderr)
    return result


class SubprocessRunner:
    """The real runner: `subprocess.run` with an argv list, no shell, output captured.

    stdin is `input` when given, else /dev/null, so a program that asks for a password or
    confirmation fails instead of hanging. The child's environment is ours plus `env`.
    """

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self._env = env

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """See `CommandRunner.run`."""
        args = tuple(argv)
        if not args:
            raise ValueError("empty argv")
        extra = {**(self._env or {}), **(env or {})}
        child_env = {**os.environ, **extra} if extra else None
        try:
            with logs.timed(_log, "run", argv=format_argv(args)):
                completed = subprocess.run(
                    args,
                    input=input,
                    stdin=subprocess.DEVNULL if input is None else None,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                    shell=False,
                    env=child_env,
                )
        except subprocess.TimeoutExpired as err:
            raise OperationTimeout(
                f"command `{format_argv(args)}` did not finish within {timeout} s and was killed"
            ) from err
        except OSError as err:
            raise CommandError(
                argv=args, returncode=None, stderr=b"", reason=f"could not be started: {err}"
            ) from err
        result = CommandResult(
            argv=args,
            returncode=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr,
        )
        return _checked(result, check=check)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call a `RecordingRunner` received."""

    argv: tuple[str, ...]
    input: bytes | None
    timeout: float | None
    check: bool
    env: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    """How a `RecordingRunner` answers argv starting with `prefix`.

    `effect`, when given, runs first with the full argv (e.g. to create the file a real
    program would have written); `raises`, when given, is raised instead of returning.
    """

    prefix: tuple[str, ...]
    returncode: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    effect: Callable[[tuple[str, ...]], None] | None = None
    raises: Exception | None = None


@dataclass
class RecordingRunner:
    """The fake runner: records every call and answers from scripted argv prefixes.

    The longest matching prefix wins; among equal prefixes the latest scripted one wins, so a
    test can override an answer. A call nothing matches raises `AssertionError` naming the
    argv (tests should say what they expect), unless `default` is set.
    """

    answers: list[ScriptedAnswer] = field(default_factory=list)
    calls: list[RecordedCall] = field(default_factory=list)
    default: ScriptedAnswer | None = None

    def script(
        self,
        prefix: Sequence[str],
        *,
        returncode: int = 0,
        stdout: bytes | str = b"",
        stderr: bytes | str = b"",
        effect: Callable[[tuple[str, ...]], None] | None = None,
        raises: Exception | None = None,
    ) -> RecordingRunner:
        """Answer calls whose argv starts with `prefix`; returns self for chaining."""
        self.answers.append(
            ScriptedAnswer(
                prefix=tuple(prefix),
                returncode=returncode,
                stdout=stdout.encode() if isinstance(stdout, str) else stdout,
                stderr=stderr.encode() if isinstance(stderr, str) else stderr,
                effect=effect,
                raises=raises,
            )
        )
        return self

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """See `CommandRunner.run`; answers from the script instead of running anything."""
        args = tuple(argv)
        self.calls.append(
            RecordedCall(argv=args, input=input, timeout=timeout, check=check, env=env)
        )
        answer = self._match(args)
        if answer.effect is not None:
            answer.effect(args)
        if answer.raises is not None:
            raise answer.raises
        result = CommandResult(
            argv=args, returncode=answer.returncode, stdout=answer.stdout, stderr=answer.stderr
        )
        return _checked(result, check=check)

    def argvs(self) -> list[tuple[str, ...]]:
        """Just the argv of every call, in order (what most assertions need)."""
        return [call.argv for call in self.calls]

    def _match(self, args: tuple[str, ...]) -> ScriptedAnswer:
        best: ScriptedAnswer | None = None
        for answer in self.answers:
            if args[: len(answer.prefix)] == answer.prefix and (
                best is None or len(answer.prefix) >= len(best.prefix)
            ):
                best = answer
        if best is not None:
            return best
        if self.default is not None:
            return self.default
        raise AssertionError(f"RecordingRunner: no scripted answer for `{format_argv(args)}`")
