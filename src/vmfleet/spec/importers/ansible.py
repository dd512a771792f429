"""The replicas doc's Ansible `inventory.yml`: `vms: hosts: NAME: {vm_name, replicas, ...}`.

`vm_memory` is MiB, `vm_disk_size` takes units (`40G`), `vm_mac_addresses` and
`vm_static_ips` have one entry per replica. The VM's name is `vm_name` (else the host key).
Static IPs need a network: `vm_network` names an existing libvirt network, `vm_bridge` a host
bridge; with neither, a NAT network is declared over the /24 that holds the IPs. Keys vmfleet
has no use for (`ansible_*`, shared folders, GPU passthrough) are reported as warnings.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vmfleet.errors import SpecError
from vmfleet.spec.importers.common import Translator, slug
from vmfleet.spec.source import Document, Path

_DIRECT = {
    "vm_memory": "memory",
    "vm_vcpus": "vcpus",
    "vm_disk_size": "disk",
    "replicas": "replicas",
    "vm_mac_addresses": "mac_addresses",
    "vm_static_ips": "ips",
    "vm_image": "image",
    "vm_labels": "labels",
    "vm_description": "description",
}
_SILENT = ("ansible_", "vm_os_variant", "vm_state", "vm_autostart")


def _vms_node(data: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    vms = data.get("vms")
    if isinstance(vms, dict) and isinstance(vms.get("hosts"), dict):
        return ("vms",), vms
    children = data.get("all", {}).get("children", {}) if isinstance(data.get("all"), dict) else {}
    vms = children.get("vms") if isinstance(children, dict) else None
    if isinstance(vms, dict) and isinstance(vms.get("hosts"), dict):
        return ("all", "children", "vms"), vms
    return None


def looks_like(data: dict[str, Any]) -> bool:
    """An inventory whose `vms` group has hosts carrying vm_* variables, or any inventory
    rooted at `all:` (a native fleet file has no `all` key), so that one vmfleet cannot read
    gets an error about inventories rather than about unknown keys."""
    if isinstance(data.get("all"), dict):
        return True
    found = _vms_node(data)
    if found is None:
        return False
    hosts = found[1]["hosts"]
    return any(
        isinstance(h, dict) and any(str(k).startswith("vm_") or k == "replicas" for k in h)
        for h in hosts.values()
    )


def convert(source: Document) -> Document:
    """The native form of an inventory: one template per inventory host."""
    found = _vms_node(source.data)
    if found is None:
        raise SpecError([source.problem(("all",), _unsupported())])
    base, group = found
    out = Translator(source)
    shared = out.mapping((*base, "vars"), "the group's vars") or {}
    networks: dict[str, dict[str, Any]] = {}
    for host_key in group["hosts"]:
        src: Path = (*base, "hosts", host_key)
        host = out.mapping(src, f"host {host_key!r}")
        if host is None:
            continue
        merged = {**shared, **host}
        where = {key: (*src, key) if key in host else (*base, "vars", key) for key in merged}
        if "vm_name" in merged:
            name = out.name("vms", merged["vm_name"], src=where["vm_name"], explicit=True)
        else:
            name = out.name("vms", host_key, src=src, explicit=False)
        if name is None:
            continue
        target: Path = ("vms", name)
        out.put(target, src=src, value={})
        for key, value in merged.items():
            _variable(out, target, key, value, where[key], merged)
        _network(out, target, src, merged, networks)
    for net_name, spec in networks.items():
        out.put(("networks", net_name), src=base, value=spec)
    return out.document()


def _unsupported() -> str:
    return (
        "an Ansible inventory without a `vms` group whose hosts carry vm_* variables; "
        "vmfleet reads `vms: hosts: NAME: {vm_name, vm_memory, replicas, ...}`"
    )


def _variable(
    out: Translator, target: Path, key: Any, value: Any, key_src: Path, merged: dict[str, Any]
) -> None:
    """One inventory variable into the VM at `target`."""
    if key in _DIRECT:
        out.put((*target, _DIRECT[key]), src=key_src, copy_tree=True)
    elif key == "vm_name" or key in ("vm_network", "vm_bridge") or str(key).startswith(_SILENT):
        return
    elif key == "vm_hostname":
        replicas = merged.get("replicas", 1)
        if replicas == 1 and value != target[1]:
            out.put((*target, "hostname"), src=key_src, value=value)
        elif replicas != 1:
            out.warn(key_src, "vm_hostname: ignored with replicas, each VM is named after itself")
    elif key == "vm_mac_address":
        out.put((*target, "mac_addresses"), src=key_src, value=[value])
    elif key == "vm_static_ip":
        out.put((*target, "ips"), src=key_src, value=[value])
    elif key in ("vm_packages", "packages"):
        if value is not None and not isinstance(value, list):
            out.error(key_src, f"{key}: expected a list of package names, got {value!r}")
            return
        _cloud_init(out, target, "packages", key_src, list(value or []))
    elif key == "install_docker":
        if value:
            _add_package(out, target, key_src, "docker.io")
    elif key in ("vm_user", "vm_username"):
        _cloud_init(out, target, "user", key_src, value)
    elif key == "vm_password":
        _cloud_init(out, target, "password", key_src, value)
    elif key == "vm_ssh_public_key":
        keys = value if isinstance(value, list) else [value]
        paths = [k for k in keys if isinstance(k, str) and k.strip().startswith(("/", "~", "."))]
        if paths:
            out.error(
                key_src, f"{paths[0]!r} is a path; give the public key itself (ssh-ed25519 AAAA...)"
            )
        else:
            _cloud_init(out, target, "ssh_keys", key_src, keys)
    else:
        out.warn(key_src, f"{key}: not used by vmfleet, ignored")


def _cloud_init(out: Translator, target: Path, field: str, src: Path, value: Any) -> None:
    ci = out.data["vms"][target[1]].setdefault("cloud_init", {})
    if field == "packages" and "packages" in ci:
        ci["packages"] = [*ci["packages"], *[p for p in value if p not in ci["packages"]]]
        return
    out.put((*target, "cloud_init", field), src=src, value=value)


def _add_package(out: Translator, target: Path, src: Path, package: str) -> None:
    _cloud_init(out, target, "packages", src, [package])


def _network(
    out: Translator,
    target: Path,
    src: Path,
    host: dict[str, Any],
    networks: dict[str, dict[str, Any]],
) -> None:
    listed = host.get("vm_static_ips")
    ips = [str(ip) for ip in listed] if isinstance(listed, list) else []
    if host.get("vm_static_ip"):
        ips.append(str(host["vm_static_ip"]))
    cidr = _enclosing_cidr(ips)
    for key in ("vm_network", "vm_bridge"):
        if host.get(key) is not None and not isinstance(host[key], str):
            out.error((*src, key), f"{key}: expected a name, got {host[key]!r}")
            return
    if host.get("vm_network"):
        name = slug(host["vm_network"])
        spec: dict[str, Any] = {"mode": "existing", "name": host["vm_network"]}
    elif host.get("vm_bridge"):
        name = slug(host["vm_bridge"])
        spec = {"mode": "bridge", "bridge": host["vm_bridge"]}
    elif cidr:
        name = "net-" + slug(cidr.split("/")[0])
        spec = {"mode": "nat"}
    else:
        return
    existing = networks.setdefault(name, dict(spec))
    if any(existing.get(k) != v for k, v in spec.items()):
        out.error(src, f"{spec} and {existing} would both be the network {name!r}")
        return
    if "cidr" not in existing and cidr:
        existing["cidr"] = cidr
    out.put((*target, "network"), src=src, value=name)


def _enclosing_cidr(ips: list[str]) -> str | None:
    """The /24 holding the given addresses (widened until it holds them all)."""
    try:
        addresses = [ipaddress.IPv4Address(ip) for ip in ips]
    except ValueError:
        return None
    if not addresses:
        return None
    prefix = 24
    while prefix > 8:
        net = ipaddress.IPv4Network(f"{addresses[0]}/{prefix}", strict=False)
        if all(a in net for a in addresses):
            return str(net)
        prefix -= 1
    return None
