"""The KVM probe's answers, kept per host across runs and state folders.

Booting the probe takes seconds, and its answer only changes when the host does, so it is
kept in the user's cache folder (`$VMFLEET_CACHE_DIR`, else `$XDG_CACHE_HOME/vmfleet`, else
`~/.cache/vmfleet`), keyed by what would change it: the connection URI, the host's UUID and
the libvirt and QEMU versions. Only `up` and `hosts --probe` write it; everything else reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

FILE_NAME = "kvm-probe.json"


def cache_dir() -> Path:
    """Where vmfleet keeps what outlives a fleet's state folder."""
    explicit = os.environ.get("VMFLEET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vmfleet"


def probe_key(*, uri: str, host_uuid: str, libvirt_version: str, qemu_version: str) -> str:
    """The cache key of one host's answer."""
    return f"{uri}|{host_uuid}|libvirt {libvirt_version}|qemu {qemu_version}"


def lookup(key: str) -> bool | None:
    """The cached answer for `key`; None when never probed (or the cache is unreadable)."""
    entry = _read().get(key)
    if isinstance(entry, dict) and isinstance(entry.get("kvm"), bool):
        return bool(entry["kvm"])
    return None


def newest(uri: str) -> bool | None:
    """The most recent answer for any host reached at `uri` (whatever its UUID or versions);
    None when none was ever probed. For a local choice that has no libvirt connection at
    hand (libguestfs's appliance, started by its tools on this machine)."""
    answers = [
        entry
        for key, entry in _read().items()
        if key.startswith(f"{uri}|") and isinstance(entry, dict) and "kvm" in entry
    ]
    if not answers:
        return None
    latest = max(answers, key=lambda entry: float(entry.get("probed_at") or 0))
    return latest["kvm"] if isinstance(latest["kvm"], bool) else None


def remember(key: str, usable: bool) -> None:
    """Keep an answer (written atomically; a cache that cannot be written is skipped, the
    probe then runs again next time)."""
    entries = _read()
    entries[key] = {"kvm": usable, "probed_at": time.time()}
    folder = cache_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".kvm-probe-", dir=folder)
        with os.fdopen(handle, "w") as out:
            json.dump(entries, out, indent=1, sort_keys=True)
        os.replace(temp, folder / FILE_NAME)


def _read() -> dict[str, object]:
    try:
        data = json.loads((cache_dir() / FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
