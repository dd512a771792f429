"""VMs resolve each other by name: on the fleet's nat/isolated networks every VM's name and
`NAME.FLEET` are DNS host entries of the libvirt network (dnsmasq answers them), added as VMs
are created and removed with them, live. On libvirt's test driver."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
from tests.e2e_support import unique_fleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import DnsHost


def _dns(network: str) -> dict[str, list[str]]:
    conn = libvirt.open("test:///default")
    root = ET.fromstring(conn.networkLookupByName(network).XMLDesc(0))
    return {
        h.get("ip", ""): [n.text or "" for n in h.findall("hostname")]
        for h in root.findall("dns/host")
    }


def test_dns_entries_follow_vms(tmp_path: Path) -> None:
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    fleet = unique_fleet("dns")
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {fleet}\n"
        'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
        f"images: {{base: {{source: {image}}}}}\n"
        "networks: {lab: {mode: nat, cidr: 10.77.0.0/24}}\n"
        "defaults: {image: base, memory: 64MiB, disk: 16MiB, network: lab}\n"
        "vms:\n  db: {ips: 10.77.0.20}\n  web: {replicas: 2}\n"
    )
    network = names.network(fleet=fleet, network="lab")
    with Fleet.open(path, hosts=TestDriverHost.factory) as opened:
        opened.up().raise_for_failures()
        entries = _dns(network)
        assert entries["10.77.0.20"] == ["db", f"db.{fleet}"]
        assert sorted(n for names in entries.values() for n in names if "." not in n) == [
            "db",
            "web-0",
            "web-1",
        ]
        opened.down(["web"]).raise_for_failures()
        assert list(_dns(network).values()) == [["db", f"db.{fleet}"]]
        opened.down(()).raise_for_failures()


def test_dns_host_xml() -> None:
    xml = DnsHost(ip="10.0.0.5", names=("db", "db.lab")).to_xml()
    assert ET.fromstring(xml).get("ip") == "10.0.0.5"
    assert [h.text for h in ET.fromstring(xml).findall("hostname")] == ["db", "db.lab"]
