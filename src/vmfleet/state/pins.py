"""Pinned catalog images: which bytes a catalog name ("debian-12", the publisher's latest) meant
when this fleet first pulled it, so a later change upstream is reported, never taken silently.

One JSON file in the state folder, `images.json`: image name → {catalog, url, algorithm,
digest (as the publisher lists it), sha256 (of the bytes, the cache key), pinned_at}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "images.json"


@dataclass(frozen=True, slots=True)
class Pin:
    catalog: str
    url: str
    algorithm: str
    digest: str
    sha256: str
    pinned_at: str


def load(state_dir: Path) -> dict[str, Pin]:
    """Every pin of the fleet (none when the file does not exist yet)."""
    path = state_dir / FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: Pin(**fields) for name, fields in data.items()}


def save(state_dir: Path, name: str, pin: Pin) -> None:
    """Record (or replace) one image's pin; the file is replaced atomically."""
    pins = load(state_dir)
    pins[name] = pin
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        json.dumps({n: asdict(p) for n, p in sorted(pins.items())}, indent=2), encoding="utf-8"
    )
    os.replace(temporary, path)
