"""What `plan` shows, through the CLI on libvirt's test driver: the networks it creates or
removes (mode, CIDR), the images it uploads (host, size, format), per new VM its host, sizes,
data disks, addresses and readiness, per change old -> new and live or at next boot, and a
Terraform-like "Plan: …" count; `-o json` carries the same as added fields. The addresses it
shows are the ones `list` shows once `up` has run, and `up` does what it showed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import unique_fleet, vmfleet
from tests.support.snapshot import folder
from tests.support.testhost import TestDriverHost
from typer.testing import CliRunner

from vmfleet import Fleet
from vmfleet.cli.main import app
from vmfleet.cli.planview import summary_line
from vmfleet.core.plan import Summary
from vmfleet.spec.units import format_size

DIGEST = "0" * 64


def fleet_yaml(fleet: str, image: Path, vms: str) -> str:
    return f"""
fleet: {fleet}
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
networks:
  lab: {{mode: nat, cidr: 192.168.91.0/24}}
  office: {{mode: bridge, bridge: br0}}
images:
  base: {{source: {image}}}
  remote: {{source: "http://127.0.0.1:9/remote.qcow2", sha256: "{DIGEST}"}}
defaults: {{image: base, memory: 64MiB, disk: 16MiB, network: lab}}
vms:
{vms}
"""


NEW_VMS = """
  web: {replicas: 2, ready: {wait_for: ssh, timeout: 2m}}
  db:
    vcpus: 2
    memory: 128MiB
    disk: 32MiB
    data_disks: [{size: 64MiB}]
    ips: 192.168.91.50
  edge: {image: remote, nics: [{network: lab}, {network: office}]}
  spare: {power: off}
  queue: {}
groups:
  backend: {members: [queue], power_state: PoweredOn}
"""


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


@pytest.fixture
def held() -> Iterator[None]:
    """test:///default kept alive between the in-process commands of one test."""
    conn = libvirt.open("test:///default")
    try:
        yield
    finally:
        conn.close()


def _bases() -> set[str]:
    """The base image volumes on the test driver (other tests' too)."""
    conn = libvirt.open("test:///default")
    try:
        volumes = conn.storagePoolLookupByName("default-pool").listVolumes()
    finally:
        conn.close()
    return {v for v in volumes if v.startswith("vmf-base.base.")}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def test_the_table_shows_networks_images_sizes_addresses_and_a_count(
    tmp_path: Path, image: Path
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(unique_fleet("pv"), image, NEW_VMS))
    result = vmfleet("plan", str(path))
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    size = image.stat().st_size
    assert lines[:3] == [
        "+ network lab create on local nat 192.168.91.0/24",
        f"+ image base upload on local {format_size(size)} qcow2 from {image}",
        "+ image remote upload on local size and format known once pulled from "
        "http://127.0.0.1:9/remote.qcow2",
    ]
    assert lines[3:9] == [
        "+ web-0 create on local 1 vCPU, 64MiB memory, 16MiB disk; lab 192.168.91.2; "
        "ready: ssh within 2m",
        "+ web-1 create on local 1 vCPU, 64MiB memory, 16MiB disk; lab 192.168.91.3; "
        "ready: ssh within 2m",
        "+ db create on local 2 vCPUs, 128MiB memory, 32MiB disk + 64MiB data; "
        "lab 192.168.91.50; ready: not awaited",
        "+ edge create on local 1 vCPU, 64MiB memory, 16MiB disk; lab 192.168.91.4, "
        "office dhcp; ready: not awaited",
        "+ spare create on local 1 vCPU, 64MiB memory, 16MiB disk; lab 192.168.91.5; "
        "standby (not started)",
        "+ queue create on local 1 vCPU, 64MiB memory, 16MiB disk; lab 192.168.91.6; "
        "started by group backend",
    ]
    assert lines[9] == (
        "Plan: 6 to create, 0 to change, 0 to remove; 1 network to create, "
        f"2 image uploads ({format_size(size)} + 1 of size known once pulled); "
        "0 unchanged, 0 not in the spec"
    )


def test_json_adds_sizes_addresses_readiness_networks_and_images(
    tmp_path: Path, image: Path
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(unique_fleet("pv"), image, NEW_VMS))
    result = vmfleet("plan", str(path), "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {(r["vm"] or r["target"]): r for r in json.loads(result.stdout)}
    db = rows["db"]
    # the fields rows always had are still there, unchanged
    assert {k: db[k] for k in ("vm", "action", "host", "changes", "pending")} == {
        "vm": "db",
        "action": "create",
        "host": "local",
        "changes": [],
        "pending": [],
    }
    assert [s["step"] for s in db["steps"]] == ["create", "start"]
    assert (db["vcpus"], db["memory_bytes"], db["disk_bytes"]) == (2, 128 << 20, 32 << 20)
    assert db["data_disks"] == [
        {"name": "data-0", "size": "64MiB", "size_bytes": 64 << 20, "format": "qcow2"}
    ]
    assert db["ips"] == ["192.168.91.50"]
    assert db["ready"] == {"wait_for": "none", "timeout": 300.0}
    assert rows["web-1"]["ready"] == {"wait_for": "ssh", "timeout": 120.0}
    assert rows["edge"]["ips"] == ["192.168.91.4", "dhcp"]
    assert [(n["network"], n["mode"], n["ip"]) for n in rows["edge"]["nics"]] == [
        ("lab", "nat", "192.168.91.4"),
        ("office", "bridge", "dhcp"),
    ]
    assert rows["lab"] == {
        "vm": None,
        "action": "network-create",
        "host": "local",
        "target": "lab",
        "network": {"mode": "nat", "cidr": "192.168.91.0/24"},
    }
    assert rows["base"]["image"] == {
        "source": str(image),
        "size": format_size(image.stat().st_size),
        "size_bytes": image.stat().st_size,
        "format": "qcow2",
        "prepare": None,
    }
    assert rows["remote"]["image"]["size_bytes"] is None


STEADY = """
  web: {replicas: 2, memory: MEMORY, disk: DISK}
  db: {ips: 192.168.91.50}
"""


def _steady(tmp_path: Path, image: Path, fleet: str, memory: str, disk: str) -> Path:
    path = tmp_path / "fleet.yaml"
    vms = STEADY.replace("MEMORY", memory).replace("DISK", disk)
    text = fleet_yaml(fleet, image, vms).replace("network: lab}", "network: lab, ready: none}")
    text = "\n".join(line for line in text.splitlines() if "remote" not in line)  # no pull
    path.write_text(text)
    return path


def test_up_does_what_the_plan_showed_and_list_shows_its_addresses(
    tmp_path: Path, image: Path, held: None
) -> None:
    fleet = unique_fleet("pv")
    path = _steady(tmp_path, image, fleet, "64MiB", "16MiB")
    planned = json.loads(_cli("plan", str(path), "-o", "json"))
    before = _bases()
    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        result = opened.up()
        result.raise_for_failures()
    try:
        conn = libvirt.open("test:///default")
        assert f"vmf-{fleet}.lab" in conn.listNetworks()
        conn.close()
        assert len(_bases() - before) == 1  # the image the plan said it would upload
        listed = {r["name"]: r["ip"] for r in json.loads(_cli("list", str(path), "-o", "json"))}
        shown = {r["vm"]: r["ips"] for r in planned if r["vm"]}
        expected = {"web-0": ["192.168.91.2"], "web-1": ["192.168.91.3"], "db": ["192.168.91.50"]}
        assert listed == shown == expected
        again = _cli("plan", str(path))
        assert "Plan: 0 to create, 0 to change, 0 to remove; 0 networks, 0 image uploads; " in (
            again
        )
        assert "3 unchanged, 0 not in the spec" in again

        # A change: memory growth waits for the next boot, the disk grows live.
        _steady(tmp_path, image, fleet, "128MiB", "32MiB")
        changed = " ".join(_cli("plan", str(path)).split())
        assert (
            "~ web-0 change on local memory: 64MiB -> 128MiB (next boot); "
            "disk: 16MiB -> 32MiB (live) steps: grow-disk, define" in changed
        )
        assert "Plan: 0 to create, 2 to change, 0 to remove; 0 networks" in changed
        assert changed.endswith("2 with changes pending a restart (up --restart)")
        restarted = " ".join(_cli("plan", str(path), "--restart").split())
        assert "steps: grow-disk, define, stop, start" in restarted
        assert "pending" not in restarted  # the restart applies them
    finally:
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.down()


def test_pruning_the_last_vm_shows_its_network_removed(
    tmp_path: Path, image: Path, held: None
) -> None:
    fleet = unique_fleet("pv")
    path = _steady(tmp_path, image, fleet, "64MiB", "16MiB")
    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        opened.up().raise_for_failures()
    try:
        path.write_text(path.read_text().split("vms:")[0] + "vms: {}\n")
        shown = [" ".join(line.split()) for line in _cli("plan", str(path), "--prune").splitlines()]
        assert shown[-2:] == [
            "- network lab remove on local nat 192.168.91.0/24",
            "Plan: 0 to create, 0 to change, 3 to remove; 1 network to remove, "
            "0 image uploads; 0 unchanged, 0 not in the spec",
        ]
    finally:
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.up(prune=True).raise_for_failures()


@pytest.mark.parametrize(
    ("summary", "line"),
    [
        (Summary(), "Plan: 0 to create, 0 to change, 0 to remove; 0 networks, 0 image uploads; "
         "0 unchanged, 0 not in the spec"),
        (Summary(create=3, change=1, networks_create=1, uploads=1, upload_bytes=230 << 20),
         "Plan: 3 to create, 1 to change, 0 to remove; 1 network to create, 1 image upload "
         "(230MiB); 0 unchanged, 0 not in the spec"),
        (Summary(start=1, unchanged=2, not_in_spec=1, pending=1, networks_create=1,
                 networks_remove=2, uploads=1, upload_unknown=1),
         "Plan: 0 to create, 0 to change, 0 to remove, 1 to start; 3 networks (1 to create, "
         "2 to remove), 1 image upload (1 of size known once pulled); 2 unchanged, 1 not in "
         "the spec, 1 with changes pending a restart (up --restart)"),
    ],
    ids=["nothing", "terraform-like", "starts-pending-and-unknown-sizes"],
)  # fmt: skip
def test_the_count_says_what_the_plan_does(summary: Summary, line: str) -> None:
    assert summary_line(summary) == line


def test_a_changed_image_file_is_shown_as_uploaded_again(
    tmp_path: Path, image: Path, held: None
) -> None:
    """`up` uploads a base for the file as it is now (its volume is named by its digest); the
    plan says so when a new VM needs it, though an older base of that image is there."""
    fleet = unique_fleet("pv")
    path = _steady(tmp_path, image, fleet, "64MiB", "16MiB")
    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        opened.up().raise_for_failures()
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "24M"], check=True)
        before = _bases()
        path.write_text(path.read_text().replace("replicas: 2", "replicas: 3"))
        state = folder(tmp_path / ".vmfleet")
        shown = " ".join(_cli("plan", str(path)).split())
        assert folder(tmp_path / ".vmfleet") == state  # the new digest is not cached by plan
        assert f"+ image base upload on local {format_size(image.stat().st_size)} qcow2" in shown
        assert "Plan: 1 to create, 0 to change, 0 to remove; 0 networks, 1 image upload" in shown
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.up().raise_for_failures()
        assert len(_bases() - before) == 1
        assert "0 networks, 0 image uploads; 4 unchanged" in _cli("plan", str(path))
    finally:
        with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
            opened.down()
