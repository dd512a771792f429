"""Building a native document from a foreign one while keeping every position.

Importers check the shape of what they read before they use it: a value of the wrong kind
is a Problem at its position, collected on the Translator and raised together by
`document()`, never an exception from deep inside a conversion.
"""

from __future__ import annotations

import copy
from typing import Any

from vmfleet.errors import Position, Problem, SpecError
from vmfleet.spec.source import Document, Path
from vmfleet.spec.values import NAME_RE


class Translator:
    """Writes native data; each value remembers the source path it came from."""

    def __init__(self, source: Document) -> None:
        self.source = source
        self.data: dict[str, Any] = {}
        self.positions: dict[Path, Any] = {(): source.position(())}
        self.warnings: list[str] = []
        self.problems: list[Problem] = []
        self._claimed: dict[tuple[str, str], tuple[str, Path]] = {}

    def put(self, path: Path, *, src: Path, value: Any = None, copy_tree: bool = False) -> None:
        """Set `path` in the native data; with copy_tree, copy the source subtree at `src`."""
        if copy_tree:
            value = copy.deepcopy(_get(self.source.data, src))
            for sub, pos in self.source.positions.items():
                if sub[: len(src)] == src:
                    self.positions[path + sub[len(src) :]] = pos
        node: Any = self.data
        for i, key in enumerate(path[:-1]):
            if key not in node:
                node[key] = [] if isinstance(path[i + 1], int) else {}
                self.positions.setdefault(path[: i + 1], self.source.position(src))
            node = node[key]
        if isinstance(node, list):
            node.append(value)
        else:
            node[path[-1]] = value
        position = self.source.position(src)
        if position is not None:
            self.positions.setdefault(path, position)

    def place(self, path: Path, value: Any, *, at: Position | None) -> None:
        """Set `path` to `value` that came from another file, at position `at`."""
        node: Any = self.data
        for i, key in enumerate(path[:-1]):
            node = node.setdefault(key, {})
            if at is not None:
                self.positions.setdefault(path[: i + 1], at)
        node[path[-1]] = value
        if at is not None:
            self.positions[path] = at

    def warn(self, src: Path, message: str) -> None:
        """A non-fatal note (an ignored key), with its position."""
        position = self.source.position(src)
        self.warnings.append(f"{position}: {message}" if position else message)

    def error(self, src: Path, message: str) -> None:
        """A problem at `src`; `document()` raises them all together."""
        self.problems.append(self.source.problem(src, message))

    def mapping(self, src: Path, what: str) -> dict[Any, Any] | None:
        """The mapping at `src` ({} when absent or empty), or None after reporting a problem."""
        value = _get(self.source.data, src, default=None)
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.error(src, f"{what} must be a mapping, got {_kind(value)}")
        return None

    def name(self, kind: str, value: Any, *, src: Path, explicit: bool) -> str | None:
        """`value` as the name of a new `kind` (vms, groups...), claimed once per kind.

        A name the user wrote as a name (`vm_name`, `metadata.name`) must be valid as it
        is. A key that only identifies an entry in the foreign format (an inventory host) is
        made valid, with a warning naming the change. Two entries that end with the same name
        are a problem naming both positions; None when no name could be claimed.
        """
        text = value if isinstance(value, str) else None
        if text is None and isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        if text is None:
            self.error(src, f"a name must be text, got {_kind(value)}")
            return None
        name = text
        if not NAME_RE.match(text):
            name = slug(text)
            if explicit or name == "unnamed":
                self.error(
                    src,
                    f"{text!r} is not a valid name: use lowercase letters, digits and '-' "
                    f"(at most 63, not starting or ending with '-')"
                    + (f"; for example {name!r}" if name != "unnamed" else ""),
                )
                return None
            self.warn(src, f"{text!r} is not a valid name; it becomes {name!r}")
        first = self._claimed.get((kind, name))
        if first is not None:
            position = self.source.position(first[1])
            also = "" if first[0] == text else f" (from {first[0]!r})"
            self.error(src, f"the name {name!r} is already used at {position}{also}")
            return None
        self._claimed[(kind, name)] = (text, src)
        return name

    def document(self) -> Document:
        """The native document built so far; SpecError when problems were found."""
        if self.problems:
            raise SpecError(self.problems)
        positions = {p: pos for p, pos in self.positions.items() if pos is not None}
        return Document(self.source.file, self.data, positions, list(self.warnings))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"{value!r}"


_MISSING = object()


def _get(data: Any, path: Path, *, default: Any = _MISSING) -> Any:
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        elif default is not _MISSING:
            return default
        else:
            raise KeyError(path)
    return data


def slug(text: Any) -> str:
    """A valid vmfleet name from any text: lowercase, other characters become '-'."""
    cleaned = "".join(c if c.isalnum() and c.isascii() else "-" for c in str(text).lower())
    cleaned = cleaned.strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return cleaned[:63].strip("-") or "unnamed"
