"""Provisioning commands against libvirt's test driver (in-process, no daemon): what `plan`
shows, and the faults `up` refuses before it touches anything."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet.engine.context import FleetContext


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


def fleet_on_test_driver(vms: str, image: Path) -> str:
    return f"""
fleet: fast
hosts:
  local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}
images:
  base: {{source: {image}}}
defaults: {{image: base, memory: 64MiB, disk: 16MiB}}
vms:
{vms}
"""


def test_plan_lists_creations_in_json(fleet_file: Callable[[str], Path], image: Path) -> None:
    path = fleet_file(fleet_on_test_driver("  web: {replicas: 2}\n  db: {}", image))
    result = vmfleet("plan", str(path), "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["vm"], r["action"], r["host"]) for r in rows] == [
        ("web-0", "create", "local"),
        ("web-1", "create", "local"),
        ("db", "create", "local"),
        (None, "image-upload", "local"),  # a host's step: the base image, once
    ]
    assert [s["step"] for s in rows[0]["steps"]] == ["create", "start"]


def test_plan_in_colour_says_what_up_would_do(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    path = fleet_file(fleet_on_test_driver("  web: {replicas: 2}", image))
    result = vmfleet("plan", str(path))
    assert "+ web-0" in result.stdout
    assert (
        "Plan: 2 to create, 0 to change, 0 to remove; 0 networks, 1 image upload" in result.stdout
    )
    assert "0 unchanged, 0 not in the spec" in result.stdout


def test_up_refuses_a_domain_it_does_not_own(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    # libvirt's test driver starts with a domain named "test" that nobody in vmfleet owns.
    path = fleet_file(fleet_on_test_driver("  test: {}\n  other: {}", image))
    result = vmfleet("up", str(path))
    assert result.returncode == 2
    assert "a domain named 'test' already exists and belongs to nobody in vmfleet" in (
        " ".join(result.stderr.split())
    )
    assert "nothing was changed" in result.stderr


def test_up_refuses_a_missing_and_a_corrupt_image(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(corrupt), "16M"], check=True)
    with corrupt.open("r+b") as handle:  # point the L1 table far outside the file
        handle.seek(40)
        handle.write(b"\xff" * 8)
    path = fleet_file(
        f"""
fleet: fast
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
images:
  gone: {{source: {tmp_path}/missing.qcow2}}
  bad: {{source: {corrupt}}}
vms:
  a: {{image: gone}}
  b: {{image: bad}}
"""
    )
    result = vmfleet("up", str(path))
    assert result.returncode == 2
    flat = " ".join(result.stderr.split())
    assert "2 problems found before starting" in flat
    assert "missing.qcow2" in flat and "corrupt.qcow2" in flat


def test_unreachable_host_fails_before_anything(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    path = fleet_file(
        f"""
hosts:
  gone: {{uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock"}}
images: {{base: {{source: {image}}}}}
vms: {{web: {{image: base}}}}
"""
    )
    result = vmfleet("up", str(path))
    assert result.returncode == 1
    assert "gone" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_of_an_unknown_vm_is_a_usage_error(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    path = fleet_file(fleet_on_test_driver("  web: {}", image))
    result = vmfleet("down", str(path), "nosuch", "--yes")
    assert result.returncode == 2
    assert "unknown VM, template or group 'nosuch'" in result.stderr


def test_second_run_refuses_while_one_holds_the_lock(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    from vmfleet.state.store import fleet_lock

    path = fleet_file(fleet_on_test_driver("  web: {}", image))
    with fleet_lock(path.parent / ".vmfleet", what="up elsewhere"):
        result = vmfleet("up", str(path))
        waited = vmfleet("down", str(path), "--yes", "--wait", "0.5")
    assert result.returncode == 1
    assert "the fleet is busy" in result.stderr and "up elsewhere" in result.stderr
    assert waited.returncode == 1


def test_existing_network_must_exist_on_the_host(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    path = fleet_file(
        fleet_on_test_driver("  web: {network: lan}", image).replace(
            "vms:", "networks:\n  lan: {mode: existing, name: nosuchnet}\nvms:"
        )
    )
    result = vmfleet("up", str(path))
    assert result.returncode == 2
    assert "needs libvirt network 'nosuchnet'" in " ".join(result.stderr.split())


def test_host_side_clashes_are_reported_together_before_anything(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    # The test driver has domain "test" with MAC aa:bb:cc:dd:ee:ff, interface eth1 (no
    # bridge "br-gone") and network "default" on 192.168.122.0/24.
    path = fleet_file(
        fleet_on_test_driver(
            "  web: {nics: [{network: ex, mac_addresses: ['aa:bb:cc:dd:ee:ff']}]}\n"
            "  br: {nics: [{network: gone}, {network: eth}]}\n"
            "  inner: {network: own}",
            image,
        ).replace(
            "vms:",
            "networks:\n  gone: {mode: bridge, bridge: br-gone}\n"
            "  eth: {mode: bridge, bridge: eth1}\n"
            "  ex: {mode: existing, name: default}\n"
            "  own: {mode: nat, cidr: 192.168.122.128/25}\nvms:",
        )
    )
    result = vmfleet("up", str(path))
    flat = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "nothing was changed: 3 problems" in flat
    assert "web (network 'ex'): MAC aa:bb:cc:dd:ee:ff is already used by domain 'test'" in flat
    assert "bridge 'br-gone' does not exist on the host" in flat
    assert "bridge 'eth1'" not in flat  # it exists
    assert (
        "network 'own' (192.168.122.128/25) overlaps libvirt network 'default' "
        "(192.168.122.0/24)" in flat
    )
    assert "Traceback" not in flat


def test_nics_attach_to_bridges_existing_and_owned_networks(
    fleet_file: Callable[[str], Path], image: Path, tmp_path: Path
) -> None:
    from vmfleet.engine.provision import attachment_for
    from vmfleet.spec.load import load
    from vmfleet.state.store import Store

    path = fleet_file(
        fleet_on_test_driver("  web: {}", image).replace(
            "vms:",
            "networks:\n  br: {mode: bridge, bridge: br0}\n  ex: {mode: existing, name: default}\n"
            "  own: {mode: nat, cidr: 10.9.0.0/24}\nvms:",
        )
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    assert repr(attachment_for(ctx, "br")) == "BridgeAttachment(bridge='br0')"
    assert repr(attachment_for(ctx, "ex")) == "NetworkAttachment(network='default')"
    assert repr(attachment_for(ctx, "own")) == "NetworkAttachment(network='vmf-fast.own')"


def test_pool_without_room_is_refused_before_anything(
    fleet_file: Callable[[str], Path], image: Path
) -> None:
    # The test driver's pool holds 100 GiB; a 2 TiB raw data disk cannot fit.
    path = fleet_file(
        fleet_on_test_driver("  big: {data_disks: [{size: 2TiB, format: raw}]}", image)
    )
    result = vmfleet("up", str(path))
    assert result.returncode == 2
    flat = " ".join(result.stderr.split())
    assert "pool 'default-pool' has" in flat and "the plan writes at least 2.0TiB" in flat


def test_seed_carries_the_users_template_rendered_and_merged(
    fleet_file: Callable[[str], Path], image: Path, tmp_path: Path
) -> None:
    import yaml

    from vmfleet.spec.load import load
    from vmfleet.state.store import Store

    template = tmp_path / "user-data.j2"
    template.write_text(
        "#cloud-config\nwrite_files:\n  - path: /etc/role\n"
        "    content: '{{ name }} of {{ template }} ({{ labels.tier }})'\n"
        "packages: [htop]\n"
    )
    path = fleet_file(
        fleet_on_test_driver(
            "  web:\n    replicas: 2\n    labels: {tier: front}\n"
            f"    cloud_init: {{user_data: {template}, packages: [curl],"
            " apt_proxy: 'http://10.10.0.148:3142'}",
            image,
        )
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    docs = seed_documents(ctx, 1, tmp_path)
    user = yaml.safe_load(docs["user-data"])
    assert {"path": "/etc/role", "content": "web-1 of web (front)"}.items() <= (
        user["write_files"][-1].items()
    )
    assert set(user["packages"]) >= {"curl", "htop"}
    assert user["apt"]["http_proxy"] == "http://10.10.0.148:3142"
    assert yaml.safe_load(docs["meta-data"])["local-hostname"] == "web-1"
    assert ctx.ssh_public_key().split()[1] in docs["user-data"]


def test_plan_and_up_take_targets(fleet_file: Callable[[str], Path], image: Path) -> None:
    path = fleet_file(
        fleet_on_test_driver("  web: {replicas: 2}\n  db: {}", image)
        + "groups:\n  back: {members: [db]}\n"
    )
    web = vmfleet("plan", str(path), "web", "-o", "json")
    assert [r["vm"] for r in json.loads(web.stdout) if r["vm"]] == ["web-0", "web-1"], web.stderr
    back = vmfleet("plan", str(path), "back", "web@1", "-o", "json")
    assert [r["vm"] for r in json.loads(back.stdout) if r["vm"]] == ["web-1", "db"], back.stderr
    for command in ("up", "down", "start", "stop", "reboot"):
        yes = ["--yes"] if command in ("up", "down") else []
        result = vmfleet(command, str(path), "nosuch", *yes)
        assert result.returncode == 2, (command, result.stderr)
        assert "unknown VM, template or group 'nosuch'" in result.stderr, command


def seed_documents(ctx: FleetContext, index: int, tmp_path: Path) -> dict[str, str]:
    """user-data, meta-data and network-config from the seed ISO `up` would attach to the
    index-th VM."""
    import pycdlib

    from vmfleet.engine.provision.seed import seed_iso

    iso = pycdlib.PyCdlib()
    seed = tmp_path / "seed.iso"
    seed.write_bytes(seed_iso(ctx, ctx.instances()[index]))
    iso.open(str(seed))
    docs = {}
    for name in ("user-data", "meta-data", "network-config"):
        out = tmp_path / name
        iso.get_file_from_iso(str(out), joliet_path=f"/{name}")
        docs[name] = out.read_text()
    iso.close()
    return docs


def test_a_secret_file_is_read_beside_the_fleet_file_not_in_the_working_folder(
    fleet_file: Callable[[str], Path], image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from vmfleet.drivers.secrets import verify_password
    from vmfleet.spec.load import load
    from vmfleet.state.store import Store

    (tmp_path / "pw").write_text("beside-the-fleet\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pw").write_text("in-the-working-folder\n")
    path = fleet_file(fleet_on_test_driver("  web: {cloud_init: {password: {file: pw}}}", image))
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    monkeypatch.chdir(elsewhere)
    (user,) = yaml.safe_load(seed_documents(ctx, 0, tmp_path)["user-data"])["users"]
    assert verify_password("beside-the-fleet", user["hashed_passwd"])


def test_mtu_reaches_the_network_the_nic_and_the_guest(
    fleet_file: Callable[[str], Path], image: Path, tmp_path: Path
) -> None:
    import libvirt
    import yaml

    from vmfleet.engine.provision.definition import domain_config
    from vmfleet.engine.provision.networks import ensure_network
    from vmfleet.spec.load import load
    from vmfleet.state.store import Store

    path = fleet_file(
        fleet_on_test_driver("  web: {nics: [{network: br}, {network: own}]}", image).replace(
            "vms:",
            "networks:\n  br: {mode: bridge, bridge: eth1, mtu: 9000}\n"
            "  own: {mode: isolated, cidr: 10.9.0.0/24, mtu: 1400}\nvms:",
        )
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    host = ctx.host("local")
    ensure_network(ctx, host, "own")
    conn = libvirt.open("test:///default")  # the same in-process driver state
    try:
        network = ET.fromstring(conn.networkLookupByName("vmf-fast.own").XMLDesc(0))
    finally:
        conn.close()
    mtu = network.find("mtu")
    assert mtu is not None and mtu.get("size") == "1400"
    (instance,) = ctx.instances()
    domain = ET.fromstring(domain_config(ctx, instance, host, "local", ()).to_xml())
    nics = {iface.get("type"): iface.find("mtu") for iface in domain.findall("devices/interface")}
    bridge_mtu = nics["bridge"]
    assert bridge_mtu is not None and bridge_mtu.get("size") == "9000"
    assert nics["network"] is None  # a tap on the vmfleet network takes the network's MTU
    config = yaml.safe_load(seed_documents(ctx, 0, tmp_path)["network-config"])
    assert sorted(e["mtu"] for e in config["ethernets"].values()) == [1400, 9000]
