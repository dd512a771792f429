"""One fleet over three libvirt "hosts" on this machine (extra libvirtd daemons, each in its
own mount namespace): zone anti-affinity lands one replica per zone on real daemons; with a
host stopped, `vmfleet hosts` reports it unreachable while answering for the others, and the
plan either fails clearly (the rule cannot be met) or places the VM elsewhere (it can)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from tests.e2e_support import unique_fleet, vmfleet
from tests.support import multihost

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("multihost")]

ZONES = {"mh-a": "a", "mh-b": "b", "mh-c": "c"}


@pytest.fixture(scope="module")
def three_hosts() -> Iterator[list[multihost.Daemon]]:
    with multihost.daemons(*ZONES) as started:
        yield started


def fleet_yaml(fleet: str, daemons: list[multihost.Daemon], *, when: str) -> str:
    vms = f"""  mhweb:
    replicas: 3
    labels: {{tier: web}}
    affinity:
      zoneAntiAffinity:
        {when}DuringSchedulingIgnoredDuringExecution:
          labelSelector: [{{matchLabels: {{tier: web}}}}]
          topologyKey: topology.kubernetes.io/zone"""
    return multihost.fleet_yaml(fleet, daemons, vms, zones=ZONES, domain_type="auto", timeout="90s")


def fleet_domains(uri: str, fleet: str) -> list[str]:
    conn = libvirt.open(uri)
    try:
        return sorted(
            d.name()
            for d in conn.listAllDomains()
            if f"<vmfleet:fleet>{fleet}</vmfleet:fleet>" in d.XMLDesc(0)
        )
    finally:
        conn.close()


def test_zone_anti_affinity_and_a_host_going_down(
    tmp_path: Path, three_hosts: list[multihost.Daemon]
) -> None:
    fleet = unique_fleet("mh")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_yaml(fleet, three_hosts, when="required"))
    down_host = three_hosts[2]
    try:
        up = vmfleet("up", str(path), "-o", "json")
        assert up.returncode == 0, up.stderr + up.stdout
        listed = {
            r["name"]: r["host"]
            for r in json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        }
        assert sorted(listed) == ["mhweb-0", "mhweb-1", "mhweb-2"]
        assert sorted(ZONES[h] for h in listed.values()) == ["a", "b", "c"]
        for daemon in three_hosts:  # what the daemons themselves hold: one replica each
            assert len(fleet_domains(daemon.uri, fleet)) == 1

        shown = vmfleet("hosts", str(path), "-o", "json")
        assert shown.returncode == 0, shown.stderr
        rows = {r["host"]: r for r in json.loads(shown.stdout)}
        assert all(
            r["reachable"] and r["fleet_vms"] == 1 and r["kvm"] is False for r in rows.values()
        )
        assert "x86_64" in rows["mh-a"]["arches"]

        down_host.stop()
        lost = next(vm for vm, h in listed.items() if h == down_host.name)
        shown = vmfleet("hosts", str(path), "-o", "json")
        assert shown.returncode == 1
        rows = {r["host"]: r for r in json.loads(shown.stdout)}
        assert rows[down_host.name]["status"] == "unreachable"
        assert rows["mh-a"]["reachable"] and rows["mh-b"]["reachable"]

        # Required: only two zones are left for three replicas, so the plan fails clearly.
        refused = vmfleet("plan", str(path))
        assert refused.returncode == 1
        assert "cannot be placed" in refused.stderr and lost in refused.stderr
        assert "unreachable" in refused.stderr and "anti-affinity" in refused.stderr
        explained = vmfleet("plan", str(path), "--explain", lost, "-o", "json")
        verdicts = {h["host"]: h for h in json.loads(explained.stdout)["hosts"]}
        assert verdicts[down_host.name]["verdict"] == "rejected"
        assert "unreachable" in verdicts[down_host.name]["reasons"][0]
        assert all(v["verdict"] == "rejected" for v in verdicts.values())

        # Preferred: the replica goes to a host that is up, in a zone that already has one.
        path.write_text(fleet_yaml(fleet, three_hosts, when="preferred"))
        plan = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        creates = [r for r in plan if r["action"] == "create"]
        assert [r["vm"] for r in creates] == [lost]
        assert creates[0]["host"] in ("mh-a", "mh-b")
    finally:
        down_host.start()
        path.write_text(fleet_yaml(fleet, three_hosts, when="required"))
        removed = vmfleet("down", str(path), "--yes")
        assert removed.returncode == 0, removed.stderr
    for daemon in three_hosts:
        assert fleet_domains(daemon.uri, fleet) == []
