"""Rendering for every listing: rich tables for people, JSON and YAML for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


console = Console()
err_console = Console(stderr=True)


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
        return
    if fmt is OutputFormat.yaml:
        sys.stdout.write(yaml.safe_dump(payload, sort_keys=False, default_flow_style=False))
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for _key, header in columns:
        table.add_column(header, overflow="fold")
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
