"""Start-up and exit of the CLI process: what `--help` imports, and that the interpreter's
shutdown is spared a garbage collection of everything imported once the work is done."""

from __future__ import annotations

import subprocess
import sys


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


def test_help_does_not_import_libvirt_asyncssh_jinja2_or_pycdlib() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vmfleet.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "vmfleet.cli.main" in imported or "typer" in imported
    assert not {"libvirt", "asyncssh", "jinja2", "pycdlib"} & imported


def test_the_lazy_packages_still_export_what_they_list() -> None:
    code = (
        "import vmfleet, vmfleet.engine as e, vmfleet.engine.provision as p\n"
        "for m in (vmfleet, e, p):\n"
        "    for name in m.__all__:\n"
        "        getattr(m, name)\n"
        "print('OK')\n"
    )
    assert _python(code).stdout.strip() == "OK"
