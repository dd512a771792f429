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

from vmfleet.errors import Problem, SpecError
from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.source import Document, Path

KINDS = ("VirtualMachine", "VirtualMachineGroup", "VirtualMachineClass")


def convert(documents: list[Document], *, file: str) -> Document:
    """One native document from all manifests (each keeps its own positions)."""
    merged = Document(file, {}, {})
    for i, doc in enumerate(documents):
        merged.data[i] = doc.data
        for path, pos in doc.positions.items():
            merged.positions[(i, *path)] = pos
    out = Translator(merged)
    problems: list[Problem] = []
    classes = {
        str(d.data.get("metadata", {}).get("name")): i
        for i, d in enumerate(documents)
        if isinstance(d.data, dict) and d.data.get("kind") == "VirtualMachineClass"
    }
    namespaces: set[str] = set()
    for i, doc in enumerate(documents):
        data = doc.data
        if not isinstance(data, dict):
            problems.append(merged.problem((i,), "a manifest must be a mapping"))
            continue
        kind = data.get("kind")
        meta = data.get("metadata") or {}
        name = meta.get("name")
        if kind not in KINDS:
            problems.append(
                merged.problem(
                    (i, "kind"), f"unsupported kind {kind!r}; expected one of {', '.join(KINDS)}"
                )
            )
            continue
        if not name:
            problems.append(merged.problem((i, "metadata"), "metadata.name is required"))
            continue
        if meta.get("namespace"):
            namespaces.add(str(meta["namespace"]))
        spec = data.get("spec") or {}
        if kind == "VirtualMachine":
            _vm(out, i, str(name), meta, spec, classes)
        elif kind == "VirtualMachineGroup":
            _group(out, i, str(name), spec)
        else:
            _class(out, i, str(name), spec)
    if problems:
        raise SpecError(problems)
    if len(namespaces) == 1:
        out.put(("fleet",), src=(0, "metadata", "namespace"), value=slug(namespaces.pop()))
    return out.document()


def _vm(
    out: Translator,
    i: int,
    name: str,
    meta: dict[str, Any],
    spec: dict[str, Any],
    classes: dict[str, int],
) -> None:
    target: Path = ("vms", name)
    src: Path = (i, "metadata", "name")
    out.put(target, src=src, value={})
    if meta.get("labels"):
        out.put((*target, "labels"), src=(i, "metadata", "labels"), copy_tree=True)
    for key, value in spec.items():
        key_src: Path = (i, "spec", key)
        if key == "groupName":
            out.put((*target, "group"), src=key_src, value=value)
        elif key == "imageName":
            image = slug(value)
            out.put((*target, "image"), src=key_src, value=image)
            if image not in out.data.get("images", {}):
                out.put(("images", image), src=key_src, value={"source": f"images/{value}.qcow2"})
        elif key == "className":
            if str(value) in classes:
                out.put((*target, "extends"), src=key_src, value=[slug(value)])
            else:
                labels = out.data["vms"][name].setdefault("labels", {})
                labels["vm-class"] = slug(value)
        elif key == "affinity":
            out.put((*target, "affinity"), src=key_src, copy_tree=True)
        elif key in ("storageClass", "powerState", "minHardwareVersion"):
            out.warn(key_src, f"spec.{key}: not used by vmfleet, ignored")
        else:
            out.warn(key_src, f"spec.{key}: not used by vmfleet, ignored")


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
            for t, tier in enumerate(value or []):
                tier_src: Path = (*key_src, t)
                entry: dict[str, Any] = {
                    "members": [
                        m.get("name") if isinstance(m, dict) else m
                        for m in (tier or {}).get("members", [])
                    ],
                }
                out.put((*target, "boot_order", t), src=tier_src, value=entry)
                for m in range(len(entry["members"])):
                    out.positions[(*target, "boot_order", t, "members", m)] = out.source.position(
                        (*tier_src, "members", m)
                    )
                if (tier or {}).get("delay") is not None:
                    entry["delay"] = tier["delay"]
                    out.positions[(*target, "boot_order", t, "delay")] = out.source.position(
                        (*tier_src, "delay")
                    )
        else:
            out.warn(key_src, f"spec.{key}: not used by vmfleet, ignored")


def _class(out: Translator, i: int, name: str, spec: dict[str, Any]) -> None:
    target: Path = ("profiles", slug(name))
    out.put(target, src=(i, "metadata", "name"), value={})
    hardware = spec.get("hardware") or {}
    if "cpus" in hardware:
        out.put((*target, "vcpus"), src=(i, "spec", "hardware", "cpus"), value=hardware["cpus"])
    if "memory" in hardware:
        out.put(
            (*target, "memory"), src=(i, "spec", "hardware", "memory"), value=hardware["memory"]
        )
