"""`vmfleet validate` run in this process, as the console script runs it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

from vmfleet.cli import main

# file:line:column at the start of a problem line, as SpecError renders each problem.
POSITION = re.compile(r"^  \S.*:\d+:\d+: ", re.MULTILINE)


def run_validate(path: Path) -> tuple[int, str]:
    """(exit code, error text) of `vmfleet validate -o json PATH`; any other exception escapes.

    With `-o json` an error is a JSON object on stdout: its message (the text stderr would
    show) is appended to stderr's warnings."""
    err, out = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["vmfleet", "validate", "-o", "json", str(path)]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main.run()
    except SystemExit as stop:
        code = stop.code
    finally:
        sys.argv = argv
    text = err.getvalue()
    if out.getvalue().startswith('{\n  "error"'):
        text += json.loads(out.getvalue())["error"]["message"]
    return (code if isinstance(code, int) else 1), text
