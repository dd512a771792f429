"""Start-up and exit of the CLI process: what `--help`, `--version` and completing a command
name import (module sets, never wall time: timing is `python -m bench startup`), and that the
interpreter's shutdown is spared a garbage collection of everything imported once the work is
done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )


def test_the_cli_freezes_the_heap_before_the_interpreter_shuts_down() -> None:
    code = (
        "import gc, sys\n"
        "from vmfleet.cli.main import run\n"
        "sys.argv = ['vmfleet', '--help']\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('FROZEN', gc.get_freeze_count())\n"
    )
    out = _python(code).stdout
    frozen = int(out.rsplit("FROZEN", 1)[1])
    assert frozen > 10_000


# What no command needs before it reads a fleet: the API and the engine under it, the spec
# models (pydantic), YAML, and the outside systems' libraries.
HEAVY = frozenset(
    {
        "vmfleet.api",
        "vmfleet.engine",
        "vmfleet.state",
        "vmfleet.spec.models",
        "vmfleet.core.plan",
        "pydantic",
        "yaml",
        "libvirt",
        "asyncssh",
        "jinja2",
        "pycdlib",
        "cryptography",
    }
)


def _imported(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules `vmfleet ARGS` imports (python -X importtime), after it exited 0."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vmfleet.cli.main", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line}


def test_help_and_version_import_no_api_engine_spec_models_or_outside_libraries() -> None:
    imported = _imported("--help")
    assert "vmfleet.cli.lifecycle" in imported  # every command is registered
    assert not HEAVY & imported
    assert not (HEAVY | {"typer.rich_utils", "markdown_it"}) & _imported("--version")


# Once a (sub)command's parameters are parsed, typer itself converts them through pydantic.
@pytest.mark.parametrize("args", [["snapshot", "create", "--help"], ["cluster", "--help"]])
def test_a_command_s_help_imports_nothing_heavy_of_its_own(args: list[str]) -> None:
    assert not (HEAVY - {"pydantic"}) & _imported(*args)


def test_completing_a_command_name_imports_nothing_heavy_of_its_own() -> None:
    env = {"_VMFLEET_COMPLETE": "complete_bash", "COMP_WORDS": "vmfleet sta", "COMP_CWORD": "1"}
    assert not (HEAVY - {"pydantic"}) & _imported(env=env)


# What reading a small fleet needs neither: SSH (asyncio, asyncssh, host keys), seed ISOs, the
# web stack, and the rooms of the engine that make or remove VMs.
NOT_FOR_READING = frozenset(
    {
        "asyncio",
        "asyncssh",
        "cryptography",
        "pycdlib",
        "fastapi",
        "uvicorn",
        "vmfleet.engine.provision.create_vm",
        "vmfleet.spec.importers.farm_tasks",  # Jinja2, for ansible_farm platform files only
        "vmfleet.engine.provision.readiness",
        "vmfleet.engine.provision.remove_vm",
    }
)


@pytest.mark.parametrize("command", ["validate", "list"])
def test_reading_a_fleet_imports_no_ssh_seed_or_web_stack(tmp_path: Path, command: str) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        'hosts: {local: {uri: "test:///default", pool: default-pool}}\n'
        "defaults: {memory: 64MiB, disk: 16MiB}\nvms: {web: {replicas: 3}}\n"
    )
    imported = _imported(command, str(fleet))
    assert "vmfleet.spec.models" in imported
    assert not NOT_FOR_READING & imported
    assert ("libvirt" in imported) is (command == "list")


# What `validate` checks needs the spec, expansion and the offline checks, not the rooms that
# plan, place, build XML, keep state or talk to clusters (each `Fleet` method loads its own).
NOT_FOR_VALIDATE = frozenset(
    {
        "libvirt",
        "vmfleet.core.placement",
        "vmfleet.drivers.domainxml",
        "vmfleet.engine.apply",
        "vmfleet.engine.ha",
        "vmfleet.engine.migrate",
        "vmfleet.engine.snapshots",
        "vmfleet.state.store",
    }
)


def test_validate_loads_no_engine_room_it_does_not_use(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        'hosts: {local: {uri: "test:///default", pool: default-pool}}\n'
        "defaults: {memory: 64MiB, disk: 16MiB}\nvms: {web: {replicas: 3}}\n"
    )
    imported = _imported("validate", str(fleet))
    assert "vmfleet.spec.models" in imported
    assert not NOT_FOR_VALIDATE & imported


def test_the_lazy_packages_still_export_what_they_list() -> None:
    code = (
        "import vmfleet, vmfleet.api as a, vmfleet.engine as e, vmfleet.engine.provision as p\n"
        "for m in (vmfleet, a, e, p):\n"
        "    for name in m.__all__:\n"
        "        getattr(m, name)\n"
        "print('OK')\n"
    )
    assert _python(code).stdout.strip() == "OK"


@pytest.mark.parametrize(
    "package", ["vmfleet", "vmfleet.api", "vmfleet.engine", "vmfleet.engine.provision"]
)
def test_no_lazy_name_is_also_a_submodule_name(package: str) -> None:
    """Importing a submodule binds its name on the package, so a lazily exported function of
    the same name (`provision.create` from `provision/create.py`) was, for a moment while
    another thread imported it, the module: `'module' object is not callable` in a parallel
    `up`. Lazy names and submodule names stay apart."""
    import importlib
    import pkgutil

    module = importlib.import_module(package)
    submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
    lazy = {  # names bound to something in a module (not to the submodule itself)
        name
        for name, target in vars(module)["_LAZY"].items()
        if isinstance(target, str) or target[1] is not None
    }
    assert not lazy & submodules
