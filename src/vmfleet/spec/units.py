"""Sizes and durations as users write them.

Sizes follow qemu-img and the replicas doc: `K`, `M`, `G`, `T`, `KiB`..`TiB` and the
Kubernetes `Ki`..`Ti` are binary,
`KB`, `MB`, `GB`, `TB` are decimal, `B` is bytes. A bare number takes the field's default unit:
MiB for memory (`vm_memory: 4096`), GiB for disks (`size: 300`).
"""

from __future__ import annotations

import math
import re

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_UNITS = {
    "": None,
    "b": 1,
    "k": KIB,
    "ki": KIB,
    "kib": KIB,
    "kb": 1000,
    "m": MIB,
    "mi": MIB,
    "mib": MIB,
    "mb": 1000**2,
    "g": GIB,
    "gi": GIB,
    "gib": GIB,
    "gb": 1000**3,
    "t": TIB,
    "ti": TIB,
    "tib": TIB,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(value: object, *, bare_unit: int) -> int:
    """Bytes for a size such as `4GiB`, `40G`, `512 MB` or a bare number in `bare_unit`.

    Raises ValueError with a message fit for the user on anything else (negative, empty,
    unknown unit, booleans).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 4GiB, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"a size must be positive, got {value}")
        return value * bare_unit
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a size must be a finite number, got {value}")
        if value <= 0:
            raise ValueError(f"a size must be positive, got {value}")
        return int(value * bare_unit)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 4GiB, got {type(value).__name__}")
    match = _SIZE_RE.match(value)
    if match is None or match[2].lower() not in _UNITS:
        raise ValueError(f"cannot parse size {value!r} (use e.g. 4096, 4GiB, 40G, 512MB)")
    number = float(match[1])
    unit = _UNITS[match[2].lower()] or bare_unit
    if not math.isfinite(number * unit):
        raise ValueError(f"size {value[:40]!r}... is too large")
    size = int(number * unit)
    if size <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return size


def parse_duration(value: object) -> float:
    """Seconds for `30s`, `1m`, `1m30s`, `250ms`, `2h` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number, got {value}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, got {type(value).__name__}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = _DURATION_RE.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"cannot parse duration {value!r} (use e.g. 30s, 1m, 1m30s)")
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value[:40]!r}... is too large")
    return seconds


def format_size(size: int) -> str:
    """A short human form: `4GiB`, `512MiB`, `1.5GiB`."""
    for unit, name in ((TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            value = size / unit
            return f"{value:.0f}{name}" if value == int(value) else f"{value:.1f}{name}"
    return f"{size}B"


def format_duration(seconds: float) -> str:
    """`45s`, `2m30s`, `1h5m`: the inverse of parse_duration for display."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds * 1000:.0f}ms"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
