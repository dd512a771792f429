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
    """An inventory whose `vms` group has hosts carrying vm_* variables."""
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
    assert found is not None
    base, group = found
    out = Translator(source)
    shared: dict[str, Any] = group["vars"] if isinstance(group.get("vars"), dict) else {}
    networks: dict[str, dict[str, Any]] = {}
    for host_key, host in group["hosts"].items():
        src: Path = (*base, "hosts", host_key)
        merged = {**shared, **(host or {})}
        name = slug(merged.get("vm_name") or host_key)
        target: Path = ("vms", name)
        out.put(target, src=src, value={})
        for key, value in merged.items():
            key_src = (*src, key) if key in (host or {}) else (*base, "vars", key)
            if key in _DIRECT:
                out.put((*target, _DIRECT[key]), src=key_src, copy_tree=True)
            elif key == "vm_name":
                continue
            elif key == "vm_hostname":
                if slug(value) != name and int(merged.get("replicas", 1)) == 1:
                    out.put((*target, "hostname"), src=key_src, value=slug(value))
            elif key == "vm_mac_address":
                out.put((*target, "mac_addresses"), src=key_src, value=[value])
            elif key == "vm_static_ip":
                out.put((*target, "ips"), src=key_src, value=[value])
            elif key in ("vm_packages", "packages"):
                _cloud_init(out, target, "packages", key_src, list(value or []))
            elif key == "install_docker":
                if value:
                    _add_package(out, target, key_src, "docker.io")
            elif key in ("vm_user", "vm_username"):
                _cloud_init(out, target, "user", key_src, slug(value))
            elif key == "vm_password":
                _cloud_init(out, target, "password", key_src, str(value))
            elif key == "vm_ssh_public_key":
                _cloud_init(out, target, "ssh_keys", key_src, [str(value)])
            elif key in ("vm_network", "vm_bridge") or str(key).startswith(_SILENT):
                continue
            else:
                out.warn(key_src, f"{key}: not used by vmfleet, ignored")
        _network(out, target, src, merged, networks)
    for net_name, spec in networks.items():
        out.put(("networks", net_name), src=base, value=spec)
    return out.document()


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
    ips = [str(ip) for ip in host.get("vm_static_ips") or []]
    if host.get("vm_static_ip"):
        ips.append(str(host["vm_static_ip"]))
    cidr = _enclosing_cidr(ips)
    if host.get("vm_network"):
        name = slug(host["vm_network"])
        spec: dict[str, Any] = {"mode": "existing", "name": str(host["vm_network"])}
    elif host.get("vm_bridge"):
        name = slug(host["vm_bridge"])
        spec = {"mode": "bridge", "bridge": str(host["vm_bridge"])}
    elif cidr:
        name = "net-" + slug(cidr.split("/")[0])
        spec = {"mode": "nat"}
    else:
        return
    if cidr:
        spec["cidr"] = cidr
    existing = networks.setdefault(name, spec)
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
