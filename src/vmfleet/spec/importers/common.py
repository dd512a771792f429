"""Building a native document from a foreign one while keeping every position."""

from __future__ import annotations

import copy
from typing import Any

from vmfleet.spec.source import Document, Path


class Translator:
    """Writes native data; each value remembers the source path it came from."""

    def __init__(self, source: Document) -> None:
        self.source = source
        self.data: dict[str, Any] = {}
        self.positions: dict[Path, Any] = {(): source.position(())}
        self.warnings: list[str] = []

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

    def warn(self, src: Path, message: str) -> None:
        """A non-fatal note (an ignored key), with its position."""
        position = self.source.position(src)
        self.warnings.append(f"{position}: {message}" if position else message)

    def document(self) -> Document:
        """The native document built so far."""
        positions = {p: pos for p, pos in self.positions.items() if pos is not None}
        return Document(self.source.file, self.data, positions, list(self.warnings))


def _get(data: Any, path: Path) -> Any:
    for key in path:
        data = data[key]
    return data


def slug(text: str) -> str:
    """A valid vmfleet name from any text: lowercase, other characters become '-'."""
    cleaned = "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return cleaned[:63].strip("-") or "unnamed"
