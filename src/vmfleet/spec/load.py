"""Reading a fleet file of any supported format into a validated FleetSpec.

The format is detected from the content: the native fleet file, the replicas doc's Ansible
`inventory.yml`, the ansible_farm test-farm inventory, the cluster summary's
`vms:`/`vm_defaults:` variables, or Kubernetes-style `VirtualMachine`/`VirtualMachineGroup`
manifests. Importers turn the foreign ones into native
data and carry every position across, so errors still point into the file the user wrote.
"""

from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from vmfleet.errors import Position, Problem, SpecError
from vmfleet.spec import sources, validate
from vmfleet.spec.importers import ansible, cluster, farm, farm_detect, kubernetes
from vmfleet.spec.models import CloudInit, FleetSpec
from vmfleet.spec.source import Document, load_documents

Format = Literal["native", "ansible-inventory", "ansible-farm", "cluster-vars", "kubernetes"]


@dataclass(frozen=True)
class LoadedFleet:
    """A validated spec, the native document it came from, and where it came from."""

    spec: FleetSpec
    document: Document
    format: Format
    path: FsPath

    @property
    def name(self) -> str:
        """The fleet's name: `fleet:` in the file, else the file's stem made a valid name."""
        return self.spec.fleet or fleet_name_from_path(self.path)


def fleet_name_from_path(path: FsPath) -> str:
    """A valid fleet name from a file name: lowercase, other characters become '-'."""
    stem = path.stem.lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in stem).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return (cleaned or "fleet")[:40].strip("-") or "fleet"


def detect(documents: list[Document]) -> Format:
    """Which importer a list of YAML documents needs."""
    if any(
        isinstance(d.data, dict) and "apiVersion" in d.data and "kind" in d.data for d in documents
    ):
        return "kubernetes"
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        return "native"
    data = documents[0].data
    if farm.looks_like(data):
        return "ansible-farm"
    if ansible.looks_like(data):
        return "ansible-inventory"
    if cluster.looks_like(data):
        return "cluster-vars"
    return "native"


def to_native(documents: list[Document], fmt: Format, *, file: str) -> Document:
    """The native form of parsed documents, positions carried over."""
    if fmt == "kubernetes":
        return kubernetes.convert(documents, file=file)
    if not documents:
        return Document(file, {}, {})
    if len(documents) > 1:
        raise SpecError(
            [
                documents[1].problem(
                    (),
                    "a second YAML document (after ---): only Kubernetes manifests may hold "
                    "several; put everything in one document",
                )
            ]
        )
    if fmt == "ansible-inventory":
        return ansible.convert(documents[0])
    if fmt == "ansible-farm":
        return farm.convert(documents[0])
    if fmt == "cluster-vars":
        return cluster.convert(documents[0])
    if not isinstance(documents[0].data, dict):
        raise SpecError([documents[0].problem((), "a fleet file must be a mapping at the top")])
    return documents[0]


def load_text(text: str, *, file: str) -> tuple[Document, Format]:
    """Parse any supported format into a native document (not validated yet)."""
    documents = load_documents(text, file=file)
    fmt = detect(documents)
    return to_native(documents, fmt, file=file), fmt


def parse(document: Document) -> FleetSpec:
    """Validate a native document: every problem found, each with its position.

    When values are malformed, they are cut out and the rest is validated again, so the
    file-wide rules (references, duplicates, addresses) still report on everything else.
    """
    problems: list[Problem] = []
    data = copy.deepcopy(document.data)
    spec: FleetSpec | None = None
    for _round in range(20):
        try:
            spec = FleetSpec.model_validate(data)
            break
        except ValidationError as error:
            found = pydantic_problems(error, document)
            problems += [p for p in found if p not in problems]
            if not any(_cut(data, _data_path(tuple(e["loc"]), document)) for e in error.errors()):
                break
    if spec is not None:
        reported = {p.field for p in problems}
        problems += [
            p
            for p in validate.check(spec, document)
            if not any(p.field.startswith(r) for r in reported if r)
        ]
    if problems:
        raise SpecError(problems)
    assert spec is not None
    return spec


def _cut(data: Any, path: tuple[str | int, ...]) -> bool:
    """Remove the value at `path` (a list element takes its whole list); True if removed."""
    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path:
        return False
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return False
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False


MAX_FILE_BYTES = 2 * 1024 * 1024
"""Largest fleet file read (a 2,000-VM file written out VM by VM is about 200 KB)."""


def read_text(path: FsPath) -> str:
    """A fleet file's text: at most MAX_FILE_BYTES of UTF-8, else a SpecError saying why."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SpecError([Problem(None, "", f"cannot read {path}: {error.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        raise SpecError(
            [Problem(Position(str(path), 1, 1), "", f"file is larger than {limit} MiB, the limit")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = len(raw[raw.rfind(b"\n", 0, error.start) + 1 : error.start].decode("utf-8")) + 1
        byte = raw[error.start]
        raise SpecError(
            [
                Problem(
                    Position(str(path), line, column),
                    "",
                    f"byte 0x{byte:02x} is not UTF-8 text; save the file as UTF-8",
                )
            ]
        ) from None


def load(path: str | FsPath) -> LoadedFleet:
    """Load, import and validate a fleet; SpecError lists every problem.

    `path` is a file, a folder (its `*.yaml`/`*.yml` files, in name order) or several of
    either joined by `os.pathsep` (`group.yaml:vms.yaml`, as KUBECONFIG): together they form
    one fleet, and every position still names the file it came from.
    """
    files = sources.files(path)
    per_file = [_read(file) for file in files]
    tasks = [
        docs[0] for docs in per_file if len(docs) == 1 and farm_detect.looks_like(docs[0].data)
    ]
    if tasks:
        return _load_farm(files, per_file, tasks)
    documents = [doc for docs in per_file for doc in docs]
    fmt = detect(documents)
    if len(files) > 1 and fmt in ("ansible-inventory", "ansible-farm", "cluster-vars"):
        raise SpecError([Problem(None, "", f"a {fmt} file cannot be combined with other files")])
    for file, docs in zip(files, per_file, strict=True):
        if fmt != "kubernetes" and len(docs) > 1:
            to_native(docs, fmt, file=str(file))  # one document per file: says where the second is
    if fmt == "native" and len(documents) > 1:
        documents = [sources.merge(documents)]
    document = to_native(documents, fmt, file=str(files[0]))
    where = FsPath(str(path).split(os.pathsep)[0])
    return LoadedFleet(parse(document), document, fmt, where.resolve())


def _load_farm(
    files: list[FsPath], per_file: list[list[Document]], tasks: list[Document]
) -> LoadedFleet:
    """The ansible_farm inventory with platform task files (seed 003) given beside it."""
    task_ids = {id(doc) for doc in tasks}
    rest = [
        (f, docs)
        for f, docs in zip(files, per_file, strict=True)
        if not any(id(doc) in task_ids for doc in docs)
    ]
    inventories = [(f, d) for f, d in rest if d and detect(d) == "ansible-farm"]
    if len(inventories) != 1 or len(rest) != 1:
        what = "none" if not inventories else ", ".join(str(f) for f, _ in rest)
        raise SpecError(
            [
                tasks[0].problem(
                    (),
                    "an ansible_farm platform task file is read with exactly one ansible_farm "
                    f"inventory (an `all:` inventory with the matrix in its `config`); got {what}",
                )
            ]
        )
    file, docs = inventories[0]
    to_native(docs, "ansible-farm", file=str(file))  # one document: says where a second is
    document = farm.convert(docs[0], platforms=tasks, read=_read)
    return LoadedFleet(parse(document), document, "ansible-farm", file.resolve())


def _read(file: FsPath) -> list[Document]:
    text = read_text(file)
    return load_documents(text, file=str(file))


# --- pydantic errors to problems ------------------------------------------------------------


def pydantic_problems(error: ValidationError, document: Document) -> list[Problem]:
    """Each pydantic error as a Problem at its position, unknown keys with a suggestion."""
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = _data_path(loc, document)
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(FleetSpec, loc[:-1])
            hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if key in CloudInit.model_fields and "cloud_init" in allowed:
                hint = [f"cloud_init.{key}"]  # `packages:` written on the VM itself
            message = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        elif item["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing"
        problems.append(document.problem(path, message))
    return problems


def _data_path(loc: tuple[Any, ...], document: Document) -> tuple[str | int, ...]:
    """Pydantic's loc, with tagged-union and function steps removed, as a data path."""
    path: list[str | int] = []
    data: Any = document.data
    for step in loc:
        if step == "[key]":
            break
        if isinstance(data, dict) and step in data:
            path.append(step)
            data = data[step]
        elif (
            isinstance(data, dict)
            and isinstance(step, str)
            and step.isdigit()
            and int(step) in data
        ):
            path.append(int(step))
            data = data[int(step)]
        elif isinstance(data, list) and isinstance(step, int) and step < len(data):
            path.append(step)
            data = data[step]
        elif isinstance(data, dict | list):
            # A key pydantic names that is not in the data (missing field): stop at parent,
            # but keep the name so the field reads right.
            if isinstance(step, str) and step not in ("str", "int", "function-after"):
                path.append(step)
            break
    return tuple(path)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names and aliases of the model that stands at `loc` below `model`."""
    current: Any = model
    for step in loc:
        current = _step_into(current, step)
        if current is None:
            return []
    current = _unwrap_model(current)
    if current is None:
        return []
    keys: list[str] = []
    for name, info in current.model_fields.items():
        keys.append(name)
        if info.alias:
            keys.append(info.alias)
    return keys


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _step_into(annotation: Any, step: Any) -> Any:
    model = (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )
    origin = typing.get_origin(annotation)
    if model is not None:
        for name, info in model.model_fields.items():
            if step in (name, info.alias):
                return info.annotation
        return None
    if origin in (list, tuple):
        return typing.get_args(annotation)[0] if isinstance(step, int) else None
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _step_into(arg, step)
            if found is not None:
                return found
    return None
