"""Knowing what happened: `--version`, `-v`/`--debug` events on stderr, a log file per run in
the state folder (every libvirt call and outside program, with timings, secrets redacted),
errors as JSON with `-o json`, and `plan --detailed-exitcode` as Terraform's."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet import __version__, logs
from vmfleet.drivers.commands import SubprocessRunner
from vmfleet.drivers.secrets import hash_password

FLEET = (
    'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
    "defaults: {memory: 64MiB, disk: 16MiB}\n"
)


def test_version(tmp_path: Path) -> None:
    result = vmfleet("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"vmfleet {__version__}")


def test_debug_logs_libvirt_calls_with_timings_and_writes_a_run_log(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET + "vms:\n  web: {}\n")
    result = vmfleet("--debug", "down", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "libvirt: open connection host=local uri=test:///default ms=" in result.stderr
    quiet = vmfleet("down", "--yes", cwd=tmp_path)
    assert "libvirt:" not in quiet.stderr
    runs = sorted((tmp_path / ".vmfleet" / "logs").glob("*-down.log"))
    assert len(runs) == 2  # one per run, with or without -v
    vmfleet("plan", cwd=tmp_path)
    assert not list((tmp_path / ".vmfleet" / "logs").glob("*-plan.log"))  # read-only: none
    events = [json.loads(line) for line in runs[0].read_text().splitlines()]
    opened = [e for e in events if e["message"] == "open connection"]
    assert opened and opened[0]["host"] == "local" and opened[0]["ms"] >= 0


@pytest.fixture
def captured() -> io.StringIO:
    """Both handlers vmfleet installs (text for stderr, JSON for the run file) into one buffer."""
    buffer = io.StringIO()
    root = logging.getLogger(logs.ROOT)
    before = list(root.handlers)
    logs.to_stderr(logging.DEBUG)
    for handler in root.handlers[len(before) :]:
        handler.setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:] = before


def test_passwords_never_reach_a_log(captured: io.StringIO, tmp_path: Path) -> None:
    hash_password("hunter2-correct-horse", salt="abc")
    SubprocessRunner().run(["echo", "hunter2-correct-horse"])
    logs.event(logs.get("test"), "user-data", text="password: s3cr3t-plain")
    run_file = logs.to_run_file(tmp_path)
    logs.event(logs.get("test"), "again hunter2-correct-horse", token="token=abcdef")
    logging.getLogger(logs.ROOT).handlers[-1].flush()
    written = captured.getvalue() + run_file.read_text()
    assert "echo ***" in written
    for secret in ("hunter2-correct-horse", "s3cr3t-plain", "abcdef"):
        assert secret not in written


def test_errors_as_json_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text("vms:\n  web: {memroy: 1G}\n")
    result = vmfleet("validate", "-o", "json", cwd=tmp_path)
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "SpecError"
    assert error["problems"][0]["line"] == 2
    assert error["problems"][0]["field"] == "vms.web.memroy"


def test_plan_detailed_exitcode(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET + "vms: {}\n")
    assert vmfleet("plan", "--detailed-exitcode", cwd=tmp_path).returncode == 0
    (tmp_path / "vmfleet.yaml").write_text(FLEET + "vms:\n  web: {}\n")
    assert vmfleet("plan", "--detailed-exitcode", cwd=tmp_path).returncode == 2
    assert vmfleet("plan", cwd=tmp_path).returncode == 0
    (tmp_path / "vmfleet.yaml").write_text(FLEET + "vms:\n  web: {memroy: 1G}\n")
    assert vmfleet("plan", "--detailed-exitcode", cwd=tmp_path).returncode == 1
