"""YAML text to node graphs, in bounded time and memory.

PyYAML's own composer recurses once per nesting level (deep input ends in RecursionError)
and its pure-Python scanner reads about 100 KB a second. Here libyaml (when installed)
scans and parses, and a loop with an explicit stack composes the events, so nesting deeper
than `MAX_DEPTH` is refused with its position instead of exhausting the stack. Aliases stay
shared nodes here; `source` bounds how far they may expand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vmfleet.errors import Position, Problem, SpecError

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings a fleet file may have (its own needs about 8)."""

MAX_VALUES = 50_000
"""Most values (scalars, lists, mappings) a file may hold, aliases expanded (`source`)."""

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Characters YAML forbids in a stream (as PyYAML's reader: C0 controls but tab, CR, LF...).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def position_of(text: str, index: int, *, file: str) -> Position:
    """The 1-based line and column of character `index` in `text`."""
    line = text.count("\n", 0, index) + 1
    start = text.rfind("\n", 0, index) + 1
    return Position(file, line, index - start + 1)


def check_characters(text: str, *, file: str) -> None:
    """SpecError at the first character YAML does not allow (NUL and other controls)."""
    found = _NON_PRINTABLE.search(text)
    if found is not None:
        char = found.group()
        raise SpecError(
            [
                Problem(
                    position_of(text, found.start(), file=file),
                    "",
                    f"control character U+{ord(char):04X} is not allowed in a YAML file "
                    "(is this a binary file?)",
                )
            ]
        )


def compose_all(text: str, *, file: str) -> Iterator[Node]:
    """The root node of each document in `text`.

    Raises SpecError for syntax errors, undefined or repeated anchors and nesting deeper
    than MAX_DEPTH, each with its position.
    """
    check_characters(text, file=file)
    loader = _Loader(text)
    budget = [MAX_VALUES]
    try:
        while not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            if isinstance(event, DocumentStartEvent):
                root = _Composer(loader, file, budget).document()
                if root is not None:
                    yield root
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = Position(file, mark.line + 1, mark.column + 1) if mark else None
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise SpecError([Problem(position, "", f"YAML syntax error: {message}")]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem(Position(file, 1, 1), "", f"YAML error: {error}")]) from None
    finally:
        loader.dispose()


class _Composer:
    """Builds one document's node graph from parser events, with an explicit stack."""

    def __init__(self, loader: Any, file: str, budget: list[int]) -> None:
        self.loader = loader
        self.budget = budget
        self.file = file
        self.anchors: dict[str, Node] = {}
        # Open collections; for a mapping, the key node waiting for its value.
        self.stack: list[tuple[Node, list[Node]]] = []
        self.root: Node | None = None

    def _error(self, mark: Any, message: str) -> SpecError:
        return SpecError(
            [Problem(Position(self.file, mark.line + 1, mark.column + 1), "", message)]
        )

    def document(self) -> Node | None:
        """Consume events up to the document's end; its root node."""
        while True:
            event = self.loader.get_event()
            if isinstance(event, DocumentEndEvent):
                return self.root
            if isinstance(event, AliasEvent):
                if event.anchor not in self.anchors:
                    raise self._error(event.start_mark, f"undefined alias *{event.anchor}")
                self._attach(self.anchors[event.anchor])
            elif isinstance(event, ScalarEvent):
                event_: Any = event  # libyaml's marks are typed apart from PyYAML's
                tag = event_.tag
                if tag is None or tag == "!":
                    tag = self.loader.resolve(ScalarNode, event_.value, event_.implicit)
                node: Node = ScalarNode(
                    tag, event_.value, event_.start_mark, event_.end_mark, style=event_.style
                )
                self._anchor(event, node)
                self._attach(node)
            elif isinstance(event, CollectionStartEvent):
                self._open(event)
            else:  # the end of a sequence or mapping
                done, _ = self.stack.pop()
                done.end_mark = event.end_mark

    def _open(self, event: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise self._error(
                event.start_mark,
                f"nested deeper than {MAX_DEPTH} levels; a fleet file needs far fewer",
            )
        kind: Any = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, None, event.implicit)
        node: Node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        self._anchor(event, node)
        self._attach(node)
        self.stack.append((node, []))

    def _anchor(self, event: Any, node: Node) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors:
            first = self.anchors[event.anchor].start_mark
            raise self._error(
                event.start_mark,
                f"anchor &{event.anchor} is defined twice (first at line {first.line + 1})",
            )
        self.anchors[event.anchor] = node

    def _attach(self, node: Node) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise self._error(node.start_mark, f"more than {MAX_VALUES} values in one file")
        if not self.stack:
            self.root = node
            return
        parent, pending = self.stack[-1]
        if isinstance(parent, SequenceNode):
            parent.value.append(node)
        elif not pending:
            pending.append(node)
        else:
            parent.value.append((pending.pop(), node))
