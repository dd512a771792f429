"""Shell completion (bash, zsh, fish: `vmfleet --install-completion`): commands and options
from typer, and VM, template, group and host names read from the fleet file.

The fleet file is found as for any command (`-f`, $VMFLEET_FILE, vmfleet.yaml upward), so
the words being completed are rewritten the same way before click completes them.
"""

from __future__ import annotations

import shlex
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import typer

from vmfleet.cli import fleetfile

COMPLETE_VAR = "_VMFLEET_COMPLETE"


def names(ctx: typer.Context, incomplete: str) -> list[str]:
    """VM names, templates, groups and hosts of the fleet that start with `incomplete`
    (nothing when the file cannot be read: completion never prints an error)."""
    from vmfleet.spec.load import load

    file = ctx.params.get("file")
    try:
        loaded = load(str(file)) if file else None
    except Exception:  # a half-written file completes to nothing
        return []
    if loaded is None:
        return []
    from vmfleet.core.expand import expand

    spec = loaded.spec
    found = [i.name for i in expand(spec, fleet=loaded.name)]
    found += [*spec.vms, *spec.groups, *spec.hosts]
    return sorted({n for n in found if n.startswith(incomplete)})


def prepare(env: MutableMapping[str, str], root: Any, *, cwd: Path) -> None:
    """When the shell asks for completions, put the fleet file where the command expects it
    in the words typer completes, as `fleetfile.rewrite` does for a run: bash passes
    COMP_WORDS and COMP_CWORD; zsh, fish and PowerShell the line in _TYPER_COMPLETE_ARGS."""
    if not env.get(COMPLETE_VAR):
        return
    bash = "COMP_WORDS" in env and "COMP_CWORD" in env
    line = env["COMP_WORDS"] if bash else env.get("_TYPER_COMPLETE_ARGS", "")
    try:
        words = shlex.split(line)
    except ValueError:
        return
    if bash:
        cword = int(env["COMP_CWORD"])
        done, rest = words[1:cword], words[cword:]
    elif words[1:] and not line.endswith(" "):
        done, rest = words[1:-1], words[-1:]
    else:
        done, rest = words[1:], []
    try:
        rewritten = fleetfile.rewrite(done, root, env=env, cwd=cwd)
    except fleetfile.ArgvError:
        return
    if rewritten == done:
        return
    joined = shlex.join([words[0] if words else "vmfleet", *rewritten, *rest])
    if bash:
        env["COMP_WORDS"] = joined
        env["COMP_CWORD"] = str(1 + len(rewritten))
    else:
        env["_TYPER_COMPLETE_ARGS"] = joined + ("" if rest else " ")
