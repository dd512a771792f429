"""Which fleet a command works on: `-f FILE` (repeatable), else `$VMFLEET_FILE`, else the
first `vmfleet.yaml`/`fleet.yaml` in the current folder or its parents (as Vagrant and
Terraform find theirs). The positional FILE keeps working.

Commands take targets after FILE, so the rule for the first positional argument is: it is
the fleet file when it contains a `.` or a `/` (`fleet.yaml`, `manifests/`, `.`), which no
VM, template or group name can. The arguments are rewritten before typer parses them, so
every command that takes a fleet file (those of other modules too) gets this for free.
Commands are read duck-typed (`commands`, `params`): typer carries its own copy of click.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ENV = "VMFLEET_FILE"
DEFAULT_NAMES = ("vmfleet.yaml", "vmfleet.yml", "fleet.yaml", "fleet.yml")
FILE_FLAGS = ("-f", "--file")
# Commands whose positional arguments are local paths: their fleet file is never positional.
NO_POSITIONAL_FILE = frozenset({"scp"})


class ArgvError(Exception):
    """The command line names the fleet file wrongly, or none was named and none found."""


def looks_like_file(arg: str) -> bool:
    """A positional argument names the fleet file, not a target (names hold no `.` or `/`)."""
    return "." in arg or "/" in arg


def find_default(start: Path) -> Path | None:
    """The first default-named fleet file in `start` or one of its parents."""
    for folder in (start, *start.parents):
        for name in DEFAULT_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def rewrite(args: Sequence[str], root: Any, *, env: Mapping[str, str], cwd: Path) -> list[str]:
    """`args` with every `-f FILE` taken out and the fleet (files joined by os.pathsep) put
    where the command expects its positional FILE. Unchanged for commands without one."""
    words, leaf = _command_path(args, root)
    if leaf is None or not _takes_file(leaf):
        return list(args)
    head, rest = list(args[:words]), list(args[words:])
    head, files_before = _strip_files(head)
    rest, files_after = _strip_files(rest)
    files = files_before + files_after
    given = None if leaf.name in NO_POSITIONAL_FILE else _first_positional(rest, leaf)
    if given is not None and looks_like_file(given):
        if files:
            raise ArgvError(f"the fleet file is given twice: {given} and -f")
        return head + rest
    if not files and ENV in env and env[ENV]:
        files = [env[ENV]]
    if not files:
        found = find_default(cwd)
        if found is None:
            if "--help" in rest:
                return head + rest
            raise ArgvError(
                "no fleet file: give -f FILE, set VMFLEET_FILE, or create vmfleet.yaml "
                "here or in a parent folder (vmfleet init writes one)"
            )
        files = [str(found)]
    return [*head, os.pathsep.join(files), *rest]


def _command_path(args: Sequence[str], root: Any) -> tuple[int, Any]:
    """(how many leading arguments lead to the command, the command) or (0, None)."""
    command = root
    i = 0
    while hasattr(command, "commands"):
        while i < len(args) and args[i].startswith("-"):
            i += 2 if args[i] in FILE_FLAGS else 1
        if i >= len(args):
            return 0, None
        sub = command.commands.get(args[i])
        if sub is None:
            return 0, None
        command, i = sub, i + 1
    return i, command


def _takes_file(command: Any) -> bool:
    first = next((p for p in command.params if p.param_type_name == "argument"), None)
    return first is not None and first.name == "file"


def _strip_files(args: list[str]) -> tuple[list[str], list[str]]:
    """(args without `-f X`/`--file X`/`--file=X`, the X's); nothing after `--` is touched."""
    kept: list[str] = []
    files: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept += args[i:]
            break
        if arg in FILE_FLAGS:
            if i + 1 >= len(args):
                raise ArgvError(f"{arg} needs a file or folder")
            files.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--file="):
            files.append(arg.removeprefix("--file="))
        else:
            kept.append(arg)
        i += 1
    return kept, files


def _first_positional(args: list[str], command: Any) -> str | None:
    """The first argument that is not an option or an option's value."""
    takes_value = {
        name
        for p in command.params
        if p.param_type_name == "option" and not p.is_flag and not p.count
        for name in p.opts
    }
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("-") and arg != "-":
            i += 2 if arg in takes_value else 1
            continue
        return arg
    return None


def wants_json(args: Sequence[str]) -> bool:
    """The command line asks for JSON output (`-o json`, `--output json`, `--output=json`)."""
    for i, arg in enumerate(args):
        if arg == "--":
            return False
        if arg in ("-o", "--output") and i + 1 < len(args) and args[i + 1].lower() == "json":
            return True
        if arg.lower() in ("-ojson", "--output=json"):
            return True
    return False
