"""`vmfleet hosts` and `vmfleet plan --explain` through the CLI, on libvirt's test driver and
a host that does not answer: the answering host is listed in full, the other as unreachable,
and a VM that cannot be placed fails the plan with its reasons before anything changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.e2e_support import vmfleet

FLEET = """
fleet: clihosts
hosts:
  near: {uri: "test:///default", domain_type: qemu, pool: default-pool, labels: {zone: a}}
  far: {uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock", labels: {zone: b}}
defaults: {memory: 64MiB, disk: 1GiB}
vms:
  web:
    replicas: 2
    labels: {tier: web}
    affinity:
      zoneAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          labelSelector: [{matchLabels: {tier: web}}]
          topologyKey: topology.kubernetes.io/zone
"""


def test_hosts_lists_the_unreachable_one_without_the_others_failing(
    fleet_file: Callable[[str], Path],
) -> None:
    result = vmfleet("hosts", str(fleet_file(FLEET)), "-o", "json")
    assert result.returncode == 1
    rows = {r["host"]: r for r in json.loads(result.stdout)}
    assert rows["near"]["reachable"] and rows["near"]["status"] == "ready"
    assert rows["near"]["limit"]["memory"] > 0 and rows["near"]["fleet_vms"] == 0
    assert rows["far"]["status"] == "unreachable" and "/nonexistent" in rows["far"]["error"]


def test_a_replica_without_a_zone_fails_the_plan_and_explain_says_why(
    fleet_file: Callable[[str], Path],
) -> None:
    path = fleet_file(FLEET)
    plan = vmfleet("plan", str(path))
    assert plan.returncode == 1
    assert "1 VM cannot be placed" in plan.stderr and "web-1" in plan.stderr
    assert "anti-affinity: a VM matching tier=web per zone is in zone a" in plan.stderr
    explained = json.loads(vmfleet("plan", str(path), "--explain", "web-0", "-o", "json").stdout)
    verdicts = {h["host"]: h["verdict"] for h in explained["hosts"]}
    assert verdicts == {"near": "chosen", "far": "rejected"}
    assert vmfleet("plan", str(path), "--explain", "nosuch").returncode == 2
