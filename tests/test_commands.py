"""The command-runner seam: real subprocesses and the recording fake follow the same rules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vmfleet.drivers.commands import (
    CommandError,
    CommandResult,
    RecordingRunner,
    SubprocessRunner,
    stderr_tail,
)
from vmfleet.errors import FleetError, OperationTimeout

PY = sys.executable


def test_subprocess_runner_captures_output_and_feeds_input() -> None:
    result = SubprocessRunner().run(
        [
            PY,
            "-c",
            "import sys; d = sys.stdin.read(); print(d.upper()); print('e', file=sys.stderr)",
        ],
        input=b"hello",
    )
    assert result == CommandResult(
        argv=(PY, "-c", result.argv[2]), returncode=0, stdout=b"HELLO\n", stderr=b"e\n"
    )
    assert result.ok
    assert result.stdout_text() == "HELLO\n"


def test_subprocess_runner_never_uses_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = SubprocessRunner().run(["echo", f"x; touch {marker}"])
    assert result.stdout == f"x; touch {marker}\n".encode()
    assert not marker.exists()


def test_nonzero_exit_raises_with_command_code_and_stderr_tail() -> None:
    script = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(50)]; sys.exit(3)"
    with pytest.raises(CommandError) as caught:
        SubprocessRunner().run([PY, "-c", script])
    err = caught.value
    assert isinstance(err, FleetError)
    assert err.returncode == 3
    assert "exited with 3" in str(err)
    assert PY in str(err)
    assert "line 49" in str(err)
    assert "line 0;" not in str(err)  # only the tail
    assert b"line 0\n" in err.stderr  # but the whole stderr is kept


def test_nonzero_exit_without_check_returns_the_result() -> None:
    result = SubprocessRunner().run([PY, "-c", "raise SystemExit(4)"], check=False)
    assert result.returncode == 4
    assert not result.ok


def test_missing_program_raises_command_error_without_exit_code() -> None:
    with pytest.raises(CommandError) as caught:
        SubprocessRunner().run(["vmftest-no-such-program"], check=False)
    assert caught.value.returncode is None
    assert "vmftest-no-such-program" in str(caught.value)


def test_timeout_kills_and_raises_operation_timeout() -> None:
    with pytest.raises(OperationTimeout, match=r"did not finish within 0.2 s"):
        SubprocessRunner().run([PY, "-c", "import time; time.sleep(30)"], timeout=0.2)


def test_extra_environment_is_added_to_ours() -> None:
    runner = SubprocessRunner(env={"VMFTEST_X": "42"})
    result = runner.run(
        [PY, "-c", "import os; print(os.environ['VMFTEST_X'], 'PATH' in os.environ)"]
    )
    assert result.stdout == b"42 True\n"


def test_per_call_environment_is_added_to_the_runners_and_ours() -> None:
    runner = SubprocessRunner(env={"VMFTEST_A": "runner"})
    code = "import os; e = os.environ; print(e['VMFTEST_A'], e['VMFTEST_B'], 'PATH' in e)"
    result = runner.run([PY, "-c", code], env={"VMFTEST_B": "call"})
    assert result.stdout == b"runner call True\n"


def test_recording_runner_records_the_per_call_environment() -> None:
    runner = RecordingRunner().script(["sh"])
    runner.run(["sh", "-c", "true"], env={"VMFLEET_VM": "web-1"})
    assert runner.calls[0].env == {"VMFLEET_VM": "web-1"}


def test_stderr_tail_keeps_last_nonempty_lines_on_one_line() -> None:
    assert stderr_tail(b"a\n\n b \nc\n", lines=2) == "b; c"
    assert stderr_tail(b"") == ""


def test_recording_runner_records_calls_and_answers_longest_prefix() -> None:
    runner = RecordingRunner()
    runner.script(["qemu-img"], stdout="generic")
    runner.script(["qemu-img", "info"], stdout="info")
    assert runner.run(["qemu-img", "info", "x"]).stdout == b"info"
    assert runner.run(["qemu-img", "check", "x"], timeout=5).stdout == b"generic"
    assert runner.argvs() == [("qemu-img", "info", "x"), ("qemu-img", "check", "x")]
    assert runner.calls[1].timeout == 5


def test_recording_runner_later_script_overrides_equal_prefix() -> None:
    runner = RecordingRunner().script(["a"], stdout="old").script(["a"], stdout="new")
    assert runner.run(["a"]).stdout == b"new"


def test_recording_runner_applies_check_like_the_real_one() -> None:
    runner = RecordingRunner().script(["false"], returncode=1, stderr="boom")
    with pytest.raises(CommandError, match=r"exited with 1: boom"):
        runner.run(["false"])
    assert runner.run(["false"], check=False).returncode == 1


def test_recording_runner_runs_effects_and_raises_scripted_errors(tmp_path: Path) -> None:
    made = tmp_path / "made"
    runner = RecordingRunner()
    runner.script(["make"], effect=lambda argv: Path(argv[1]).write_text("x"))
    runner.script(["slow"], raises=OperationTimeout("slow timed out"))
    runner.run(["make", str(made)])
    assert made.read_text() == "x"
    with pytest.raises(OperationTimeout):
        runner.run(["slow"])


def test_recording_runner_refuses_unscripted_calls() -> None:
    with pytest.raises(AssertionError, match=r"no scripted answer for `rm -rf /`"):
        RecordingRunner().run(["rm", "-rf", "/"])
