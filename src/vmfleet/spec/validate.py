"""Rules that span the fleet file: references, replica arrays, duplicates, addresses.

Each rule returns Problems at the position of the offending value; `check` runs them all
so the user sees every problem in one go.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable

from vmfleet.errors import Problem
from vmfleet.spec import farm, ha_rules
from vmfleet.spec.addresses import AddressPool, allocates, gateway_of
from vmfleet.spec.models import FleetSpec, NetworkSpec, VmFields, VmTemplate
from vmfleet.spec.resolve import (
    effective,
    indexes,
    networks,
    replica_name,
    template_nics,
)
from vmfleet.spec.source import Document, Path

# Kept equal to drivers.names.RESERVED_FLEETS (a test checks): libvirt object names of
# these kinds start with `vmf-<name>.`.
RESERVED_FLEET_NAMES = frozenset({"base", "probe"})
MAX_VMS = 10_000
"""Most VMs one fleet may expand to (the other rules, and planning, are per VM)."""


def check(spec: FleetSpec, doc: Document) -> list[Problem]:
    """Every cross-field problem in a fleet spec (empty when it is sound)."""
    total = sum(t.replicas for t in spec.vms.values())
    if total > MAX_VMS:
        return [doc.problem(("vms",), f"{total} VMs in one fleet; at most {MAX_VMS} are allowed")]
    problems: list[Problem] = []
    for rule in (
        _fleet_name,
        _references,
        _replica_arrays,
        _vm_names,
        _duplicate_addresses,
        _addresses_in_networks,
        _address_pools,
        _arch_matches_image,
        _prepared_images,
        _no_internal_snapshots_with_uefi,
        _groups,
        _farm,
        ha_rules.check,
    ):
        problems.extend(rule(spec, doc))
    return problems


def _suggest(name: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _unknown(doc: Document, path: Path, kind: str, name: str, known: Iterable[str]) -> Problem:
    known = sorted(known)
    listing = ", ".join(known) if known else "none are defined"
    return doc.problem(path, f"unknown {kind} {name!r}{_suggest(name, known)}; known: {listing}")


def _farm(spec: FleetSpec, doc: Document) -> list[Problem]:
    return farm.problems(spec.farm, spec.images, doc) if spec.farm else []


def _fleet_name(spec: FleetSpec, doc: Document) -> list[Problem]:
    if spec.fleet in RESERVED_FLEET_NAMES:
        return [doc.problem(("fleet",), f"{spec.fleet!r} is reserved; choose another fleet name")]
    return []


def _vm_layers_paths(name: str, template: VmTemplate) -> list[tuple[Path, object]]:
    """(path prefix, layer) for the fields a template and its overrides set themselves."""
    out: list[tuple[Path, object]] = [(("vms", name), template)]
    out += [(("vms", name, "overrides", i), o) for i, o in template.overrides.items()]
    return out


def _references(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    nets = networks(spec)
    sources: list[tuple[Path, object]] = [(("defaults",), spec.defaults)]
    sources += [(("profiles", n), p) for n, p in spec.profiles.items()]
    for name, template in spec.vms.items():
        sources += _vm_layers_paths(name, template)
        for i, profile in enumerate(template.extends):
            if profile not in spec.profiles:
                problems.append(
                    _unknown(doc, ("vms", name, "extends", i), "profile", profile, spec.profiles)
                )
    for prefix, layer in sources:
        image = getattr(layer, "image", None)
        if image is not None and image not in spec.images:
            problems.append(_unknown(doc, (*prefix, "image"), "image", image, spec.images))
        network = getattr(layer, "network", None)
        if network is not None and network not in nets:
            problems.append(_unknown(doc, (*prefix, "network"), "network", network, nets))
        for i, nic in enumerate(getattr(layer, "nics", None) or []):
            if nic.network not in nets:
                problems.append(
                    _unknown(doc, (*prefix, "nics", i, "network"), "network", nic.network, nets)
                )
        group = getattr(layer, "group", None)
        if group is not None and group not in spec.groups:
            problems.append(_unknown(doc, (*prefix, "group"), "group", group, spec.groups))
        host = getattr(layer, "host", None)
        if host is not None and host not in _host_names(spec):
            problems.append(_unknown(doc, (*prefix, "host"), "host", host, _host_names(spec)))
        for i, pref in enumerate(getattr(layer, "node_preference", None) or []):
            if pref not in _host_names(spec):
                problems.append(
                    _unknown(doc, (*prefix, "node_preference", i), "host", pref, _host_names(spec))
                )
    return problems


def _arch_matches_image(spec: FleetSpec, doc: Document) -> list[Problem]:
    """A VM's `arch`, where a layer sets it, is its image's: an aarch64 disk boots no x86_64."""
    problems: list[Problem] = []
    for name, template in spec.vms.items():
        for index in [None, *template.overrides]:
            fields = effective(spec, template, index)
            image = spec.images.get(fields.image or "")
            if image is None or fields.arch == image.arch:
                continue
            problems.append(
                doc.problem(
                    _setting(spec, name, index, "arch"),
                    f"arch {fields.arch} does not match image {fields.image!r} ({image.arch}); "
                    "leave arch out to run the image's",
                )
            )
    return problems


def setup_user(spec: FleetSpec, image: str) -> str:
    """The user an image's `prepare.setup` gives the fleet's key to: its own `user`, else the
    image's, else `ssh.user`."""
    prepare = spec.images[image].prepare
    setup = prepare.setup if prepare else None
    return (setup.user if setup else None) or spec.images[image].user or spec.ssh.user


def _prepared_images(spec: FleetSpec, doc: Document) -> list[Problem]:
    """An image set up without cloud-init never gets the host key vmfleet makes for a VM
    (its host keys are made at first boot), and has one login user written into it."""
    problems: list[Problem] = []
    for name, image in spec.images.items():
        if image.prepare is None or image.prepare.setup is None:
            continue
        if spec.ssh.host_keys == "provided":
            problems.append(
                doc.problem(
                    ("images", name, "prepare", "setup"),
                    f"image {name!r} is set up without cloud-init, so its VMs make their own "
                    "SSH host keys at first boot; set `ssh: {host_keys: accept-new}`",
                )
            )
    for name, template in spec.vms.items():
        for index in [None, *template.overrides]:
            fields = effective(spec, template, index)
            used = spec.images.get(fields.image or "")
            if used is None or used.prepare is None or used.prepare.setup is None:
                continue
            login = fields.cloud_init.user or spec.ssh.user
            wanted = setup_user(spec, str(fields.image))
            path: Path = ("vms", name) if index is None else ("vms", name, "overrides", index)
            if login != wanted:
                problems.append(
                    doc.problem(
                        path,
                        f"VM logs in as {login!r} but image {fields.image!r} is set up for "
                        f"{wanted!r} (no cloud-init creates another user); use one user",
                    )
                )
                break
            if fields.ready.wait_for == "cloud-init":
                problems.append(
                    doc.problem(
                        path,
                        f"VM waits for cloud-init, which image {fields.image!r} (set up "
                        "without it) never runs; wait for ssh instead",
                    )
                )
                break
    return problems


def _no_internal_snapshots_with_uefi(spec: FleetSpec, doc: Document) -> list[Problem]:
    """`snapshot_type: internal` on a UEFI VM: libvirt cannot snapshot its pflash NVRAM."""
    problems: list[Problem] = []
    for name, template in spec.vms.items():
        for index in [None, *template.overrides]:
            fields = effective(spec, template, index)
            if fields.firmware == "uefi" and fields.snapshot_type == "internal":
                problems.append(
                    doc.problem(
                        _setting(spec, name, index, "snapshot_type"),
                        "internal snapshots are impossible with UEFI firmware (libvirt cannot "
                        "snapshot its NVRAM): use external or auto",
                    )
                )
    return problems


def _setting(spec: FleetSpec, name: str, index: int | None, key: str) -> Path:
    """Where a VM's (or one replica's) `key` is set: the override, the template, its
    profiles (last first), then `defaults`."""
    template = spec.vms[name]
    candidates: list[tuple[Path, VmFields]] = [(("vms", name), template)]
    if index is not None:
        candidates.insert(0, (("vms", name, "overrides", index), template.overrides[index]))
    candidates += [
        (("profiles", p), spec.profiles[p])
        for p in reversed(template.extends)
        if p in spec.profiles
    ]
    candidates.append((("defaults",), spec.defaults))
    path = next(path for path, layer in candidates if getattr(layer, key) is not None)
    return (*path, key)


def _host_names(spec: FleetSpec) -> list[str]:
    return list(spec.hosts) or ["local"]


def _replica_arrays(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    for name, template in spec.vms.items():
        n = template.replicas
        for field in ("mac_addresses", "ips"):
            values = getattr(template, field)
            if values is not None and len(values) != n:
                problems.append(
                    doc.problem(
                        ("vms", name, field),
                        f"has {len(values)} entr{'y' if len(values) == 1 else 'ies'} but "
                        f"replicas is {n}: give exactly one per replica",
                    )
                )
        if template.nics is not None and (template.mac_addresses or template.ips):
            problems.append(
                doc.problem(
                    ("vms", name, "nics"),
                    "give addresses either in nics[] or in mac_addresses/ips, not both",
                )
            )
        for i, nic in enumerate(template.nics or []):
            for field in ("mac_addresses", "ips"):
                values = getattr(nic, field)
                if values is not None and len(values) != n:
                    problems.append(
                        doc.problem(
                            ("vms", name, "nics", i, field),
                            f"has {len(values)} entries but replicas is {n}",
                        )
                    )
        for index in template.overrides:
            if not 0 <= index < n or n == 1:
                valid = "none (replicas is 1)" if n == 1 else f"0..{n - 1}"
                problems.append(
                    doc.problem(
                        ("vms", name, "overrides", index),
                        f"override for replica {index}, but valid indexes are {valid}",
                    )
                )
    return problems


def _vm_names(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for name, template in spec.vms.items():
        for index in indexes(template):
            vm = replica_name(name, index)
            if len(vm) > 63:
                problems.append(
                    doc.problem(("vms", name), f"replica name {vm!r} is longer than 63 characters")
                )
            if vm in seen and seen[vm] != name:
                problems.append(
                    doc.problem(
                        ("vms", name),
                        f"VM name {vm!r} is also produced by template {seen[vm]!r}",
                    )
                )
            seen.setdefault(vm, name)
    return problems


def _explicit_addresses(spec: FleetSpec) -> Iterable[tuple[str, str, Path]]:
    """('mac'|'ip', value, path) for every address written in the file."""
    for name, template in spec.vms.items():
        for field, kind in (("mac_addresses", "mac"), ("ips", "ip")):
            for i, value in enumerate(getattr(template, field) or []):
                yield kind, value, ("vms", name, field, i)
        for n, nic in enumerate(template.nics or []):
            for field, kind in (("mac_addresses", "mac"), ("ips", "ip")):
                for i, value in enumerate(getattr(nic, field) or []):
                    yield kind, value, ("vms", name, "nics", n, field, i)


def _duplicate_addresses(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[tuple[str, str], Path] = {}
    for kind, value, path in _explicit_addresses(spec):
        key = (kind, value)
        if key in first:
            where = doc.position(first[key])
            problems.append(
                doc.problem(
                    path,
                    f"duplicate {'MAC' if kind == 'mac' else 'IP'} {value}, "
                    f"already used at {where or '.'.join(map(str, first[key]))}",
                )
            )
        else:
            first[key] = path
    return problems


def _addresses_in_networks(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    nets = networks(spec)
    for name, template in spec.vms.items():
        nics = template_nics(spec, template, None)
        for n, nic in enumerate(nics):
            network = nets.get(nic.network)
            if network is None or not nic.ips:
                continue
            base: Path = ("vms", name, "nics", n, "ips") if template.nics else ("vms", name, "ips")
            for i, ip in enumerate(nic.ips):
                message = address_problem(ip, network, nic.network)
                if message:
                    problems.append(doc.problem((*base, i), message))
    return problems


def _address_pools(spec: FleetSpec, doc: Document) -> list[Problem]:
    """Every VM without a written address gets one: no network runs out (as `expand` hands
    them out, lowest first, with no leases yet)."""
    nets = networks(spec)
    pools = {name: AddressPool(net) for name, net in nets.items() if allocates(net)}
    automatic: list[tuple[str, str]] = []  # (template, network) once per NIC needing one
    for name, template in spec.vms.items():
        shared = template_nics(spec, template, None)
        for index in indexes(template):
            nics = template_nics(spec, template, index) if index in template.overrides else shared
            for nic in nics:
                if nic.network not in pools:
                    continue
                if nic.ips and (index or 0) < len(nic.ips):
                    pools[nic.network].take(nic.ips[index or 0])
                else:
                    automatic.append((name, nic.network))
    problems: list[Problem] = []
    short: set[str] = set()
    for name, net_name in automatic:
        if net_name in short or pools[net_name].next_free() is not None:
            continue
        short.add(net_name)
        needing = sum(1 for _t, n in automatic if n == net_name)
        where = doc.position(("networks", net_name, "cidr"))
        path: Path = ("vms", name, "replicas") if spec.vms[name].replicas > 1 else ("vms", name)
        problems.append(
            doc.problem(
                path,
                f"network {net_name!r} ({nets[net_name].cidr}"
                + (f", cidr at {where}" if where else "")
                + f") runs out of addresses: {needing} NICs need one and fewer are free "
                "(the network and broadcast addresses, the gateway, `reserved:` and "
                "written addresses are not handed out); use a larger cidr or fewer replicas",
            )
        )
    return problems


def address_problem(ip: str, network: NetworkSpec, network_name: str) -> str | None:
    """Why `ip` cannot be a static address on `network`, or None when it can."""
    if network.mode == "user":
        return (
            f"network {network_name!r} is user-mode: QEMU assigns the address, "
            "static IPs are not possible"
        )
    if network.cidr is None:
        return f"network {network_name!r} has no cidr, so a static IP cannot be configured"
    net = ipaddress.IPv4Network(network.cidr)
    addr = ipaddress.IPv4Address(ip)
    if addr not in net:
        return f"{ip} is outside network {network_name!r} ({net})"
    if addr == net.network_address:
        return f"{ip} is the network address of {net}"
    if addr == net.broadcast_address:
        return f"{ip} is the broadcast address of {net}"
    if addr == gateway_of(network):
        return f"{ip} is the gateway of network {network_name!r}"
    return None


def _groups(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    vm_names = {replica_name(n, i) for n, t in spec.vms.items() for i in indexes(t)}
    known_members = set(spec.vms) | set(spec.groups) | vm_names
    for gname, group in spec.groups.items():
        if group.group is not None:
            if group.group == gname:
                problems.append(
                    doc.problem(("groups", gname, "group"), "a group cannot be its own parent")
                )
            elif group.group not in spec.groups:
                problems.append(
                    _unknown(doc, ("groups", gname, "group"), "group", group.group, spec.groups)
                )
        lists: list[tuple[Path, list[str]]] = [(("groups", gname, "members"), group.members)]
        lists += [
            (("groups", gname, "boot_order", t, "members"), tier.members)
            for t, tier in enumerate(group.boot_order)
        ]
        seen: set[str] = set()
        for prefix, members in lists:
            for i, member in enumerate(members):
                path = (*prefix, i)
                if member == gname:
                    problems.append(doc.problem(path, f"group {gname!r} cannot be its own member"))
                elif member not in known_members:
                    problems.append(
                        _unknown(doc, path, "group member", member, sorted(known_members))
                    )
                elif member in seen:
                    problems.append(
                        doc.problem(path, f"{member!r} is listed twice in group {gname!r}")
                    )
                seen.add(member)
    problems.extend(_group_cycles(spec, doc))
    return problems


def group_children(spec: FleetSpec, name: str) -> list[str]:
    """Groups directly inside group `name` (by members, boot order, or a child's `group:`)."""
    group = spec.groups[name]
    listed = list(group.members) + [m for tier in group.boot_order for m in tier.members]
    children = [m for m in listed if m in spec.groups and m != name]
    children += [
        g for g, spec_g in spec.groups.items() if spec_g.group == name and g not in children
    ]
    return children


def _group_cycles(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for child in group_children(spec, name):
            if state.get(child) == 1:
                cycle = (
                    " -> ".join([*trail[trail.index(child) :], child]) if child in trail else child
                )
                problems.append(doc.problem(("groups", name), f"groups form a cycle: {cycle}"))
            elif state.get(child) is None:
                visit(child, [*trail, child])
        state[name] = 2

    for name in spec.groups:
        if name not in state:
            visit(name, [name])
    return problems
