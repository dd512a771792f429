"""What a read-only command must leave as it was: libvirt's objects and folders on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import libvirt


def libvirt_objects(
    conn: libvirt.virConnect, keep: Callable[[str], bool] = lambda _name: True
) -> dict[str, object]:
    """Every domain (with its XML and state), every volume in every pool (with sizes) and
    every network (with its XML and whether it runs) whose name `keep` accepts (on a
    shared libvirtd, other tests' objects come and go meanwhile)."""
    domains = {}
    for dom in conn.listAllDomains():
        if not keep(dom.name()):
            continue
        try:
            domains[dom.name()] = (dom.isPersistent(), dom.state(), dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue  # another test's domain, gone meanwhile: not ours to judge
    volumes = {}
    for pool in conn.listAllStoragePools():
        if not pool.isActive():
            continue
        for vol in pool.listAllVolumes():
            if not keep(vol.name()):
                continue
            volumes[f"{pool.name()}/{vol.name()}"] = tuple(vol.info())
    networks = {
        net.name(): (net.isActive(), net.XMLDesc(0))
        for net in conn.listAllNetworks()
        if keep(net.name())
    }
    return {"domains": domains, "volumes": volumes, "networks": networks}


def folder(path: Path) -> dict[str, tuple[int, str]] | None:
    """Each file under `path` with its mtime and content hash; None when `path` is absent."""
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
