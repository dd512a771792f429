"""Start-up of the `vmfleet` command (issue 11: `--help` and a read-only command on a small
fleet in under 0.3 s): wall seconds, best and median of `BENCH_RUNS` (default 20) runs,
next to the floors measured in the same run: `python -c pass`, a one-command typer app's
`--help` (what typer and rich cost alone) and `virsh --version`.

With `BENCH_STARTUP_BEFORE=REV` (a git revision, e.g. `main`), the same commands run from
that revision's source too (exported with `git archive`, put first on PYTHONPATH),
interleaved with ours, so before and after share the machine's load.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
# A small fleet on libvirt's test driver: `list` asks a host, and nothing is created.
FLEET = """
fleet: startup
hosts: {local: {uri: "test:///default", pool: default-pool}}
defaults: {memory: 64MiB, disk: 16MiB}
vms: {web: {replicas: 3}}
"""
BARE_TYPER = """
import typer
app = typer.Typer(rich_markup_mode="rich")
@app.command()
def hello(name: str) -> None:
    '''Say hello.'''
@app.command()
def bye() -> None:
    '''Say bye.'''
app()
"""


def compare() -> list[dict[str, object]]:
    """A row per command and source tree (`checkout`, and the `BENCH_STARTUP_BEFORE`
    revision), and one per floor."""
    runs = int(os.environ.get("BENCH_RUNS", "20"))
    before = os.environ.get("BENCH_STARTUP_BEFORE")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fleet = _fleet(folder)
        commands = {
            "vmfleet --help": ["--help"],
            "vmfleet --version": ["--version"],
            "vmfleet validate (3 VMs)": ["validate", str(fleet)],
            "vmfleet list (3 VMs, test:///default)": ["list", str(fleet)],
        }
        floors = {
            "python -c pass": [PY, "-c", "pass"],
            "bare typer app --help": [PY, "-c", BARE_TYPER, "--help"],
        }
        if shutil.which("virsh"):
            floors["virsh --version"] = ["virsh", "--version"]
        trees = {"checkout": ROOT / "src"}
        if before:
            trees[before] = _export(before, folder / "before")
        cases: dict[tuple[str, str], tuple[list[str], dict[str, str]]] = {}
        for name, argv in floors.items():
            cases[(name, "")] = (argv, dict(os.environ))
        for name, args in commands.items():
            for label, src in trees.items():
                env = {**os.environ, "PYTHONPATH": str(src)}
                cases[(name, label)] = ([PY, "-m", "vmfleet.cli.main", *args], env)
        times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in cases}
        for _ in range(runs):  # interleaved: each round runs every case once
            for key, (argv, env) in cases.items():
                times[key].append(_timed(argv, env=env, cwd=folder))
    floor = statistics.median(wall for wall, _cpu in times[("python -c pass", "")])
    rows: list[dict[str, object]] = []
    for (name, label), measured in times.items():
        walls = [wall for wall, _cpu in measured]
        rows.append(
            {
                "command": name,
                "source": label or "-",
                "best_s": min(walls),
                "median_s": statistics.median(walls),
                "median_cpu_s": statistics.median(cpu for _wall, cpu in measured),
                "median_over_python": statistics.median(walls) / floor,
            }
        )
    return rows


def _fleet(folder: Path) -> Path:
    path = folder / "fleet.yaml"
    path.write_text(FLEET)
    return path


def _export(rev: str, into: Path) -> Path:
    """`rev`'s src/ folder, as a tree to put on PYTHONPATH."""
    into.mkdir()
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _timed(argv: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}\n{done.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
