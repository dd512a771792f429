"""A farm on real Debian guests: the cell's phases run over SSH in the guest (`main` prints
`uname -m`), and a second run at the same revision reverts to the `init` snapshot, skips
`dependencies` and still finds what dependencies left in the guest; a phase that fails in it
fails the cell and shows as the failed testcase in JUnit, with its output. Timings are printed for
docs/benchmarks.md (cold vs cached)."""

from __future__ import annotations

import json
from pathlib import Path

import junitparser
import pytest
from tests.e2e_support import (
    debian_fleet_head,
    leftovers,
    login_key,
    timed_farm_run,
    unique_fleet,
    vmfleet,
)

pytestmark = pytest.mark.e2e


def test_debian_cell_runs_phases_and_a_second_run_restores_init(tmp_path: Path) -> None:
    fleet = unique_fleet("farm")
    key = login_key(tmp_path)
    phases = tmp_path / "phases"
    (phases / "common").mkdir(parents=True)
    (phases / "debian").mkdir()
    (phases / "debian" / "dependencies.sh").write_text(
        "set -e\nsleep 20\necho installed > /tmp/deps-done\n"
    )
    (phases / "common" / "main.sh").write_text("set -e\ncat /tmp/deps-done\nuname -m\n")
    path = tmp_path / "fleet.yaml"
    path.write_text(
        debian_fleet_head(fleet, key).replace("domain_type: qemu", "domain_type: auto")
        + f"""
networks: {{fwd: {{mode: user}}}}
defaults: {{memory: 512MiB, disk: 3GiB, network: fwd}}
farm:
  project: {{id: {fleet}, revision: 1}}
  platforms: {{debian: {{image: debian}}}}
  matrix: {{targets: [amd64], platforms: [debian]}}
"""
    )
    f = str(path)
    junit = tmp_path / "junit.xml"
    try:
        cold, cold_s = timed_farm_run(path, "--junit", str(junit))
        assert cold.returncode == 0, cold.stderr
        (cell,) = json.loads(cold.stdout)["cells"]
        phases_run = {p["phase"]: p for p in cell["phase_results"]}
        assert phases_run["dependencies"]["status"] == "passed"
        main_log = Path(phases_run["main"]["log"]).read_text()
        assert "installed\nx86_64" in main_log
        suite = next(iter(junitparser.JUnitXml.fromfile(str(junit))))
        assert {c.name: c.is_passed for c in suite}["main"]

        # the second run also has a phase that fails: the cell fails, JUnit says which phase
        (phases / "common" / "terminate.sh").write_text(
            "echo tearing down\necho boom >&2\nexit 3\n"
        )
        cached, cached_s = timed_farm_run(path, "--junit", str(junit))
        assert cached.returncode == 1, cached.stderr
        (cell,) = json.loads(cached.stdout)["cells"]
        again = {p["phase"]: p for p in cell["phase_results"]}
        assert again["restore init"]["status"] == "passed"
        assert again["dependencies"]["status"] == "skipped"
        assert "restored from the init snapshot" in Path(again["dependencies"]["log"]).read_text()
        assert "installed\nx86_64" in Path(again["main"]["log"]).read_text()
        assert (cell["outcome"], again["terminate"]["status"]) == ("failed in terminate", "failed")
        assert "boom" in Path(again["terminate"]["log"]).read_text()
        cases = {c.name: c for c in next(iter(junitparser.JUnitXml.fromfile(str(junit))))}
        assert cases["main"].is_passed and not cases["terminate"].is_passed
        failed = cases["terminate"]
        assert failed.result and "boom" in (failed.system_err or "") + (failed.system_out or "")
        print(f"\nfarm benchmark: cold {cold_s:.1f} s, cached {cached_s:.1f} s")
        print("cold phases:", {k: v["seconds"] for k, v in phases_run.items()})
        print("cached phases:", {k: v["seconds"] for k, v in again.items()})
        assert cached_s < cold_s
    finally:
        vmfleet("farm", "clean", f)
    assert leftovers(f"{fleet}-farm") == []
