"""The cluster summary's Ansible variables: `vms: NAME: {cpus, memory, disks, network,
node_preference}` and `vm_defaults:`.

`memory` is MiB and disk `size` is GiB, as in that document. The first disk is the root
disk; the others become data disks. `network` names a host bridge. Each `node_preference`
becomes a host reached over `qemu+ssh://root@NODE/system`.

Pacemaker owns these VMs (the summary: "never use virsh directly"), so they become HA VMs
of one cluster, `cluster`, whose nodes are the preferred nodes, with LINSTOR storage in the
summary's pool `lv_part_pool`. What the variables do not say is set to something that
loads and reported as a warning: fencing off, no utilization (node capacity is unknown),
and one replica when only one node is named.
"""

from __future__ import annotations

from typing import Any

from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.source import Document, Path

_VM_KEYS = ("cpus", "disks")
_DEFAULTS_OK = {
    "os_type": "hvm",
    "disk_driver": "virtio",
    "network_driver": "virtio",
    "disk_cache": "none",  # what HA disks use: shared or replicated storage, no host cache
}
CLUSTER = "cluster"
LINSTOR_POOL = "lv_part_pool"  # the summary's `linstor resource create … --storage-pool`


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
    data = source.data
    out = Translator(source)
    bridges: set[str] = set()
    nodes: set[str] = set()
    defaults = data.get("vm_defaults") or {}
    for key, value in defaults.items():
        src: Path = ("vm_defaults", key)
        if key == "graphics":
            out.put(("defaults", "graphics"), src=src, value="vnc" if value == "vnc" else "none")
        elif _DEFAULTS_OK.get(key) == value:
            continue
        else:
            out.warn(src, f"vm_defaults.{key}: {value!r} is not configurable in vmfleet, ignored")
    for name, vm in (data.get("vms") or {}).items():
        base: Path = ("vms", name)
        target: Path = ("vms", slug(name))
        out.put(target, src=base, value={})
        for key, value in (vm or {}).items():
            src = (*base, key)
            if key == "cpus":
                out.put((*target, "vcpus"), src=src, value=value)
            elif key in ("memory", "image", "labels", "description"):
                out.put((*target, key), src=src, copy_tree=True)
            elif key == "disks":
                _disks(out, target, src, value)
            elif key == "network":
                bridges.add(str(value))
                out.put((*target, "network"), src=src, value=slug(value))
            elif key == "node_preference":
                prefs = value if isinstance(value, list) else [value]
                nodes.update(str(p) for p in prefs)
                out.put((*target, "node_preference"), src=src, value=[slug(p) for p in prefs])
            else:
                out.warn(src, f"{key}: not used by vmfleet, ignored")
    for bridge in sorted(bridges):
        out.put(
            ("networks", slug(bridge)), src=("vms",), value={"mode": "bridge", "bridge": bridge}
        )
    for node in sorted(nodes):
        out.put(
            ("hosts", slug(node)), src=("vms",), value={"uri": f"qemu+ssh://root@{node}/system"}
        )
    if nodes and data.get("vms"):
        _cluster(out, sorted(slug(n) for n in nodes))
        for name, vm in data["vms"].items():
            if "network" not in (vm or {}):
                out.put(("vms", slug(name), "nics"), src=("vms", name), value=[])
    return out.document()


def _cluster(out: Translator, nodes: list[str]) -> None:
    """The Pacemaker cluster that owns the VMs, and `ha:` for all of them."""
    replicas = min(2, len(nodes))
    out.put(
        ("clusters", CLUSTER),
        src=("vms",),
        value={
            "type": "pacemaker",
            "nodes": nodes,
            "fencing": {"enabled": False},
            "storage": {"type": "linstor", "pool": LINSTOR_POOL, "replicas": replicas},
            "command": ["ssh", "root@{node}"],
            "placement_strategy": "default",
        },
    )
    out.put(("defaults", "ha"), src=("vms",), value=CLUSTER)
    out.warn(("vms",), f"clusters.{CLUSTER}: fencing is off; set fencing.agent for the cluster")
    out.warn(
        ("vms",),
        f"clusters.{CLUSTER}: no utilization placement (node capacity unknown); set "
        "hosts.NODE.capacity and placement_strategy: balanced",
    )
    if len(nodes) < 2:
        out.warn(
            ("vms",),
            f"clusters.{CLUSTER}: only {', '.join(nodes)} is named by node_preference; add the "
            "other nodes (as hosts and cluster nodes) and set storage.replicas: 2",
        )


def _disks(out: Translator, target: Path, src: Path, disks: Any) -> None:
    if not isinstance(disks, list) or not disks:
        out.warn(src, "disks: expected a list of {name, size}, ignored")
        return
    for i, disk in enumerate(disks):
        disk_src: Path = (*src, i)
        if not isinstance(disk, dict) or "size" not in disk:
            out.warn(disk_src, "disk without a size, ignored")
            continue
        if i == 0:
            out.put((*target, "disk"), src=(*disk_src, "size"), value=disk["size"])
        else:
            entry = {"size": disk["size"]}
            if disk.get("name"):
                entry["name"] = slug(disk["name"])
            out.put((*target, "data_disks", i - 1), src=disk_src, value=entry)
