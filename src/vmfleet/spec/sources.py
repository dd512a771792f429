"""Where a fleet's files are, and how several native files become one document.

A fleet can span several files or a folder, as Kubernetes users keep a VirtualMachineGroup
and its VirtualMachines apart: `-f group.yaml -f vms.yaml`, `-f manifests/`. Native files
merge section by section (`vms`, `groups`, `networks`…); a name defined twice is a problem
at its second definition. Positions keep naming the file each value came from.
"""

from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Any

from vmfleet.errors import Problem, SpecError
from vmfleet.spec.source import Document

SUFFIXES = (".yaml", ".yml")


def files(path: str | FsPath) -> list[FsPath]:
    """The files `path` names: itself, a folder's YAML files in name order, or each entry of an
    `os.pathsep`-joined list. SpecError for a folder without YAML files."""
    found: list[FsPath] = []
    for entry in str(path).split(os.pathsep):
        if not entry:
            continue
        item = FsPath(entry)
        if item.is_dir():
            inside = sorted(f for f in item.iterdir() if f.suffix in SUFFIXES and f.is_file())
            if not inside:
                raise SpecError([Problem(None, "", f"folder {item} holds no .yaml/.yml file")])
            found += inside
        else:
            found.append(item)
    if not found:
        raise SpecError([Problem(None, "", "no fleet file given")])
    return found


def merge(documents: list[Document]) -> Document:
    """One native document from several: top-level mappings merge by key; a key defined in
    two documents (or a non-mapping top-level value given twice) is a problem."""
    merged = Document(documents[0].file, {}, {})
    problems: list[Problem] = []
    for doc in documents:
        if not isinstance(doc.data, dict):
            problems.append(doc.problem((), "a fleet file must be a mapping at the top"))
            continue
        for key, value in doc.data.items():
            problems += _merge_key(merged, doc, key, value)
        for path, pos in doc.positions.items():
            merged.positions.setdefault(path, pos)
        merged.warnings += doc.warnings
    if problems:
        raise SpecError(problems)
    return merged


def _merge_key(merged: Document, doc: Document, key: str, value: Any) -> list[Problem]:
    if key not in merged.data:
        merged.data[key] = value
        return []
    current = merged.data[key]
    if not (isinstance(current, dict) and isinstance(value, dict)):
        return [doc.problem((key,), f"{key!r} is also given at {merged.position((key,))}")]
    problems = []
    for name, entry in value.items():
        if name in current:
            first = merged.position((key, name))
            problems.append(doc.problem((key, name), f"{key}.{name} is also defined at {first}"))
        else:
            current[name] = entry
            merged.positions[(key, name)] = doc.positions[(key, name)]
    return problems
