"""With `-o json`, stdout is one JSON document whatever happens: a command that prints its
results and then fails because some of them failed (`exec` on a VM that does not answer)
says why on stderr, not in a second document. Run through the console entry point
in-process, on libvirt's test driver."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.support.testhost import TestDriverHost, fleet_file

from vmfleet import Fleet
from vmfleet.cli import main


def test_a_partial_failure_after_the_document_is_one_document_and_exit_1(
    tmp_path: Path,
    test_driver_daemon: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = fleet_file(
        tmp_path,
        "  a: {network: fwd, ready: {wait_for: none}}\nnetworks: {fwd: {mode: user}}",
        prefix="jsonerr",
    )
    with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
        fleet.up().raise_for_failures()  # a runs; nothing answers on its SSH forward
    try:
        argv = ["vmfleet", "exec", str(path), "a", "-o", "json", "--timeout", "20", "--", "true"]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exited:
            main.run()
        out, err = capsys.readouterr()
        assert exited.value.code == 1
        (result,) = json.loads(out)  # one document: the results, nothing after them
        assert result["vm"] == "a" and result["exit_status"] is None and result["error"]
        assert "1 of 1 VMs failed: a" in err
    finally:
        with Fleet.open(path, hosts=TestDriverHost.factory) as fleet:
            fleet.down(())
