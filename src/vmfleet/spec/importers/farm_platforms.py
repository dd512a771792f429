"""ansible_farm's platform task files (seed 003) as images and platform settings of a farm.

Given beside the inventory, `debian_12.yaml` defines platform `debian_12`: for each of its
matrix cells the file is evaluated (`farm_tasks`) and the resulting `vm` becomes:

- an image `images.<platform>-<target>` (made a valid name): the `fetch.yaml` callback's
  URL, the target's arch, `extend_and_convert.yaml`'s `from_format` as its format and
  `{to_format, size}` as `prepare: {format, size}`, `setup_image.yaml` as `prepare.setup`
  for `auth.user`. The files hold no checksum: for a Debian URL the digest is read from the
  `SHA512SUMS` beside the image at the first pull and pinned (`checksums:`); for another
  host the image is left out with a warning saying to give its sha256;
- `farm.platforms.<platform>`: `images` per target, `user` (auth.user), `vcpus`, `memory`
  (`ram`, MiB).

Passwords are never copied or shown; what has no place in a farm (`net`, `disks` names,
`connection`, `become_*`) is a warning with its position. An unknown callback is an error.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any
from urllib.parse import urlsplit

from vmfleet.errors import Position, Problem
from vmfleet.spec.farm import BUILTIN_TARGETS
from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.importers.farm_detect import Reader
from vmfleet.spec.importers.farm_tasks import Origins, Walk
from vmfleet.spec.importers.templating import Unknown
from vmfleet.spec.source import Document

CALLBACKS = ("fetch.yaml", "copy.yaml", "extend_and_convert.yaml", "setup_image.yaml")
_DEBIAN_HOSTS = ("cdimage.debian.org", "cloud.debian.org")
_SECRETS = ("password", "become_password")
_NO_PLACE = {
    "name": "vmfleet names each cell's VM itself",
    "connection": "the VM runs on a hypervisor of the inventory's `hypervisors` group",
    "become_user": "farm.platforms has no privilege escalation setting",
    "become_method": "farm.platforms has no privilege escalation setting",
    "net": "farm.platforms has no network setting",
    "disks": "the cell's VM gets one disk, from the platform's image",
}


def convert(
    out: Translator, files: list[Document], cells: list[tuple[str, str]], read: Reader
) -> set[str]:
    """Add the images and platform settings of each platform file whose platform is in the
    matrix; the platforms that got an image for every target."""
    complete: set[str] = set()
    imported: set[FsPath] = set()
    origins = Origins()
    warnings: dict[str, None] = {}
    for doc in files:
        platform = FsPath(doc.file).stem
        targets = list(dict.fromkeys(t for p, t in cells if p == platform))
        if not targets:
            continue
        root = FsPath(doc.file).resolve().parent
        done = 0
        for target in targets:
            cell = {"metadata": {"platform_name": platform, "target_name": target}}
            walk = Walk(root, read, cell, origins, warnings, out.problems, imported)
            vm = walk.run(doc)
            if out.problems:
                return complete
            done += _cell(out, _Cell(platform, target, vm, origins, warnings, doc))
        if done == len(targets):
            complete.add(platform)
    used = {p for p, _ in cells}
    for doc in files:
        name = FsPath(doc.file).stem
        if name not in used and FsPath(doc.file).resolve() not in imported:
            warnings[f"{doc.file}:1:1: platform {name!r} is not in the matrix; ignored"] = None
    out.warnings += list(warnings)
    return complete


@dataclass(frozen=True)
class _Cell:
    """One matrix cell's evaluated `vm` and where to report on it."""

    platform: str
    target: str
    vm: Any
    origins: Origins
    warnings: dict[str, None]
    doc: Document

    def at(self, container: Any, key: Any = None) -> Position | None:
        found = self.origins.position(container, key)
        return found or self.doc.position(())

    def warn(self, where: Position | None, message: str) -> None:
        self.warnings[f"{where}: {message}" if where else message] = None


def _cell(out: Translator, cell: _Cell) -> bool:
    """Write the cell's image and platform settings; True when it got an image."""
    vm = cell.vm
    metadata = vm.get("metadata") if isinstance(vm, dict) else None
    if not isinstance(metadata, dict):
        cell.warn(cell.at(vm), "the file sets no `vm.metadata`; no image")
        return False
    _platform(out, cell, vm, metadata)
    sources = metadata.get("sources")
    if not isinstance(sources, list) or not sources or not isinstance(sources[0], dict):
        cell.warn(cell.at(metadata, "sources"), "no `vm.metadata.sources`; no image")
        return False
    if len(sources) > 1:
        cell.warn(cell.at(sources, 1), "only the first of `sources` is imported")
    steps = sources[0].get("before_provision")
    if not isinstance(steps, list):
        cell.warn(cell.at(sources[0]), "no `before_provision` steps; no image")
        return False
    image = _image(out, cell, steps, metadata)
    if image is None:
        return False
    name = slug(f"{cell.platform}-{cell.target}")
    for key, (value, where) in image.fields.items():
        out.place(("images", name, *key), value, at=where)
    if image.set_up_at is not None:  # no cloud-init: its VMs make their host keys at boot
        out.place(("ssh", "host_keys"), "accept-new", at=image.set_up_at)
    out.place(("farm", "platforms", cell.platform, "images", cell.target), name, at=None)
    return True


Placed = dict[tuple[str, ...], tuple[Any, Position | None]]


@dataclass
class _Image:
    """An image's native fields, each with its position, as the callback steps give them."""

    fields: Placed = field(default_factory=dict)
    set_up_at: Position | None = None  # where setup_image.yaml is, when given
    unevaluated: bool = False  # the fetch URL could not be evaluated (warned)


def _image(
    out: Translator, cell: _Cell, steps: list[Any], metadata: dict[str, Any]
) -> _Image | None:
    """The image from the callback steps; None when the cell gets none (said why)."""
    image = _Image()
    for step in steps:
        if not isinstance(step, dict):
            cell.warn(cell.at(steps), "a before_provision step must be a mapping; ignored")
            continue
        callback = step.get("callback")
        kind = posixpath.basename(callback) if isinstance(callback, str) else None
        if kind not in CALLBACKS:
            named = repr(callback[:80]) if isinstance(callback, str) else "(none)"
            known = ", ".join(CALLBACKS)
            where = cell.at(step, "callback")
            out.problems.append(Problem(where, "", f"unknown callback {named}; known: {known}"))
            return None
        _STEPS[kind](cell, step, image, metadata)
    if image.unevaluated:
        return None
    if ("source",) not in image.fields:
        cell.warn(cell.at(steps), "no fetch.yaml step with a URL; no image")
        return None
    target = BUILTIN_TARGETS.get(cell.target)
    arch = target.arch if target is not None else None
    if arch is None:
        return None  # an unknown target: the farm section says so
    image.fields[("arch",)] = (arch, image.fields[("source",)][1])
    return image


def _fetch(cell: _Cell, step: dict[str, Any], image: _Image, metadata: dict[str, Any]) -> None:
    url = step.get("src")
    where = cell.at(step, "src")
    if isinstance(url, Unknown):  # why is warned where it was evaluated
        image.unevaluated = True
        cell.warn(where, "fetch.yaml: the URL cannot be evaluated; no image")
        return
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        cell.warn(where, "fetch.yaml: src is not an http(s) URL; no image")
        return
    host = urlsplit(url).hostname or ""
    if host not in _DEBIAN_HOSTS:
        cell.warn(
            where,
            f"fetch.yaml: {url} has no checksum in the file; give images."
            f"{slug(f'{cell.platform}-{cell.target}')}.sha256 in the converted file (no image)",
        )
        return
    sums = url.rsplit("/", 1)[0] + "/SHA512SUMS"
    image.fields[("source",)] = (url, where)
    image.fields[("checksums",)] = (sums, where)
    cell.warn(
        where,
        f"fetch.yaml: no checksum in the file; the image's digest is read from {sums} "
        "at the first pull and pinned (set sha256 to fix it now)",
    )


def _copy(cell: _Cell, step: dict[str, Any], image: _Image, metadata: dict[str, Any]) -> None:
    """vmfleet copies the base image itself: nothing to import."""


def _extend(cell: _Cell, step: dict[str, Any], image: _Image, metadata: dict[str, Any]) -> None:
    for key, native in (("from_format", ("format",)), ("to_format", ("prepare", "format"))):
        value = step.get(key)
        if isinstance(value, str) and value in ("qcow2", "raw"):
            image.fields[native] = (value, cell.at(step, key))
        elif value is not None and not isinstance(value, Unknown):
            cell.warn(
                cell.at(step, key), f"extend_and_convert: {key} must be qcow2 or raw; ignored"
            )
    size = step.get("size")
    if size is not None and not isinstance(size, Unknown):
        image.fields[("prepare", "size")] = (size, cell.at(step, "size"))
    if step.get("partition_number") not in (None, 1, "1"):
        cell.warn(
            cell.at(step, "partition_number"),
            "extend_and_convert: vmfleet grows the image's last partition",
        )


def _setup(cell: _Cell, step: dict[str, Any], image: _Image, metadata: dict[str, Any]) -> None:
    auth = metadata.get("auth")
    user = auth.get("user") if isinstance(auth, dict) else None
    where = cell.at(step, "keys_path")
    if isinstance(user, str):
        image.fields[("prepare", "setup", "user")] = (user, cell.at(auth, "user"))
    else:
        image.fields[("prepare", "setup")] = ({}, where)
    cell.warn(
        where,
        "setup_image.yaml: the image gets the fleet's key (ssh.private_key); its VMs make "
        "their SSH host keys at first boot, so ssh.host_keys is accept-new",
    )
    image.set_up_at = where


_STEPS: dict[str, Callable[[_Cell, dict[str, Any], _Image, dict[str, Any]], None]] = {
    "fetch.yaml": _fetch,
    "copy.yaml": _copy,
    "extend_and_convert.yaml": _extend,
    "setup_image.yaml": _setup,
}


def _platform(out: Translator, cell: _Cell, vm: dict[str, Any], metadata: dict[str, Any]) -> None:
    """vcpus, ram and the login user as the platform's settings; the rest warned about."""
    base = ("farm", "platforms", cell.platform)
    for key, native in (("vcpus", "vcpus"), ("ram", "memory")):
        if key in vm and not isinstance(vm[key], Unknown):
            out.place((*base, native), vm[key], at=cell.at(vm, key))
    auth = metadata.get("auth")
    if isinstance(auth, dict):
        if isinstance(auth.get("user"), str):
            out.place((*base, "user"), auth["user"], at=cell.at(auth, "user"))
        for key in auth:
            if key in _SECRETS:
                cell.warn(
                    cell.at(auth, key),
                    f"auth.{key} is not imported (a secret): vmfleet logs in with the fleet's key",
                )
            elif key != "user":
                cell.warn(
                    cell.at(auth, key),
                    f"auth.{key}: {_NO_PLACE.get(key, 'no place in vmfleet')}; ignored",
                )
    for key in metadata:
        if key in _NO_PLACE:
            cell.warn(cell.at(metadata, key), f"metadata.{key}: {_NO_PLACE[key]}; ignored")
        elif key not in ("sources", "auth", "platform_name", "target_name"):
            cell.warn(cell.at(metadata, key), f"metadata.{key} has no use in vmfleet; ignored")
    for key in vm:
        if key in _NO_PLACE:
            cell.warn(cell.at(vm, key), f"{key}: {_NO_PLACE[key]}; ignored")
        elif key not in ("metadata", "vcpus", "ram"):
            cell.warn(cell.at(vm, key), f"{key!r} has no use in vmfleet; ignored")
