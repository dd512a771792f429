"""Pacemaker's own tools on CIB files, without a running cluster.

`simulate` runs the real scheduler (`crm_simulate --simulate`) on a CIB and reads the result
back through `crm_mon --output-as=xml` (CIB_file), parsed by vmfleet's own parser. DRBD is
simulated as UpToDate on every node: each node carries the promotion score (`master-<id>`)
the linbit agent would set, since the kernel module is not there to set it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmfleet.drivers.pacemaker import ClusterStatus, parse_status

DRBD_PROMOTION_SCORE = "10000"


def require_tools() -> None:
    """Skip (with the reason) when Pacemaker's CLI is missing; `scripts/setup-host.sh --ha`
    installs it."""
    missing = [t for t in ("crm_simulate", "crm_mon", "cibadmin") if shutil.which(t) is None]
    if missing:
        pytest.skip(
            f"Pacemaker tools missing ({', '.join(missing)}): run scripts/setup-host.sh --ha"
        )


def with_online_nodes(root: ET.Element, nodes: list[str]) -> ET.Element:
    """The CIB with quorum and every node online, DRBD promotable everywhere."""
    root = ET.fromstring(ET.tostring(root))
    root.set("have-quorum", "1")
    status = root.find("status")
    assert status is not None
    drbd = [p.get("id", "") for p in root.iter("primitive") if p.get("type") == "drbd"]
    for n, node in enumerate(nodes, start=1):
        state = ET.SubElement(
            status,
            "node_state",
            {"id": str(n), "uname": node, "in_ccm": "true", "crmd": "online",
             "join": "member", "expected": "member"},
        )  # fmt: skip
        attrs = ET.SubElement(
            ET.SubElement(state, "transient_attributes", {"id": str(n)}),
            "instance_attributes",
            {"id": f"status-{n}"},
        )
        for rid in drbd:
            ET.SubElement(
                attrs,
                "nvpair",
                {"id": f"status-{n}-master-{rid}", "name": f"master-{rid}",
                 "value": DRBD_PROMOTION_SCORE},
            )  # fmt: skip
    return root


def simulate(cib: Path, out: Path, *extra: str) -> ClusterStatus:
    """One scheduler run with its transition executed; the resulting CIB goes to `out`."""
    subprocess.run(
        ["crm_simulate", "--xml-file", str(cib), "--simulate", "--save-output", str(out), *extra],
        check=True,
        capture_output=True,
    )
    return status_of(out)


def status_of(cib: Path) -> ClusterStatus:
    mon = subprocess.run(
        ["crm_mon", "--output-as=xml", "--one-shot", "--inactive"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "CIB_file": str(cib)},
    )
    return parse_status(mon.stdout)
