"""YAML loading that remembers where every value came from.

The result is plain data (dicts, lists, scalars) plus a map from each value's path
(a tuple of keys and indexes) to its position, so any later error can name file, line and
column. Duplicate keys, which PyYAML silently overwrites, are reported as problems.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vmfleet.errors import Position, Problem, SpecError
from vmfleet.spec.compose import MAX_DEPTH, MAX_VALUES, compose_all

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
    """Parse every YAML document in `text`; SpecError with all problems on bad YAML.

    Bounded: nesting deeper than `compose.MAX_DEPTH` (also through aliases) and more than
    `MAX_VALUES` values once aliases and merge keys are expanded are refused.
    """
    builder = _Builder(file)
    documents = [builder.document(root) for root in compose_all(text, file=file)]
    if builder.problems:
        raise SpecError(list(dict.fromkeys(builder.problems)))
    return [doc for doc in documents if doc.data is not None]


_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "timestamp")
)
_COLLECTION_TAGS = frozenset(("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"))


class _Builder:
    """Turns composed node graphs into data, recording positions as it goes.

    Aliases are expanded (each use is its own copy), counted against MAX_VALUES and
    MAX_DEPTH, so neither a "billion laughs" file nor an alias inside its own anchor can
    exhaust memory or the stack.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, Position] = {}
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._count = 0

    def _mark(self, node: Node) -> Position:
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def document(self, root: Node) -> Document:
        """One document's data and positions."""
        self.positions = {}
        data = self.build(root, (), 0)
        return Document(self.file, data, self.positions)

    def _refuse(self, node: Node, path: Path, message: str) -> SpecError:
        return SpecError([Problem(self._mark(node), _field(path), message)])

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise self._refuse(
                node,
                path,
                f"more than {MAX_VALUES} values once aliases are expanded; "
                "a fleet file needs far fewer (aliases nested in aliases multiply)",
            )
        if depth > MAX_DEPTH:
            raise self._refuse(
                node,
                path,
                f"nested deeper than {MAX_DEPTH} levels once aliases are expanded "
                "(is an alias used inside its own anchor?)",
            )
        self.positions.setdefault(path, self._mark(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            self.problems.append(
                Problem(self._mark(node), _field(path), f"unsupported YAML tag {node.tag}")
            )
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        return self._mapping(node, path, depth)

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.problems.append(
                Problem(self._mark(node), _field(path), f"unsupported YAML tag {node.tag}")
            )
            return node.value
        if node.tag.endswith(":timestamp"):
            return node.value  # dates and times stay text: no vmfleet field wants a datetime
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError) as error:
            self.problems.append(
                Problem(self._mark(node), _field(path), f"cannot read {node.value[:40]!r}: {error}")
            )
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.append(
                Problem(self._mark(node), _field(path), f"{node.value!r} is not a finite number")
            )
        return value

    def _key(self, node: Node, path: Path) -> str | int | None:
        if not isinstance(node, ScalarNode):
            self.problems.append(
                Problem(
                    self._mark(node),
                    _field(path),
                    "a key must be a plain value, not a list or mapping",
                )
            )
            return None
        key = self._scalar(node, path)
        return key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                self.problems.append(Problem(self._mark(key_node), _field(child), "duplicate key"))
                continue
            self.positions.setdefault(child, self._mark(key_node))
            result[key] = self.build(value_node, child, depth + 1)
        if not merges:
            return result
        merged: dict[Any, Any] = {}
        for source in self._merge_sources(merges, path):
            for key, value in self._mapping(source, path, depth).items():
                merged.setdefault(key, value)
        return {**merged, **result}

    def _merge_sources(self, merges: list[Node], path: Path) -> list[MappingNode]:
        """The mappings `<<:` names, first one winning, as YAML's merge key says."""
        sources: list[MappingNode] = []
        for value in merges:
            items = value.value if isinstance(value, SequenceNode) else [value]
            for item in items:
                if isinstance(item, MappingNode):
                    sources.append(item)
                else:
                    self.problems.append(
                        Problem(
                            self._mark(item),
                            _field((*path, "<<")),
                            "a merge key (<<) takes a mapping or a list of mappings",
                        )
                    )
        return sources


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
