"""The cluster summary's Ansible variables: `vms: NAME: {cpus, memory, disks, network,
node_preference}` and `vm_defaults:`.

`memory` is MiB and disk `size` is GiB, as in that document. The first disk is the root
disk; the others become data disks. `network` names a host bridge. Each `node_preference`
becomes a host reached over `qemu+ssh://root@NODE/system`.
"""

from __future__ import annotations

import re
from typing import Any

from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.source import Document, Path

_VM_KEYS = ("cpus", "disks")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")
_DEFAULTS_OK = {
    "os_type": "hvm",
    "disk_driver": "virtio",
    "network_driver": "virtio",
}


def looks_like(data: dict[str, Any]) -> bool:
    """Top-level `vm_defaults`, or VMs written with `cpus` or `disks` (native has neither)."""
    if "vm_defaults" in data:
        return True
    vms = data.get("vms")
    return isinstance(vms, dict) and any(
        isinstance(v, dict) and any(k in v for k in _VM_KEYS) for v in vms.values()
    )


def convert(source: Document) -> Document:
    """The native form of the cluster variables."""
    out = Translator(source)
    bridges: dict[str, Path] = {}
    nodes: dict[str, Path] = {}
    for key, value in (out.mapping(("vm_defaults",), "vm_defaults") or {}).items():
        src: Path = ("vm_defaults", key)
        if key == "graphics":
            out.put(("defaults", "graphics"), src=src, value="vnc" if value == "vnc" else "none")
        elif _DEFAULTS_OK.get(key) == value:
            continue
        else:
            out.warn(src, f"vm_defaults.{key}: {value!r} is not configurable in vmfleet, ignored")
    for name, _vm in (out.mapping(("vms",), "vms") or {}).items():
        base: Path = ("vms", name)
        vm = out.mapping(base, f"VM {name!r}")
        vm_name = out.name("vms", name, src=base, explicit=False)
        if vm is None or vm_name is None:
            continue
        target: Path = ("vms", vm_name)
        out.put(target, src=base, value={})
        for key, value in vm.items():
            _vm_key(out, target, (*base, key), key, value, bridges, nodes)
    for bridge, src in sorted(bridges.items()):
        out.put(("networks", slug(bridge)), src=src, value={"mode": "bridge", "bridge": bridge})
    for node, src in sorted(nodes.items()):
        out.put(("hosts", slug(node)), src=src, value={"uri": f"qemu+ssh://root@{node}/system"})
    return out.document()


def _vm_key(
    out: Translator,
    target: Path,
    src: Path,
    key: Any,
    value: Any,
    bridges: dict[str, Path],
    nodes: dict[str, Path],
) -> None:
    """One key of a VM's variables into the VM at `target`."""
    if key == "cpus":
        out.put((*target, "vcpus"), src=src, value=value)
    elif key in ("memory", "image", "labels", "description"):
        out.put((*target, key), src=src, copy_tree=True)
    elif key == "disks":
        _disks(out, target, src, value)
    elif key == "network":
        bridge = _claim(out, "network", value, src, bridges)
        if bridge is not None:
            out.put((*target, "network"), src=src, value=slug(bridge))
    elif key == "node_preference":
        prefs = value if isinstance(value, list) else [value]
        claimed = [_claim(out, "node", p, (*src, i), nodes) for i, p in enumerate(prefs)]
        if None not in claimed:
            out.put((*target, "node_preference"), src=src, value=[slug(p) for p in claimed])
    else:
        out.warn(src, f"{key}: not used by vmfleet, ignored")


def _claim(out: Translator, what: str, value: Any, src: Path, seen: dict[str, Path]) -> str | None:
    """A bridge or node name, checked to be a host name; two that slug alike are a problem."""
    if not isinstance(value, str) or not _HOSTNAME_RE.match(value):
        out.error(src, f"{what}: {value!r} is not a host name")
        return None
    for other, other_src in seen.items():
        if other != value and slug(other) == slug(value):
            out.error(
                src,
                f"{what} {value!r} and {other!r} (at {out.source.position(other_src)}) "
                f"would both be named {slug(value)!r}",
            )
            return None
    seen.setdefault(value, src)
    return value


def _disks(out: Translator, target: Path, src: Path, disks: Any) -> None:
    if not isinstance(disks, list):
        out.error(src, f"disks: expected a list of {{name, size}}, got {disks!r}")
        return
    for i, disk in enumerate(disks):
        disk_src: Path = (*src, i)
        if not isinstance(disk, dict) or "size" not in disk:
            out.error(disk_src, "a disk needs {name, size}")
            continue
        if i == 0:
            out.put((*target, "disk"), src=(*disk_src, "size"), value=disk["size"])
        else:
            entry = {"size": disk["size"]}
            if disk.get("name"):
                entry["name"] = disk["name"]
            out.put((*target, "data_disks", i - 1), src=disk_src, value=entry)
