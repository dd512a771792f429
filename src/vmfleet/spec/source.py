"""YAML loading that remembers where every value came from.

The result is plain data (dicts, lists, scalars) plus a map from each value's path
(a tuple of keys and indexes) to its position, so any later error can name file, line and
column. Duplicate keys, which PyYAML silently overwrites, are reported as problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vmfleet.errors import Position, Problem, SpecError

Path = tuple[str | int, ...]


@dataclass
class Document:
    """One YAML document: its data and the position of every value in it."""

    file: str
    data: Any
    positions: dict[Path, Position] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def position(self, path: Path) -> Position | None:
        """The position of `path`, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:cut]))
            if found is not None:
                return found
        return None

    def problem(self, path: Path, message: str) -> Problem:
        """A Problem at `path`, its field written as `a.b[2].c`."""
        return Problem(self.position(path), format_path(path), message)

    def sub(self, path: Path, *, new_prefix: Path = ()) -> Document:
        """The part of this document under `path`, re-rooted at `new_prefix`."""
        data: Any = self.data
        for key in path:
            data = data[key]
        positions = {
            new_prefix + p[len(path) :]: pos
            for p, pos in self.positions.items()
            if p[: len(path)] == path
        }
        return Document(self.file, data, positions, list(self.warnings))


def format_path(path: Path) -> str:
    """`vms.web.ips[2]` for ("vms", "web", "ips", 2)."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out


def load_documents(text: str, *, file: str) -> list[Document]:
    """Parse every YAML document in `text`; SpecError with all problems on bad YAML."""
    loader = yaml.SafeLoader(text)
    documents: list[Document] = []
    problems: list[Problem] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            builder = _Builder(file)
            data = builder.build(node, ())
            problems.extend(builder.problems)
            documents.append(Document(file, data, builder.positions))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = Position(file, mark.line + 1, mark.column + 1) if mark else None
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise SpecError([Problem(position, "", f"YAML syntax error: {message}")]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem(Position(file, 1, 1), "", f"YAML error: {error}")]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return [doc for doc in documents if doc.data is not None]


class _Builder:
    """Turns a composed node tree into data, recording positions as it goes."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Position] = {}
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()

    def _mark(self, node: Node) -> Position:
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: Node, path: Path) -> Any:
        self.positions.setdefault(path, self._mark(node))
        if isinstance(node, ScalarNode):
            value = self._constructor.construct_object(node, deep=True)
            # Dates and times stay text: no vmfleet field wants a datetime.
            return node.value if hasattr(value, "isoformat") else value
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self._constructor.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    key = str(key)
                child = (*path, key)
                if key in result:
                    self.problems.append(
                        Problem(self._mark(key_node), _field(child), "duplicate key")
                    )
                    continue
                self.positions[child] = self._mark(key_node)
                result[key] = self.build(value_node, child)
            return result
        raise SpecError([Problem(self._mark(node), _field(path), "unsupported YAML node")])


def _field(path: Path) -> str:
    return format_path(path)


def walk(data: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) pair in a data tree, depth first."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from walk(value, (*path, index))
