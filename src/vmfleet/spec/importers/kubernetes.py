"""Kubernetes-style manifests (vm-operator): VirtualMachine, VirtualMachineGroup and
VirtualMachineClass documents, in one multi-document file.

- VirtualMachine: `metadata.name` is the VM, `metadata.labels` its labels, `spec.groupName`
  its group, `spec.imageName` its image, `spec.className` a profile when a
  VirtualMachineClass of that name is in the file (else a `vm-class` label), `spec.affinity`
  its affinity rules (same shape).
- VirtualMachineGroup: `spec.powerState`, `spec.bootOrder` (members by name, `delay`),
  `spec.groupName` for nesting.
- `metadata.namespace` becomes the fleet name when all documents agree.
Images named only by `imageName` are declared with source `images/<name>.qcow2`, relative
to the fleet file, so the file loads as it is and `vmfleet convert` shows what to fill in.
"""

from __future__ import annotations

from typing import Any

from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.source import Document, Path

KINDS = ("VirtualMachine", "VirtualMachineGroup", "VirtualMachineClass")


API_GROUP = "vmoperator.vmware.com/"


def convert(documents: list[Document], *, file: str) -> Document:
    """One native document from all manifests (each keeps its own positions)."""
    merged = Document(file, {}, {})
    for i, doc in enumerate(documents):
        merged.data[i] = doc.data
        for path, pos in doc.positions.items():
            merged.positions[(i, *path)] = pos
    out = Translator(merged)
    manifests = [m for i in range(len(documents)) if (m := _manifest(out, i)) is not None]
    classes = {name for i, kind, name, _ in manifests if kind == "VirtualMachineClass"}
    namespaces: set[str] = set()
    for i, kind, name, meta in manifests:
        if isinstance(meta.get("namespace"), str):
            namespaces.add(meta["namespace"])
        spec = out.mapping((i, "spec"), "spec")
        if spec is None:
            continue
        if kind == "VirtualMachine":
            _vm(out, i, name, meta, spec, classes)
        elif kind == "VirtualMachineGroup":
            _group(out, i, name, spec)
        else:
            _class(out, i, name, spec)
    if len(namespaces) == 1 and not out.problems:
        out.put(("fleet",), src=(0, "metadata", "namespace"), value=slug(namespaces.pop()))
    return out.document()


def _manifest(out: Translator, i: int) -> tuple[int, str, str, dict[str, Any]] | None:
    """(index, kind, name, metadata) of document `i`, or None after reporting why not."""
    data = out.source.data[i]
    if not isinstance(data, dict):
        out.error((i,), "a manifest must be a mapping")
        return None
    kind, api = data.get("kind"), data.get("apiVersion")
    if kind not in KINDS:
        out.error((i, "kind"), f"unsupported kind {kind!r}; expected one of {', '.join(KINDS)}")
        return None
    if not isinstance(api, str) or not api.startswith(API_GROUP):
        out.error(
            (i, "apiVersion"),
            f"apiVersion {api!r} is not supported: vmfleet reads vm-operator manifests "
            f"({API_GROUP}v1alpha1 to v1alpha5), not KubeVirt or other VirtualMachine kinds",
        )
        return None
    meta = out.mapping((i, "metadata"), "metadata")
    if meta is None:
        return None
    if not meta.get("name"):
        out.error((i, "metadata"), "metadata.name is required")
        return None
    section = {"VirtualMachine": "vms", "VirtualMachineGroup": "groups"}.get(kind, "profiles")
    name = out.name(section, meta["name"], src=(i, "metadata", "name"), explicit=True)
    return None if name is None else (i, kind, name, meta)


def _vm(
    out: Translator,
    i: int,
    name: str,
    meta: dict[str, Any],
    spec: dict[str, Any],
    classes: set[str],
) -> None:
    target: Path = ("vms", name)
    out.put(target, src=(i, "metadata", "name"), value={})
    labels = out.mapping((i, "metadata", "labels"), "metadata.labels")
    if labels:
        out.put((*target, "labels"), src=(i, "metadata", "labels"), copy_tree=True)
    for key, value in spec.items():
        key_src: Path = (i, "spec", key)
        if key == "groupName":
            out.put((*target, "group"), src=key_src, value=value)
        elif key == "imageName":
            _image(out, target, key_src, value)
        elif key == "className":
            if isinstance(value, str) and value in classes:
                out.put((*target, "extends"), src=key_src, value=[value])
            elif isinstance(value, str) and labels is not None:
                out.data["vms"][name].setdefault("labels", {})["vm-class"] = value
                out.positions.setdefault((*target, "labels"), out.source.position(key_src))
                out.positions[(*target, "labels", "vm-class")] = out.source.position(key_src)
            elif labels is not None:
                out.error(key_src, f"className: expected a name, got {value!r}")
        elif key == "affinity":
            out.put((*target, "affinity"), src=key_src, copy_tree=True)
        else:
            out.warn(key_src, f"spec.{key}: not used by vmfleet, ignored")


def _image(out: Translator, target: Path, src: Path, value: Any) -> None:
    """`imageName` as an image declared at images/<name>.qcow2 (names made valid, with a
    warning; two that become the same name are a problem)."""
    if not isinstance(value, str):
        out.error(src, f"imageName: expected a name, got {value!r}")
        return
    image = slug(value)
    sources = out.data.setdefault("images", {})
    wanted = {"source": f"images/{value}.qcow2"}
    if image not in sources:
        out.put(("images", image), src=src, value=wanted)
    elif sources[image] != wanted:
        first = out.positions.get(("images", image))
        out.error(src, f"imageName {value!r} and the image at {first} would both be {image!r}")
        return
    out.put((*target, "image"), src=src, value=image)


def _group(out: Translator, i: int, name: str, spec: dict[str, Any]) -> None:
    target: Path = ("groups", name)
    out.put(target, src=(i, "metadata", "name"), value={})
    for key, value in spec.items():
        key_src: Path = (i, "spec", key)
        if key == "powerState":
            out.put((*target, "power_state"), src=key_src, value=value)
        elif key == "groupName":
            out.put((*target, "group"), src=key_src, value=value)
        elif key == "bootOrder":
            _boot_order(out, target, key_src, value)
        else:
            out.warn(key_src, f"spec.{key}: not used by vmfleet, ignored")


def _boot_order(out: Translator, target: Path, src: Path, tiers: Any) -> None:
    if not isinstance(tiers, list):
        out.error(src, f"bootOrder: expected a list of tiers, got {tiers!r}")
        return
    for t in range(len(tiers)):
        tier_src: Path = (*src, t)
        tier = out.mapping(tier_src, "a bootOrder tier")
        members = tier.get("members", []) if tier is not None else None
        if not isinstance(members, list):
            if tier is not None:
                out.error((*tier_src, "members"), "members: expected a list")
            continue
        entry: dict[str, Any] = {
            "members": [m.get("name") if isinstance(m, dict) else m for m in members],
        }
        out.put((*target, "boot_order", t), src=tier_src, value=entry)
        for m in range(len(members)):
            out.positions[(*target, "boot_order", t, "members", m)] = out.source.position(
                (*tier_src, "members", m)
            )
        if tier is not None and tier.get("delay") is not None:
            entry["delay"] = tier["delay"]
            out.positions[(*target, "boot_order", t, "delay")] = out.source.position(
                (*tier_src, "delay")
            )


def _class(out: Translator, i: int, name: str, spec: dict[str, Any]) -> None:
    target: Path = ("profiles", name)
    out.put(target, src=(i, "metadata", "name"), value={})
    hardware = out.mapping((i, "spec", "hardware"), "spec.hardware") or {}
    for key, field in (("cpus", "vcpus"), ("memory", "memory")):
        if key in hardware:
            out.put((*target, field), src=(i, "spec", "hardware", key), value=hardware[key])
