"""`vmfleet cluster export --format pcs` is the same configuration as `--format cib`: the
commands, run with `pcs -f` on an empty CIB file, give the same resources, attributes,
operations, constraints, node utilization and options. (DRBD clones are left out here:
`pcs resource promotable` insists on the installed ocf:linbit:drbd agent's metadata.)"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.cib import require_tools

# pcs takes seconds per command: about 90 s for this file, too slow for the fast suite
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
FLEET = """
fleet: p
hosts:
  n1: {capacity: {cpus: 4, memory: 4GiB}}
  n2: {capacity: {cpus: 4, memory: 4GiB}}
clusters:
  c:
    nodes: [n1, n2]
    fencing: {agent: fence_lab, params: {ipaddr: 127.0.0.1}}
    storage: {type: shared, path: /srv/vm}
    migrate_options: --unsafe
defaults: {ha: c, nics: [], memory: 256MiB, disk: 1GiB, labels: {app: x}}
vms:
  a: {node_preference: [n1, n2], ha: {cluster: c, force_stop: true}}
  b:
    replicas: 2
    labels: {app: y}
    affinity:
      vmAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution: {labelSelector: [{matchLabels: {app: y}}]}
        preferredDuringSchedulingIgnoredDuringExecution: {labelSelector: [{matchLabels: {app: x}}]}
"""


def summary(path: Path) -> dict[str, Any]:
    config = ET.parse(path).getroot().find("configuration")
    assert config is not None

    def pairs(element: ET.Element, where: str) -> list[tuple[str | None, str | None]]:
        return sorted((n.get("name"), n.get("value")) for n in element.iterfind(f"{where}/nvpair"))

    out: dict[str, Any] = {}
    for p in config.iter("primitive"):
        monitors = sorted(
            (o.get("interval") or "", o.get("role") or "")
            for o in p.iter("op")
            if o.get("name") == "monitor"
        )
        out[p.get("id", "")] = (
            p.get("class"), p.get("provider"), p.get("type"),
            pairs(p, "instance_attributes"), pairs(p, "meta_attributes"),
            pairs(p, "utilization"), monitors,
        )  # fmt: skip
    for c in config.iterfind("constraints/*"):
        out[c.get("id", "")] = {k: v for k, v in c.attrib.items() if k != "id"}
    for n in config.iterfind("nodes/node"):
        out[f"node {n.get('uname')}"] = pairs(n, "utilization")
    out["options"] = sorted(
        (n.get("name"), n.get("value"))
        for n in config.iter("nvpair")
        if n.get("name") in ("stonith-enabled", "placement-strategy", "resource-stickiness")
    )
    return out


def test_pcs_commands_build_the_exported_cib(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    require_tools()
    if shutil.which("pcs") is None:
        pytest.skip("pcs is not installed (apt-get install pcs)")
    fleet = fleet_file(FLEET)
    vmfleet = str(ROOT / ".venv/bin/vmfleet")
    ours = tmp_path / "ours.xml"
    exported = subprocess.run(
        [vmfleet, "cluster", "export", str(fleet)], capture_output=True, text=True, check=True
    )
    ours.write_text(exported.stdout)
    commands = subprocess.run(
        [vmfleet, "cluster", "export", str(fleet), "--format", "pcs"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    empty = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True)
    cib = tmp_path / "pcs.xml"
    cib.write_text(
        empty.stdout.replace(
            "<nodes/>", '<nodes><node id="1" uname="n1"/><node id="2" uname="n2"/></nodes>'
        )
    )
    for line in commands.splitlines():
        if line.startswith("#"):
            continue
        argv = shlex.split(line)
        done = subprocess.run(["pcs", "-f", str(cib), *argv[1:]], capture_output=True, text=True)
        if done.returncode != 0 and "--force" in done.stderr:  # agents not installed here
            done = subprocess.run(
                ["pcs", "-f", str(cib), *argv[1:], "--force"], capture_output=True, text=True
            )
        assert done.returncode == 0, f"{line}: {done.stderr}"
    assert summary(cib) == summary(ours)
