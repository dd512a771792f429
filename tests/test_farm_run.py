"""`Fleet.farm_run` on libvirt's test driver: cells become VMs of `<fleet>-farm`, phases run
from the lookup folders over SSH (the command runner seam answers `ssh` like a guest would),
a failing phase fails its cell and the JUnit file says so, and a second run at the same
revision restores the `init` snapshot and skips `dependencies`."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import junitparser
import pytest
import yaml
from tests.e2e_support import unique_fleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.api.farm import FarmRun
from vmfleet.drivers.commands import CommandResult, SubprocessRunner
from vmfleet.drivers.libvirt import ShutdownResult


@dataclass
class GuestShell:
    """The runner seam: `ssh … sh -s` answers as a guest of the VM's arch would (a script
    containing `exit N` exits N), `ansible-playbook` is recorded and succeeds; everything
    else (qemu-img) runs for real."""

    scripts: list[tuple[str, bytes]] = field(default_factory=list)
    playbooks: list[tuple[str, ...]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if argv[0] == "ansible-playbook":
            self.playbooks.append(tuple(argv))
            return CommandResult(tuple(argv), 0, b"PLAY RECAP ok=1\n", b"")
        if argv[0] != "ssh":
            return SubprocessRunner().run(argv, input=input, timeout=timeout, check=check, env=env)
        script = input or b""
        self.scripts.append((argv[-3], script))
        code = int(script.split(b"exit ")[1].split()[0]) if b"exit " in script else 0
        out = b"aarch64\n" if b"uname -m" in script else b""
        return CommandResult(tuple(argv), code, out, b"boom\n" if code else b"")


@pytest.fixture
def farm_file(tmp_path: Path) -> Path:
    image = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    (tmp_path / "phases" / "common").mkdir(parents=True)
    (tmp_path / "phases" / "deb").mkdir()
    (tmp_path / "phases" / "common" / "main.sh").write_text("uname -m\n")
    (tmp_path / "phases" / "deb" / "dependencies.sh").write_text("echo installing\n")
    (tmp_path / "phases" / "alp_amd64").mkdir()
    (tmp_path / "phases" / "alp_amd64" / "main.sh").write_text("echo broken; exit 3\n")
    path = tmp_path / "fleet.yaml"
    project = unique_fleet("p")
    path.write_text(
        f"fleet: {unique_fleet('farm')}\n"
        'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
        f"images: {{base: {{source: {image}}}}}\n"
        "networks: {net: {mode: user}}\n"
        "defaults: {memory: 64MiB, disk: 16MiB, network: net}\n"
        "farm:\n"
        f"  project: {{id: {project}, revision: 1}}\n"
        "  platforms: {deb: {image: base}, alp: {image: base}}\n"
        "  targets: {amd64: {arch: x86_64}}\n"
        "  matrix: {targets: [amd64], platforms: [deb], list: [{platform: alp, target: amd64}]}\n"
    )
    return path


def open_fleet(path: Path, shell: GuestShell) -> Fleet:
    return Fleet.open(path, state=path.parent / "state", hosts=TestDriverHost.factory, runner=shell)


DEB, ALP = "deb/amd64", "alp/amd64"
pytestmark = pytest.mark.usefixtures("test_driver_daemon")


def vm(run: FarmRun, label: str) -> str:
    return next(c.cell.vm for c in run.cells if c.cell.label == label)


def statuses(run: FarmRun, label: str) -> dict[str, str]:
    cell = next(c for c in run.cells if c.cell.label == label)
    return {p.phase: p.status for p in cell.phases}


def test_phases_run_from_the_lookup_and_a_failure_fails_only_its_cell(farm_file: Path) -> None:
    shell = GuestShell()
    with open_fleet(farm_file, shell) as fleet:
        run = fleet.farm_run(junit_path=farm_file.parent / "junit.xml")
    assert run.fleet.endswith("-farm")
    good = statuses(run, DEB)
    assert good["dependencies"] == good["main"] == good["create init"] == "passed"
    bad = statuses(run, ALP)
    assert bad["main"] == "failed" and bad["terminate"] == "skipped"
    assert bad["shutdown"] == "passed"  # the failed cell's VM is stopped, not removed
    assert not run.ok
    log = (run.logs / vm(run, ALP) / "main.log").read_text()
    assert "status: failed" in log and "boom" in log
    assert (b"uname -m\n") in [s for _, s in shell.scripts]


def test_junit_has_a_suite_per_cell_and_a_case_per_phase(farm_file: Path) -> None:
    with open_fleet(farm_file, GuestShell()) as fleet:
        fleet.farm_run(junit_path=farm_file.parent / "junit.xml")
    xml = junitparser.JUnitXml.fromfile(str(farm_file.parent / "junit.xml"))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"deb/amd64", "alp/amd64"}
    cases = {c.name: c for c in suites["alp/amd64"]}
    assert len(cases) == 10
    assert isinstance(cases["main"].result[0], junitparser.Failure)
    assert cases["main"].system_err.strip() == "boom"
    assert isinstance(cases["init"].result[0], junitparser.Skipped)
    assert isinstance(cases["terminate"].result[0], junitparser.Skipped)
    ok = {c.name: c for c in suites["deb/amd64"]}
    assert ok["main"].is_passed and ok["main"].system_out.strip() == "aarch64"
    assert suites["alp/amd64"].failures == 1


def test_second_run_at_same_revision_restores_init_and_skips_dependencies(
    farm_file: Path,
) -> None:
    shell = GuestShell()
    with open_fleet(farm_file, shell) as fleet:
        fleet.farm_run(["deb/amd64"])
        again = fleet.farm_run(["deb/amd64"])
        status = {s.cell.label: s for s in fleet.farm_status()}
    phases = {p.phase: p for p in again.cells[0].phases}
    assert phases["restore init"].status == "passed"
    assert phases["dependencies"].status == "skipped"
    assert phases["dependencies"].detail == "restored from the init snapshot"
    assert (
        "restored from the init snapshot"
        in (again.logs / vm(again, DEB) / "dependencies.log").read_text()
    )
    assert [s for _, s in shell.scripts].count(b"echo installing\n") == 1
    assert {n.split("-")[1] for n in status[DEB].snapshots} == {"clean", "init"}
    assert all(n.endswith("-r1") for n in status[DEB].snapshots)


def test_after_a_restore_the_next_phase_waits_for_an_ssh_login(farm_file: Path) -> None:
    # A disk-only snapshot holds no RAM: after the revert the guest boots again.
    shell = GuestShell()
    with open_fleet(farm_file, shell) as fleet:
        fleet.farm_run(["deb/amd64"])
        first = len(shell.scripts)
        again = fleet.farm_run(["deb/amd64"])
    assert {p.phase: p.status for p in again.cells[0].phases}["restore init"] == "passed"
    assert [s for _, s in shell.scripts[first:]] == [b"true\n", b"uname -m\n"]


def test_a_new_revision_does_not_restore_and_clean_stale_removes_old_snapshots(
    farm_file: Path,
) -> None:
    with open_fleet(farm_file, GuestShell()) as fleet:
        fleet.farm_run(["deb/amd64"])
    farm_file.write_text(farm_file.read_text().replace("revision: 1", "revision: 2"))
    with open_fleet(farm_file, GuestShell()) as fleet:
        run = fleet.farm_run(["deb/amd64"])
        assert statuses(run, DEB)["dependencies"] == "passed"
        removed = sorted(fleet.farm_clean(stale=True))
        assert [r.split("/")[1].split("-")[1] for r in removed] == ["clean", "init"]
        assert all(r.endswith("-r1") for r in removed)
        assert fleet.farm_clean() == (vm(run, DEB),)
        assert fleet.farm_status()[0].state == "absent"


def test_keep_failed_leaves_the_failed_cells_vm_running(farm_file: Path) -> None:
    with open_fleet(farm_file, GuestShell()) as fleet:
        run = fleet.farm_run([ALP], keep_failed=True)
        assert statuses(run, ALP)["shutdown"] == "skipped"
        (status,) = [s for s in fleet.farm_status() if s.cell.label == ALP]
    assert status.state == "running"


@dataclass
class CountingShell(GuestShell):
    """A guest shell that notes how many phase scripts run at the same moment."""

    active: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if argv[0] != "ssh":
            return super().run(argv, input=input, timeout=timeout, check=check, env=env)
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        try:
            return super().run(argv, input=input, timeout=timeout, check=check, env=env)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("per_host", [1, 2])
def test_cells_on_one_host_run_at_most_per_host_at_once(farm_file: Path, per_host: int) -> None:
    farm_file.write_text(farm_file.read_text() + f"  per_host: {per_host}\n")
    shell = CountingShell()
    with open_fleet(farm_file, shell) as fleet:
        fleet.farm_run(jobs=4)
    assert 1 <= shell.most <= per_host


def test_a_playbook_phase_runs_ansible_playbook_against_the_farm_inventory(
    farm_file: Path,
) -> None:
    playbook = farm_file.parent / "phases" / "deb" / "init.yaml"
    playbook.write_text("- hosts: all\n  tasks: [{ping: {}}]\n")
    shell = GuestShell()
    with open_fleet(farm_file, shell) as fleet:
        run = fleet.farm_run([DEB])
    assert statuses(run, DEB)["init"] == "passed"
    ((_, _, inventory, _, limit, path),) = shell.playbooks
    assert (limit, path) == (vm(run, DEB), str(playbook))
    hosts = yaml.safe_load(Path(inventory).read_text())["all"]["hosts"]
    assert hosts[vm(run, DEB)]["ansible_host"] == "127.0.0.1"


class SlowShutdownHost(TestDriverHost):
    """A host whose guests take a while to power off; it notes when each shutdown ran."""

    __test__ = False
    spans: list[tuple[float, float]] = []

    def shutdown(self, name: str, *, timeout: float, force_after: bool = True) -> ShutdownResult:
        started = time.monotonic()
        time.sleep(1.0)
        try:
            return super().shutdown(name, timeout=timeout, force_after=force_after)
        finally:
            SlowShutdownHost.spans.append((started, time.monotonic()))


def test_a_cell_waiting_for_its_vm_to_power_off_does_not_hold_up_the_others(
    farm_file: Path,
) -> None:
    SlowShutdownHost.spans = []
    with Fleet.open(
        farm_file,
        state=farm_file.parent / "state",
        hosts=SlowShutdownHost.factory,
        runner=GuestShell(),
    ) as fleet:
        run = fleet.farm_run(jobs=2)
    assert statuses(run, DEB)["shutdown"] == statuses(run, ALP)["shutdown"] == "passed"
    (a_start, a_end), (b_start, b_end) = SlowShutdownHost.spans
    assert max(a_start, b_start) < min(a_end, b_end)  # the two shutdowns overlapped
