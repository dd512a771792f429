"""Running ansible_farm's platform task files far enough to know the `vm` they define.

A platform file (`setup_vm_/platforms/debian_12.yaml`) is an Ansible task list: `block`s
with `vars`, `import_tasks` of a sibling file, and `set_fact: vm: ...` with the platform's
definition. For one matrix cell the walk starts from `vm.metadata.{platform_name,
target_name}`, applies each `set_fact` in order with Ansible's lazy variables (a variable is
templated where it is used, facts win over block and task vars) and returns the last `vm`.
Other modules are not run: each is a warning. An `import_tasks` target must exist and stay
inside the platform file's folder; a cycle is an error. Positions follow values through
templates: a value an expression returns keeps the position it was written at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import jinja2

from vmfleet.errors import Position, Problem, SpecError
from vmfleet.spec.importers import templating
from vmfleet.spec.importers.farm_detect import MAX_IMPORT_DEPTH, Reader
from vmfleet.spec.importers.templating import Unknown
from vmfleet.spec.source import Document, Path

MAX_EVALUATIONS = 20_000
"""Templates evaluated per cell; a file that needs more (variables doubling each other)
is refused rather than left to run."""

_TASK_KEYS = frozenset(
    ("name", "vars", "block", "import_tasks", "set_fact", "add_host", "tags", "when")
)
_SILENT = frozenset(("name", "tags"))


@dataclass
class Origins:
    """Where values came from: each mapping or list (by identity) with its own position and
    those of its items; objects are kept alive so identities stay unique."""

    of: dict[int, tuple[Position | None, dict[Any, Position | None]]] = field(default_factory=dict)
    _alive: list[Any] = field(default_factory=list)

    def mark(self, value: Any, where: Position | None, items: dict[Any, Position | None]) -> None:
        if id(value) not in self.of:
            self._alive.append(value)
            self.of[id(value)] = (where, items)

    def position(self, container: Any, key: Any = None) -> Position | None:
        """The position of `container[key]` (or of the container), as written."""
        where, items = self.of.get(id(container), (None, {}))
        return items.get(key) or where if key is not None else where


@dataclass
class Walk:
    """One cell's evaluation of one platform file."""

    root: FsPath
    read: Reader
    cell_vm: dict[str, Any]
    origins: Origins
    warnings: dict[str, None]
    problems: list[Problem]
    imports: set[FsPath] = field(default_factory=set)
    env: jinja2.Environment = field(default_factory=templating.environment)
    facts: dict[str, Any] = field(default_factory=dict)
    reported: dict[int, Unknown] = field(default_factory=dict)  # kept alive: ids stay unique
    budget: int = MAX_EVALUATIONS

    def __post_init__(self) -> None:
        self.env.filters["combine"] = self.combine

    def combine(self, *values: Any, recursive: bool = False, list_merge: str = "replace") -> Any:
        """Ansible's `combine`, the merged mappings keeping their items' positions."""
        merged = templating.combine(*values, recursive=recursive, list_merge=list_merge)
        self._mark_merged(merged, [v for v in values if isinstance(v, dict)])
        return merged

    def _mark_merged(self, merged: dict[Any, Any], sources: list[dict[Any, Any]]) -> None:
        where: Position | None = None
        items: dict[Any, Position | None] = {}
        for source in sources:
            at, known = self.origins.of.get(id(source), (None, {}))
            where = at or where
            items.update({k: known[k] for k in source if known.get(k)})
        self.origins.mark(merged, where, items)
        for key, value in merged.items():
            if isinstance(value, dict) and id(value) not in self.origins.of:
                self._mark_merged(value, [s[key] for s in sources if isinstance(s.get(key), dict)])

    def run(self, doc: Document) -> Any:
        """The `vm` fact after the file's tasks (the cell's starting `vm` when none set it)."""
        self.facts["vm"] = self.cell_vm
        self.tasks(doc, (), [], (FsPath(doc.file).resolve(),))
        return self.facts["vm"]

    def warn(self, where: Position | None, message: str) -> None:
        self.warnings[f"{where}: {message}" if where else message] = None

    def tasks(
        self, doc: Document, path: Path, scope: list[Layer], chain: tuple[FsPath, ...]
    ) -> None:
        tasks = _at(doc.data, path)
        if not isinstance(tasks, list):
            self.problems.append(doc.problem(path, "a task list must be a list of tasks"))
            return
        for index, task in enumerate(tasks):
            where: Path = (*path, index)
            if not isinstance(task, dict):
                self.problems.append(doc.problem(where, "a task must be a mapping"))
                continue
            layers = [*scope, Layer(doc, (*where, "vars"))] if "vars" in task else scope
            if "vars" in task and not isinstance(task["vars"], dict):
                self.problems.append(doc.problem((*where, "vars"), "vars must be a mapping"))
                continue
            self.task(doc, where, task, layers, chain)

    def task(
        self,
        doc: Document,
        where: Path,
        task: dict[str, Any],
        scope: list[Layer],
        chain: tuple[FsPath, ...],
    ) -> None:
        for key in task:
            if key not in _TASK_KEYS:
                self.warn(
                    doc.position((*where, key)), f"module {key!r} is not run by the import; ignored"
                )
        if "when" in task:
            self.warn(
                doc.position((*where, "when")), "`when:` is not evaluated; the task is applied"
            )
        if "add_host" in task:
            self.warn(
                doc.position((*where, "add_host")),
                "add_host: vmfleet chooses each VM's address and SSH port itself; ignored",
            )
        if "block" in task:
            self.tasks(doc, (*where, "block"), scope, chain)
        if "import_tasks" in task:
            self.imported(doc, (*where, "import_tasks"), scope, chain)
        if "set_fact" in task:
            self.set_fact(doc, (*where, "set_fact"), scope)

    def imported(
        self, doc: Document, where: Path, scope: list[Layer], chain: tuple[FsPath, ...]
    ) -> None:
        name = _at(doc.data, where)
        if not isinstance(name, str) or "{{" in name or "{%" in name:
            self.problems.append(doc.problem(where, "import_tasks must name a file (no template)"))
            return
        target = (FsPath(doc.file).parent / name).resolve()
        if not target.is_relative_to(self.root):
            self.problems.append(
                doc.problem(where, f"import_tasks {name!r} is outside the folder {self.root}")
            )
            return
        if target in chain:
            loop = " -> ".join(p.name for p in (*chain, target))
            self.problems.append(doc.problem(where, f"import_tasks cycle: {loop}"))
            return
        if len(chain) > MAX_IMPORT_DEPTH:
            self.problems.append(
                doc.problem(where, f"import_tasks nested deeper than {MAX_IMPORT_DEPTH} files")
            )
            return
        if not target.is_file():
            self.problems.append(doc.problem(where, f"import_tasks {name!r}: no such file"))
            return
        self.imports.add(target)
        docs = self.read(FsPath(doc.file).parent / name)  # named as the user gave the folder
        if len(docs) != 1:
            self.problems.append(doc.problem(where, f"{name!r} must hold one YAML document"))
            return
        self.tasks(docs[0], (), scope, (*chain, target))

    def set_fact(self, doc: Document, where: Path, scope: list[Layer]) -> None:
        facts = _at(doc.data, where)
        if not isinstance(facts, dict):
            self.problems.append(doc.problem(where, "set_fact must be a mapping"))
            return
        cache: dict[str, Any] = {}
        for key in facts:
            if key == "cacheable":
                continue
            value = self.render(doc, (*where, key), scope, cache, ())
            if key == "vm" and isinstance(value, dict):
                value = self.combine(self.cell_vm, value, recursive=True)
            self.facts[key] = value

    def render(
        self,
        doc: Document,
        path: Path,
        scope: list[Layer],
        cache: dict[str, Any],
        resolving: tuple[str, ...],
    ) -> Any:
        """The value at `path` of `doc` with its templates evaluated in `scope`."""
        raw = _at(doc.data, path)
        if isinstance(raw, dict):
            out = {k: self.render(doc, (*path, k), scope, cache, resolving) for k in raw}
            self.origins.mark(out, doc.position(path), {k: doc.position((*path, k)) for k in raw})
            return out
        if isinstance(raw, list):
            items = [self.render(doc, (*path, i), scope, cache, resolving) for i in range(len(raw))]
            self.origins.mark(
                items, doc.position(path), {i: doc.position((*path, i)) for i in range(len(raw))}
            )
            return items
        if not isinstance(raw, str) or ("{{" not in raw and "{%" not in raw):
            return raw
        self.budget -= 1
        if self.budget < 0:
            raise SpecError(
                [doc.problem(path, f"more than {MAX_EVALUATIONS} templates to evaluate")]
            )
        needed = templating.names(self.env, raw)
        if isinstance(needed, Unknown):
            return self.unknown(needed, doc.position(path))
        variables = {n: self.variable(n, scope, cache, resolving) for n in sorted(needed)}
        defined = {n: v for n, v in variables.items() if v is not _UNDEFINED}
        value = templating.evaluate(self.env, raw, defined)
        if isinstance(value, Unknown):
            return self.unknown(value, doc.position(path))
        return value

    def variable(
        self, name: str, scope: list[Layer], cache: dict[str, Any], resolving: tuple[str, ...]
    ) -> Any:
        if name in self.facts:
            return self.facts[name]
        if name in cache:
            return cache[name]
        for depth in range(len(scope) - 1, -1, -1):
            layer = scope[depth]
            values = _at(layer.doc.data, layer.path)
            if isinstance(values, dict) and name in values:
                if name in resolving:
                    where = layer.doc.position((*layer.path, name))
                    return self.unknown(Unknown(f"{name!r} refers to itself"), where)
                # As Ansible: templated where it is used, with every variable in force there.
                value = self.render(
                    layer.doc, (*layer.path, name), scope, cache, (*resolving, name)
                )
                cache[name] = value
                return value
        return _UNDEFINED

    def unknown(self, value: Unknown, where: Position | None) -> Unknown:
        if id(value) not in self.reported:
            self.reported[id(value)] = value
            self.warn(where, f"cannot evaluate: {value.reason}; left out")
        return value


@dataclass(frozen=True)
class Layer:
    """A `vars:` mapping in force (a block's, a task's or an import's)."""

    doc: Document
    path: Path


_UNDEFINED = object()


def _at(data: Any, path: Path) -> Any:
    for key in path:
        data = data[key]
    return data
