"""The farm's results as JUnit XML: one testsuite per cell, one testcase per phase.

A failed phase is a `<failure>`, a skipped one `<skipped>` with its reason; each phase's
stdout and stderr go in `<system-out>`/`<system-err>`, as CI servers show them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from vmfleet.engine.farm import CellResult


def document(results: Sequence[CellResult], *, name: str) -> ET.Element:
    """The `<testsuites>` element for a run named `name`."""
    root = ET.Element("testsuites", name=name)
    total = failures = skipped = 0
    for cell in results:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=cell.cell.label,
            hostname=cell.host,
            tests=str(len(cell.phases)),
            failures=str(sum(p.status == "failed" for p in cell.phases)),
            skipped=str(sum(p.status == "skipped" for p in cell.phases)),
            errors="0",
            time=f"{cell.seconds:.3f}",
        )
        for phase in cell.phases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{name}.{cell.cell.vm}",
                name=phase.phase,
                time=f"{phase.seconds:.3f}",
            )
            if phase.status == "failed":
                ET.SubElement(case, "failure", message=phase.detail[:500]).text = phase.detail
            elif phase.status == "skipped":
                ET.SubElement(case, "skipped", message=phase.detail)
            if phase.stdout:
                ET.SubElement(case, "system-out").text = phase.stdout
            if phase.stderr:
                ET.SubElement(case, "system-err").text = phase.stderr
        total += len(cell.phases)
        failures += int(suite.get("failures", "0"))
        skipped += int(suite.get("skipped", "0"))
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("skipped", str(skipped))
    return root


def write(path: Path, results: Sequence[CellResult], *, name: str) -> None:
    """Write the JUnit XML file (UTF-8, with an XML declaration)."""
    tree = ET.ElementTree(document(results, name=name))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
