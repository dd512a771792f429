"""The ansible_farm test-farm inventory (seed 003) as a native `farm:` section.

`all.hosts.<controller>.config` holds the matrix (`permutations: {targets, platforms}` and
`list`); `all.children.hypervisors` the libvirt hosts (`ansible_host`, `ansible_user` and
`ansible_libvirt_uri` become a `qemu+ssh://` URI); other children named after a platform or
a target carry its variables (`wait_until_port_reachable`, `snapshot_type`); `vms.vars` the
project (`project_id`, `project_revision`, `allowed_phases`) and the SSH key. Platforms are
defined in ansible_farm's task files: those given beside the inventory become images and
platform settings (`farm_platforms`); any other platform gets an entry without an image, and
a warning says to name one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from vmfleet.spec.farm import BUILTIN_TARGETS
from vmfleet.spec.importers.common import Translator
from vmfleet.spec.importers.farm_detect import Reader
from vmfleet.spec.source import Document, Path

_HOST_SILENT = ("ansible_connection", "ansible_python_interpreter", "ansible_port")
_VMS_SILENT = ("ansible_connection", "ansible_host", "ansible_user")


def looks_like(data: dict[str, Any]) -> bool:
    """An inventory rooted at `all:` whose hosts carry a `config` with the farm matrix."""
    top = data.get("all")
    hosts = top.get("hosts") if isinstance(top, dict) else None
    return isinstance(hosts, dict) and any(
        isinstance(h, dict)
        and isinstance(h.get("config"), dict)
        and ("permutations" in h["config"] or "list" in h["config"])
        for h in hosts.values()
    )


def convert(
    source: Document, *, platforms: list[Document] | None = None, read: Reader | None = None
) -> Document:
    """The native form: `hosts` from the hypervisors group, and a `farm:` section; with the
    platform task files (`read` reads the files they import), images for their platforms."""
    out = Translator(source)
    top = out.mapping(("all",), "all") or {}
    children = out.mapping(("all", "children"), "all.children") or {}
    out.put(("farm",), src=("all",), value={})
    matrix = _matrix(out, top)
    _hypervisors(out, children)
    _vms(out)
    used_targets = {t for _, t in matrix}
    used_platforms = {p for p, _ in matrix}
    for platform in sorted(used_platforms):
        out.put(("farm", "platforms", platform), src=("all",), value={})
    for name in sorted(children):
        if name in ("hypervisors", "vms"):
            continue
        src: Path = ("all", "children", name)
        if name in used_platforms:
            _platform_vars(out, name, src)
        elif name in used_targets:
            _target_vars(out, name, src)
        else:
            out.warn(src, f"group {name!r} is neither a platform nor a target; ignored")
    complete: set[str] = set()
    if platforms and read is not None and not out.problems:
        from vmfleet.spec.importers import farm_platforms  # Jinja2: only with platform files

        complete = farm_platforms.convert(out, platforms, matrix, read)
    for platform in sorted(used_platforms - complete):
        out.warn(
            ("all",),
            f"platform {platform!r} is defined in ansible_farm's task files, not the "
            f"inventory: give its file ({platform}.yaml) with the inventory, or set "
            f"farm.platforms.{platform}.image to an image of `images:`",
        )
    return out.document()


def _matrix(out: Translator, top: dict[str, Any]) -> list[tuple[str, str]]:
    """The controller host's `config` as farm.matrix; the cells it names."""
    cells: list[tuple[str, str]] = []
    for host, value in (top.get("hosts") or {}).items():
        src: Path = ("all", "hosts", host)
        if not isinstance(value, dict) or "config" not in value:
            continue
        for key in value:
            if key != "config" and key not in _HOST_SILENT:
                out.warn((*src, key), f"{key!r} has no use in vmfleet; ignored")
        config = out.mapping((*src, "config"), "config") or {}
        perm = out.mapping((*src, "config", "permutations"), "config.permutations") or {}
        for key in ("targets", "platforms"):
            if key in perm:
                out.put(
                    ("farm", "matrix", key),
                    src=(*src, "config", "permutations", key),
                    copy_tree=True,
                )
        for key in perm:
            if key not in ("targets", "platforms"):
                out.warn((*src, "config", "permutations", key), f"unknown key {key!r}; ignored")
        if "list" in config:
            out.put(("farm", "matrix", "list"), src=(*src, "config", "list"), copy_tree=True)
        for key in config:
            if key not in ("permutations", "list"):
                out.warn((*src, "config", key), f"unknown key {key!r}; ignored")
        targets = _list(perm.get("targets"))
        platforms = _list(perm.get("platforms"))
        cells += [(str(p), str(t)) for t in targets for p in platforms]
        listed = _list(config.get("list"))
        cells += [
            (str(c.get("platform")), str(c.get("target"))) for c in listed if isinstance(c, dict)
        ]
    return cells


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _hypervisors(out: Translator, children: dict[str, Any]) -> None:
    base: Path = ("all", "children", "hypervisors")
    if "hypervisors" not in children:
        return
    group_vars = out.mapping((*base, "vars"), "hypervisors.vars") or {}
    for host_key, host in (out.mapping((*base, "hosts"), "hypervisors.hosts") or {}).items():
        src: Path = (*base, "hosts", host_key)
        merged = {**group_vars, **(host if isinstance(host, dict) else {})}
        name = out.name("hosts", host_key, src=src, explicit=False)
        if name is None:
            continue
        out.put(("hosts", name), src=src, value={"uri": _uri(merged)})
        for key in merged:
            if key not in ("ansible_host", "ansible_user", "ansible_libvirt_uri", "ansible_port"):
                where = (*src, key) if isinstance(host, dict) and key in host else (*base, "vars")
                out.warn(where, f"{key!r} has no use in vmfleet; ignored")


def _uri(host: dict[str, Any]) -> str:
    """`qemu:///session` on `user@address` as a URI vmfleet opens from here."""
    uri = str(host.get("ansible_libvirt_uri") or "qemu:///system")
    address = host.get("ansible_host")
    if not address:
        return uri
    parts = urlsplit(uri)
    user = f"{host['ansible_user']}@" if host.get("ansible_user") else ""
    port = f":{host['ansible_port']}" if host.get("ansible_port") else ""
    return f"{parts.scheme}+ssh://{user}{address}{port}{parts.path}"


def _vms(out: Translator) -> None:
    src: Path = ("all", "children", "vms", "vars")
    values = out.mapping(src, "vms.vars") or {}
    for key, value in values.items():
        where: Path = (*src, key)
        if key == "project_id":
            out.put(("farm", "project", "id"), src=where, value=value)
        elif key == "project_revision":
            out.put(("farm", "project", "revision"), src=where, value=value)
        elif key == "allowed_phases":
            out.put(("farm", "phases", "allowed"), src=where, copy_tree=True)
        elif key == "ansible_ssh_private_key_file":
            out.put(("ssh", "private_key"), src=where, value=value)
        elif key not in _VMS_SILENT:
            out.warn(where, f"{key!r} has no use in vmfleet; ignored")


def _platform_vars(out: Translator, name: str, src: Path) -> None:
    for key, value in (out.mapping((*src, "vars"), f"{name}.vars") or {}).items():
        where: Path = (*src, "vars", key)
        if key == "wait_until_port_reachable":
            out.put(
                ("farm", "platforms", name, "ready"), src=where, value="port" if value else "ssh"
            )
        elif key == "snapshot_type":
            out.put(("farm", "platforms", name, "snapshot_type"), src=where, value=value)
        else:
            out.warn(where, f"{key!r} has no use in vmfleet; ignored")


def _target_vars(out: Translator, name: str, src: Path) -> None:
    builtin = BUILTIN_TARGETS.get(name)
    if builtin is not None:
        out.put(("farm", "targets", name), src=src, value=builtin.model_dump(exclude_none=True))
    for key in out.mapping((*src, "vars"), f"{name}.vars") or {}:
        where: Path = (*src, "vars", key)
        if key == "snapshot_type":
            out.put(("farm", "targets", name, key), src=where, copy_tree=True)
        else:
            out.warn(where, f"{key!r} has no use in vmfleet; ignored")
