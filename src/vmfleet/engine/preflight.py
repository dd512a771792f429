"""Checks made before `up` changes anything: every fault that can be seen beforehand is
reported here, all at once, and nothing on any host is touched.

- a host that cannot be reached (already raised while planning);
- a missing or corrupt image file, or one whose sha256 differs from the spec, or one whose
  header names a backing or data file on this host, or that is not qcow2 or raw;
- a domain of the same name on the host that vmfleet does not own (or another fleet owns);
- a storage pool without room for what the plan will write;
- on each host, a MAC or static IP a new VM would take that another domain (not this
  fleet's) or a DHCP lease of its network already holds; a `bridge` network whose bridge
  the host lacks (asked through libvirt; when libvirt cannot say, a warning); a vmfleet
  nat/isolated network whose name an unowned (or another fleet's) network has, or whose
  CIDR overlaps another libvirt network's there.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path

from vmfleet.core.plan import Plan
from vmfleet.drivers import names
from vmfleet.drivers.domainxml import parse_domain
from vmfleet.drivers.qemuimg import QemuImg, refuse_unsafe_base
from vmfleet.engine import provision
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, ImageError
from vmfleet.spec.units import format_size

SEED_BYTES = 1 << 20  # a seed ISO is a few hundred KiB; count a MiB


class PreflightError(FleetError):
    """Several problems found before any change; the message lists them all. Exit code 2:
    the fleet file asks for something the hosts cannot take as they are."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"nothing was changed: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            "found before starting:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def check(ctx: FleetContext, plan: Plan) -> list[str]:
    """Raise PreflightError listing every problem with `plan`; when it can run, return the
    warnings (what could not be checked)."""
    problems: list[str] = []
    warnings: list[str] = []
    for host_name in sorted({a.host for a in plan.of("create")}):
        _check_host_side(ctx, plan, host_name, problems, warnings)
    creates = plan.of("create")
    images: dict[str, tuple[Path, str]] = {}
    for name in sorted(
        {a.instance.fields.image for a in creates if a.instance and a.instance.fields.image}
    ):
        try:
            images[name] = _check_image(ctx, name)
        except FleetError as error:
            problems.append(str(error))
    needed: dict[str, int] = defaultdict(int)
    uploads: set[tuple[str, str]] = set()
    for action in creates:
        assert action.instance is not None
        host = ctx.host(action.host)
        existing = host.get_domain(action.vm)
        if existing is not None and (existing.owner is None or existing.owner.fleet != ctx.fleet):
            whose = f"fleet {existing.owner.fleet!r}" if existing.owner else "nobody in vmfleet"
            problems.append(
                f"host {action.host}: a domain named {action.vm!r} already exists and belongs to "
                f"{whose}; vmfleet will not touch it (rename the VM or remove that domain)"
            )
        for nic in action.instance.nics:
            net = ctx.loaded.spec.networks.get(nic.network)
            missing = (
                net is not None
                and net.mode == "existing"
                and net.name is not None
                and host.get_network(net.name) is None
            )
            if missing:
                assert net is not None
                problems.append(
                    f"host {action.host}: {action.vm} needs libvirt network {net.name!r} "
                    f"(network {nic.network!r} is mode existing), which the host lacks"
                )
        fields = action.instance.fields
        needed[action.host] += SEED_BYTES
        needed[action.host] += sum(d.size for d in fields.data_disks if d.format == "raw")
        if fields.image and fields.image in images:
            path, digest = images[fields.image]
            size = path.stat().st_size
            if (action.host, fields.image) not in uploads:
                pool = ctx.host_specs()[action.host].pool
                if (
                    host.get_volume(pool, names.base_volume(image=fields.image, digest=digest))
                    is None
                ):
                    needed[action.host] += size
                uploads.add((action.host, fields.image))
            if fields.clone == "full":
                needed[action.host] += size
    for host_name, bytes_needed in needed.items():
        pool = ctx.host_specs()[host_name].pool
        info = ctx.host(host_name).pool_info(pool, refresh=True)
        if bytes_needed > info.available:
            problems.append(
                f"host {host_name}: pool {pool!r} has {format_size(info.available)} free, "
                f"the plan writes at least {format_size(bytes_needed)}"
            )
    if problems:
        raise PreflightError(problems)
    return warnings


def _check_host_side(
    ctx: FleetContext, plan: Plan, host_name: str, problems: list[str], warnings: list[str]
) -> None:
    """Addresses, bridges and CIDRs of `host_name` that the plan's new VMs would clash with."""
    host = ctx.host(host_name)
    spec_nets = ctx.loaded.spec.networks
    creates = [a for a in plan.of("create") if a.host == host_name and a.instance is not None]
    foreign_macs: dict[str, str] = {}
    for info in host.list_domains():
        if info.owner is not None and info.owner.fleet == ctx.fleet:
            continue
        for seen in parse_domain(info.xml).nics:
            foreign_macs[seen.mac.lower()] = info.name
    libvirt_nets = {n.name: n for n in host.list_networks()}
    leases: dict[str, list[tuple[str, str, str | None]]] = {}  # network -> (mac, ip, host)
    bridges: dict[str, bool | None] = {}
    for action in creates:
        assert action.instance is not None
        for nic in action.instance.nics:
            net = spec_nets.get(nic.network)
            if net is None:
                continue
            where = f"host {host_name}: {action.vm} (network {nic.network!r})"
            owner = foreign_macs.get(nic.mac.lower())
            if owner is not None:
                problems.append(f"{where}: MAC {nic.mac} is already used by domain {owner!r}")
            if net.mode == "bridge" and net.bridge:
                if net.bridge not in bridges:
                    bridges[net.bridge] = host.bridge_exists(net.bridge)
                continue
            lv_name = (
                net.name
                if net.mode == "existing"
                else names.network(fleet=ctx.fleet, network=nic.network)
            )
            if lv_name is None or lv_name not in libvirt_nets or net.mode == "user":
                continue
            if lv_name not in leases:
                try:
                    leases[lv_name] = [
                        (x.mac.lower(), x.ip, x.hostname) for x in host.dhcp_leases(lv_name)
                    ]
                except FleetError as error:
                    leases[lv_name] = []
                    warnings.append(
                        f"host {host_name}: cannot check the DHCP leases of {lv_name!r}: {error}"
                    )
            # a lease of this VM's own MAC is its earlier life's (the lease outlives the
            # domain), unless another machine named in it holds that MAC
            own_net = libvirt_nets[lv_name].fleet == ctx.fleet
            itself = (action.vm, action.instance.hostname)
            for mac, ip, leased_to in leases[lv_name]:
                if mac == nic.mac.lower():
                    if not own_net and leased_to is not None and leased_to not in itself:
                        problems.append(
                            f"{where}: MAC {nic.mac} holds a DHCP lease of {lv_name!r} "
                            f"for {leased_to!r}"
                        )
                elif nic.ip is not None and ip == nic.ip and leased_to not in itself:
                    problems.append(
                        f"{where}: IP {nic.ip} is leased by DHCP of {lv_name!r} to MAC {mac}"
                    )
    for bridge, exists in sorted(bridges.items()):
        if exists is False:
            problems.append(f"host {host_name}: bridge {bridge!r} does not exist on the host")
        elif exists is None:
            warnings.append(
                f"host {host_name}: cannot check that bridge {bridge!r} exists "
                "(this libvirt lists no host interfaces)"
            )
    used = {nic.network for a in creates if a.instance for nic in a.instance.nics}
    for net_name in sorted(used):
        net = spec_nets.get(net_name)
        if net is None or net.mode not in ("nat", "isolated") or net.cidr is None:
            continue
        ours = names.network(fleet=ctx.fleet, network=net_name)
        clash = libvirt_nets.get(ours)
        if clash is not None and (not clash.owned or clash.fleet != ctx.fleet):
            whose = f"fleet {clash.fleet!r}" if clash.fleet else "nobody in vmfleet"
            problems.append(
                f"host {host_name}: a libvirt network named {ours!r} already exists and "
                f"belongs to {whose}; vmfleet will not touch it"
            )
        mine = ipaddress.IPv4Network(str(net.cidr), strict=False)
        for other in libvirt_nets.values():
            if other.name == ours:
                continue
            for cidr in other.cidrs:
                if mine.overlaps(ipaddress.IPv4Network(cidr)):
                    problems.append(
                        f"host {host_name}: network {net_name!r} ({mine}) overlaps libvirt "
                        f"network {other.name!r} ({cidr})"
                    )


def _check_image(ctx: FleetContext, name: str) -> tuple[Path, str]:
    spec = ctx.loaded.spec.images[name]
    if spec.prepare is not None:  # checked when it was prepared (source digest, safety)
        path, key = provision.local_image(ctx, name)
        refuse_unsafe_base(QemuImg().info(path))
        return path, key
    path = provision.image_path(ctx, spec.source, spec.sha256)
    tool = QemuImg()
    info = tool.info(path)
    try:
        refuse_unsafe_base(info)
    except ImageError as error:
        raise ImageError(f"image {name}: {error}") from None
    if info.format == "qcow2":
        tool.check(path, format="qcow2")
    if spec.format and spec.format != info.format:
        raise ImageError(f"image {name}: {path} is {info.format}, the spec says {spec.format}")
    digest = provision.digest(ctx, path)
    if spec.sha256 and spec.sha256 != digest:
        raise ImageError(f"image {name}: sha256 of {path} is {digest}, the spec says {spec.sha256}")
    return path, digest
