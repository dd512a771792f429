"""Read-only commands run no outside program: a `qemu+ext://` host URI names a command that
libvirt would run to connect, so `plan`, `list` and the access listings never contact it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

READ_ONLY = [
    ["validate"],
    ["show"],
    ["plan"],
    ["list"],
    ["status"],
    ["ssh-config"],
    ["inventory"],
    ["ips"],
    ["hosts"],
]


def ext_fleet(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A fleet file whose one host connects through a script, and the marker file the
    script leaves when it runs."""
    marker = tmp_path / "ran"
    script = tmp_path / "connect.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        f"fleet: {name}\n"
        f'hosts: {{far: {{uri: "qemu+ext:///system?command={script}", domain_type: qemu}}}}\n'
        "vms: {web: {memory: 64, disk: 1}}\n"
    )
    return fleet, marker


@pytest.mark.parametrize("command", READ_ONLY, ids=[c[0] for c in READ_ONLY])
def test_read_only_command_never_runs_an_ext_transport_command(
    command: list[str], tmp_path: Path
) -> None:
    fleet, marker = ext_fleet(tmp_path, "extro")
    ran = vmfleet(*command, str(fleet), timeout=120)
    assert "Traceback" not in ran.stderr, ran.stderr
    assert not marker.exists(), f"{command[0]} ran the ext transport's command"
    assert not (tmp_path / ".vmfleet").exists()


def test_up_does_contact_an_ext_host(tmp_path: Path) -> None:
    """The same file: `up` is not read-only and connects (the command runs, then fails)."""
    fleet, marker = ext_fleet(tmp_path, "extup")
    ran = vmfleet("up", str(fleet), timeout=120)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert marker.exists()
