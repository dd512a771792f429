"""SSH host keys vmfleet makes for its guests, and the known_hosts file that trusts them.

vmfleet generates each VM's ed25519 host key itself, hands it to the guest through cloud-init
and writes its public half into the fleet's known_hosts before the VM boots, so the very
first connection is verified. Entries are keyed by VM name (ssh's HostKeyAlias), so they do
not depend on the address or forwarded port.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: str  # OpenSSH PEM
    public: str  # "ssh-ed25519 AAAA…"


def generate_ed25519(comment: str = "") -> KeyPair:
    """A fresh ed25519 key pair in OpenSSH formats."""
    # cryptography loads here, not with the module: commands that only read the fleet
    # (validate, list) import this module through the engine but never make a key.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return KeyPair(private=private, public=f"{public} {comment}".strip())


def read_entries(path: Path) -> dict[str, str]:
    """alias → 'type base64' for every line of a known_hosts file we wrote."""
    entries: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                entries[parts[0]] = f"{parts[1]} {parts[2]}"
    return entries


def set_entry(path: Path, alias: str, public: str | None) -> None:
    """Replace (or with None remove) the entry for `alias`; written atomically."""
    with _lock:
        entries = read_entries(path)
        if public is None:
            entries.pop(alias, None)
        else:
            entries[alias] = " ".join(public.split()[:2])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{a} {k}\n" for a, k in sorted(entries.items())))
        os.replace(tmp, path)
