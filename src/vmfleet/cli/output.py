"""Rendering for every listing: rich tables for people, JSON and YAML for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


# Piped output is not cut to 80 columns: scripts and logs get whole rows.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


_written: list[OutputFormat] = []  # the JSON documents this process has printed


def document_written() -> bool:
    """True once a command printed its JSON document: an error after that (some VMs or
    cells failed) goes to stderr as text, so stdout stays one document."""
    return bool(_written)


def emit(
    rows: Sequence[dict[str, Any]],
    *,
    fmt: OutputFormat,
    columns: Sequence[tuple[str, str]],
    title: str | None = None,
    data: Any = None,
) -> None:
    """Print rows as a table (columns: (key, header)), or `data` (default: rows) as JSON/YAML."""
    payload = rows if data is None else data
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        _written.append(fmt)
        return
    if fmt is OutputFormat.yaml:
        import yaml  # not loaded by commands that never print YAML (--help, --version)

        sys.stdout.write(yaml.safe_dump(payload, sort_keys=False, default_flow_style=False))
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for n, (_key, header) in enumerate(columns):
        last = n == len(columns) - 1
        table.add_column(header, no_wrap=not last, overflow="fold" if last else "ellipsis")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _h in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
