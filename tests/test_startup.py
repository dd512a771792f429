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
