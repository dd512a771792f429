"""What tells an ansible_farm platform task file, kept apart from its reader (`farm_tasks`,
which needs Jinja2): every fleet load asks, only a farm with platform files reads one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FsPath
from typing import Any

from vmfleet.spec.source import Document

MAX_IMPORT_DEPTH = 16

Reader = Callable[[FsPath], list[Document]]


def looks_like(data: Any) -> bool:
    """An Ansible task list that sets a `vm` fact or imports tasks (the platform files)."""
    return isinstance(data, list) and bool(data) and _defines(data, 0)


def _defines(tasks: list[Any], depth: int) -> bool:
    if depth > MAX_IMPORT_DEPTH or not all(isinstance(t, dict) for t in tasks):
        return False
    for task in tasks:
        fact = task.get("set_fact")
        if "import_tasks" in task or (isinstance(fact, dict) and "vm" in fact):
            return True
        if isinstance(task.get("block"), list) and _defines(task["block"], depth + 1):
            return True
    return False
