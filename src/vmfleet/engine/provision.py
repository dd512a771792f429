"""Making one VM exist, and making it go away, step by step and journaled.

Create: base image (once per host) → root disk (linked clone or copy, grown) → data disks →
seed ISO → define → start → ready. Every step that creates something on a host writes an
intent to the journal first and closes it after, so a run killed at any point leaves a
record; `recover` rolls such half-done steps back and `up` converges again.
Remove: stop → undefine → delete every volume with the VM's name prefix → release leases.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from vmfleet.core.expand import Instance
from vmfleet.core.plan import spec_hash
from vmfleet.drivers import cloudinit, download, qemuimg, secrets
from vmfleet.drivers.domainxml import (
    BackingStore,
    BridgeAttachment,
    DiskConfig,
    DomainConfig,
    FileSource,
    KernelBoot,
    NetworkAttachment,
    NetworkConfig,
    NicConfig,
    PortForward,
    UserAttachment,
    VolumeConfig,
    VolumeSource,
    parse_domain,
)
from vmfleet.drivers.guest import forwarded_port_open, port_open, ssh_banner, wait_until
from vmfleet.drivers.libvirt import LibvirtHost
from vmfleet.drivers.metadata import (
    NAMESPACE,
    PREFIX,
    OwnerMetadata,
    base_volume_name,
    parse_volume_name,
    volume_name,
)
from vmfleet.drivers.qemuimg import QemuImg
from vmfleet.drivers.seed import build_seed_iso
from vmfleet.engine import hostkeys
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, GuestError, HypervisorError, ImageError
from vmfleet.spec.models import Secret
from vmfleet.spec.resolve import networks

Progress = Callable[[str, str, str], None]  # (vm, phase, detail)
PORT_BASE = 22000
PORT_SPAN = 20000
# Lease slots of extra forwards: FORWARD_SLOT_BASE + guest port (slot 0 is SSH).
FORWARD_SLOT_BASE = 100000
# A guest port nothing listens on: a forward to it shows when the guest's network answers.
CONTROL_GUEST_PORT = 1

_base_locks: dict[tuple[str, str], threading.Lock] = {}
_base_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Access:
    """How to reach a VM's SSH: an address and port (a 127.0.0.1 forward for user NICs)."""

    address: str | None
    port: int


def network_name(fleet: str, network: str) -> str:
    """The libvirt name of a network vmfleet creates for a fleet."""
    return f"vmf-{fleet}-{network}"


def forward_port(ctx: FleetContext, *, host: str, vm: str, slot: int = 0) -> int:
    """A 127.0.0.1 port for a VM's forward, stable across runs and unique on the host."""
    for lease in ctx.store.leases("port"):
        if lease.scope == host and lease.vm == vm and lease.slot == slot:
            return int(lease.value)
    taken = {int(le.value) for le in ctx.store.leases("port") if le.scope == host}
    start = zlib.crc32(f"{ctx.fleet}/{vm}/{slot}".encode()) % PORT_SPAN
    for step in range(PORT_SPAN):
        port = PORT_BASE + (start + step) % PORT_SPAN
        if port in taken or not _port_free(port):
            continue
        ctx.store.lease(kind="port", scope=host, value=str(port), vm=vm, slot=slot)
        return port
    raise HypervisorError("no free port for a forward", host=host, vm=vm)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def record_leases(ctx: FleetContext, instance: Instance) -> None:
    """Keep the VM's MACs and IPs so they never change while it exists."""
    for slot, nic in enumerate(instance.nics):
        ctx.store.lease(kind="mac", scope=ctx.fleet, value=nic.mac, vm=instance.name, slot=slot)
        if nic.ip:
            ctx.store.lease(kind="ip", scope=nic.network, value=nic.ip, vm=instance.name, slot=slot)


def access(ctx: FleetContext, instance: Instance, host: str) -> Access:
    """Where `ssh` reaches this VM from here."""
    for nic in instance.nics:
        if nic.mode == "user":
            return Access("127.0.0.1", forward_port(ctx, host=host, vm=instance.name))
    for nic in instance.nics:
        if nic.ip:
            return Access(nic.ip, 22)
    return Access(None, 22)


# --- base images ----------------------------------------------------------------------------


def image_path(ctx: FleetContext, source: str, sha256: str | None = None) -> Path:
    """The local file of an image: its path, or its verified copy in the download cache."""
    if source.startswith(("http://", "https://")):
        assert sha256 is not None
        cached = download.cached_path(download.default_cache_dir(), sha256)
        if not cached.exists():
            raise ImageError(f"image {source} is not downloaded yet (vmfleet image pull)")
        return cached
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = ctx.loaded.path.parent / path
    if not path.exists():
        raise ImageError(f"image file {path} does not exist")
    return path


def digest(ctx: FleetContext, path: Path) -> str:
    """sha256 of an image, cached by path, size and mtime."""
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = ctx.state_dir / "digests"
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / hashlib.sha256(key.encode()).hexdigest()
    if entry.exists():
        return entry.read_text().strip()
    value = qemuimg.sha256(path)
    entry.write_text(value)
    return value


def ensure_base(
    ctx: FleetContext, host: LibvirtHost, host_name: str, image: str
) -> tuple[str, str, int]:
    """The base volume (path, format, virtual size) for `image` on a host, uploaded once."""
    spec = ctx.loaded.spec.images[image]
    path = image_path(ctx, spec.source, spec.sha256)
    digest_value = digest(ctx, path)
    if spec.sha256 and spec.sha256 != digest_value:
        raise ImageError(
            f"image {image}: sha256 of {path} is {digest_value}, the spec says {spec.sha256}"
        )
    pool = ctx.host_specs()[host_name].pool
    name = base_volume_name(image=image, digest=digest_value)
    with _base_locks_guard:
        lock = _base_locks.setdefault((host.uri, name), threading.Lock())
    with lock:
        existing = host.get_volume(pool, name)
        if existing is None:
            local = QemuImg().info(path)
            fmt = spec.format or local.format
            entry = ctx.store.intent(
                run=ctx.run_id,
                host=host_name,
                vm="",
                kind="volume",
                target=name,
                detail={"pool": pool},
            )
            existing = host.upload_volume(pool, name, path, format=fmt)
            ctx.store.finish(entry)
        # Read from the host, not the local file: the host may be remote.
        return existing.path, existing.format or "raw", existing.capacity


# --- create -----------------------------------------------------------------------------------


def _journaled(
    ctx: FleetContext,
    host: str,
    vm: str,
    kind: str,
    target: str,
    pool: str,
    action: Callable[[], object],
) -> None:
    entry = ctx.store.intent(
        run=ctx.run_id, host=host, vm=vm, kind=kind, target=target, detail={"pool": pool}
    )
    try:
        action()
    except BaseException:
        ctx.store.finish(entry, status="failed")
        raise
    ctx.store.finish(entry)


def _journaled_volume(
    ctx: FleetContext, host_name: str, vm: str, pool: str, config: VolumeConfig
) -> None:
    """Create a volume from its config, journaled so a killed run can roll it back."""
    host = ctx.host(host_name)
    _journaled(
        ctx,
        host_name,
        vm,
        "volume",
        config.name,
        pool,
        lambda: host.create_volume(pool, config.to_xml()),
    )


def create(
    ctx: FleetContext, instance: Instance, host_name: str, progress: Progress, *, start: bool = True
) -> Access:
    """Make one VM exist and (unless `start` is False: a group starts it) start it; returns
    how to reach it. Idempotent after a crash.

    On failure everything made for this VM so far is removed again before the error goes on.
    """
    try:
        return _create(ctx, instance, host_name, progress, start=start)
    except BaseException:
        with contextlib.suppress(FleetError):
            rollback(ctx, host_name, instance.name)
        raise


def rollback(ctx: FleetContext, host_name: str, vm: str) -> None:
    """Undo a half-made VM: its domain (if ours) and every volume with its name."""
    host = ctx.host(host_name)
    info = host.get_domain(vm)
    if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
        if info.active:
            host.destroy(vm)
        host.undefine(vm)
    remove_volumes(ctx, host, host_name, vm)


def _create(
    ctx: FleetContext, instance: Instance, host_name: str, progress: Progress, *, start: bool
) -> Access:
    host = ctx.host(host_name)
    pool = ctx.host_specs()[host_name].pool
    vm = instance.name
    fields = instance.fields
    record_leases(ctx, instance)
    remove_volumes(ctx, host, host_name, vm, instance=instance)  # leftovers of a killed run
    progress(vm, "disk", "")
    root = volume_name(fleet=ctx.fleet, vm=vm, role="root")
    if fields.image:
        base_path, base_format, base_size = ensure_base(ctx, host, host_name, fields.image)
        if fields.clone == "full":

            def copy_root() -> None:
                host.upload_volume(pool, root, base_path, format=base_format)
                if fields.disk > base_size:
                    host.resize_volume(pool, root, fields.disk)

            _journaled(ctx, host_name, vm, "volume", root, pool, copy_root)
        else:
            config = VolumeConfig(
                name=root,
                capacity_bytes=max(fields.disk, base_size),
                backing=BackingStore(
                    path=base_path, format="raw" if base_format == "raw" else "qcow2"
                ),
            )
            _journaled_volume(ctx, host_name, vm, pool, config)
    else:
        _journaled_volume(
            ctx, host_name, vm, pool, VolumeConfig(name=root, capacity_bytes=fields.disk)
        )
    for n, data in enumerate(fields.data_disks):
        name = volume_name(fleet=ctx.fleet, vm=vm, role=f"data-{n}")
        cfg = VolumeConfig(name=name, capacity_bytes=data.size, format=data.format)
        _journaled_volume(ctx, host_name, vm, pool, cfg)
    progress(vm, "seed", "")
    seed = volume_name(fleet=ctx.fleet, vm=vm, role="seed.iso")
    iso = _seed_iso(ctx, instance)
    with tempfile.NamedTemporaryFile(suffix=".iso") as tmp:
        tmp.write(iso)
        tmp.flush()
        _journaled(
            ctx,
            host_name,
            vm,
            "volume",
            seed,
            pool,
            lambda: host.upload_volume(pool, seed, tmp.name, format="iso"),
        )
    progress(vm, "define", "")
    ensure_networks(ctx, host, instance)
    reach = access(ctx, instance, host_name)
    disks = existing_disks(ctx, instance, host_name)
    domain = domain_config(ctx, instance, host, host_name, disks)
    _journaled(ctx, host_name, vm, "domain", vm, pool, lambda: host.define(domain.to_xml()))
    if fields.autostart:
        host.set_autostart(vm, True)
    if start:
        progress(vm, "start", "")
        host.start(vm)
    ctx.store.event(kind="created", vm=vm, message=f"created on {host_name}")
    return reach


def existing_disks(ctx: FleetContext, instance: Instance, host_name: str) -> tuple[DiskConfig, ...]:
    """The VM's disks by their volume names: root (vda), seed (vdb), data disks (vdc…)."""
    pool = ctx.host_specs()[host_name].pool

    def vol(role: str) -> VolumeSource:
        return VolumeSource(
            pool=pool, volume=volume_name(fleet=ctx.fleet, vm=instance.name, role=role)
        )

    disks = [
        DiskConfig(target="vda", source=vol("root"), format="qcow2", boot_order=1),
        DiskConfig(target="vdb", source=vol("seed.iso"), format="raw", readonly=True),
    ]
    for n, data in enumerate(instance.fields.data_disks):
        disks.append(
            DiskConfig(target=f"vd{chr(ord('c') + n)}", source=vol(f"data-{n}"), format=data.format)
        )
    return tuple(disks)


def with_overlays(
    host: LibvirtHost, vm: str, disks: tuple[DiskConfig, ...]
) -> tuple[DiskConfig, ...]:
    """`disks`, except that a disk writing to an external snapshot overlay of this VM keeps
    it: redefining a changed VM must not drop the writes made since the snapshot."""
    current = {
        d.target: d.source.path
        for d in parse_domain(host.domain_xml(vm, inactive=True)).disks
        if isinstance(d.source, FileSource) and ".snap-" in Path(d.source.path).name
    }
    return tuple(
        replace(d, source=FileSource(path=current[d.target])) if d.target in current else d
        for d in disks
    )


def domain_type(ctx: FleetContext, host: LibvirtHost, host_name: str) -> str:
    """`kvm` or `qemu` for a host: as configured, or `auto` = kvm only where it really works."""
    wanted = ctx.host_specs()[host_name].domain_type
    if wanted != "auto":
        return wanted
    return "kvm" if host.probe_kvm() else "qemu"


def domain_config(
    ctx: FleetContext,
    instance: Instance,
    host: LibvirtHost,
    host_name: str,
    disks: tuple[DiskConfig, ...],
) -> DomainConfig:
    fields = instance.fields
    nics: list[NicConfig] = []
    for slot, nic in enumerate(instance.nics):
        if nic.mode == "user":
            forwards: tuple[PortForward, ...] = (
                PortForward(
                    host_port=forward_port(ctx, host=host_name, vm=instance.name, slot=slot),
                    guest_port=22,
                ),
            )
            if fields.ready.wait_for.startswith("port:") and slot == 0:
                guest = int(fields.ready.wait_for[5:])
                extra = [CONTROL_GUEST_PORT] + ([guest] if guest != 22 else [])
                forwards += tuple(
                    PortForward(
                        host_port=forward_port(
                            ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + port
                        ),
                        guest_port=port,
                    )
                    for port in extra
                )
            attachment: NetworkAttachment | BridgeAttachment | UserAttachment = UserAttachment(
                forwards=forwards
            )
        else:
            attachment = attachment_for(ctx, nic.network)
        nics.append(NicConfig(mac=nic.mac, attachment=attachment, model=nic.model))  # type: ignore[arg-type]
    kernel = fields.kernel
    return DomainConfig(
        name=instance.name,
        domain_type=domain_type(ctx, host, host_name),  # type: ignore[arg-type]
        memory_mib=fields.memory // (1024 * 1024),
        vcpus=fields.vcpus,
        arch=fields.arch,
        machine=fields.machine or "q35",
        cpu_model=fields.cpu_model,
        disks=disks,
        nics=tuple(nics),
        serial_log_path=f"/var/log/libvirt/qemu/{instance.name}-serial.log",
        guest_agent=True,
        graphics="vnc" if fields.graphics == "vnc" else None,
        firmware=fields.firmware,  # type: ignore[arg-type]
        kernel_boot=KernelBoot(
            kernel=kernel.kernel, initrd=kernel.initrd, cmdline=kernel.cmdline or None
        )
        if kernel
        else None,
        owner=OwnerMetadata(
            fleet=ctx.fleet,
            vm=instance.name,
            template=instance.template,
            index=instance.index,
            spec_hash=spec_hash(instance),
        ),
        description=fields.description,
    )


def attachment_for(ctx: FleetContext, network: str) -> NetworkAttachment | BridgeAttachment:
    """Where a non-user NIC plugs in: our network, someone's existing one, or a host bridge."""
    spec = networks(ctx.loaded.spec)[network]
    if spec.mode == "bridge":
        assert spec.bridge is not None
        return BridgeAttachment(bridge=spec.bridge)
    if spec.mode == "existing":
        assert spec.name is not None
        return NetworkAttachment(network=spec.name)
    return NetworkAttachment(network=network_name(ctx.fleet, network))


def ensure_networks(ctx: FleetContext, host: LibvirtHost, instance: Instance) -> None:
    """Create the fleet's nat/isolated networks this VM needs (once; owned by the fleet)."""
    nets = networks(ctx.loaded.spec)
    for nic in instance.nics:
        spec = nets[nic.network]
        if spec.mode not in ("nat", "isolated"):
            continue
        config = NetworkConfig(
            name=network_name(ctx.fleet, nic.network),
            mode=spec.mode,
            cidr=spec.cidr,
            gateway=spec.gateway,
            domain=spec.domain,
        )
        with _network_guard:
            host.ensure_network(
                owned_network_xml(config.to_xml(), fleet=ctx.fleet, network=nic.network)
            )


_network_guard = threading.Lock()


def owned_network_xml(xml: str, *, fleet: str, network: str) -> str:
    """Network XML with our ownership mark in `<metadata>`, so only we ever remove it."""
    root = ET.fromstring(xml)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    mark = ET.SubElement(metadata, f"{{{NAMESPACE}}}network")
    ET.SubElement(mark, f"{{{NAMESPACE}}}fleet").text = fleet
    ET.SubElement(mark, f"{{{NAMESPACE}}}name").text = network
    ET.register_namespace(PREFIX, NAMESPACE)
    return ET.tostring(root, encoding="unicode")


def remove_networks(ctx: FleetContext, host: LibvirtHost) -> list[str]:
    """Remove the networks this fleet created on a host (call when none of its VMs is left)."""
    removed = []
    for info in host.list_networks():
        if info.owned and info.fleet == ctx.fleet:
            host.remove_network(info.name)
            removed.append(info.name)
    return removed


def _seed_iso(ctx: FleetContext, instance: Instance) -> bytes:
    ci = instance.fields.cloud_init
    user = ci.user or ctx.loaded.spec.ssh.user
    keys = (ctx.ssh_public_key(), *(ci.ssh_keys or ()))
    gateway_given = False
    nics = []
    for nic in instance.nics:
        gateway = nic.gateway if nic.ip and not gateway_given else None
        gateway_given = gateway_given or gateway is not None
        nics.append(
            cloudinit.NicNetwork(
                mac=nic.mac,
                addresses=(f"{nic.ip}/{nic.prefix}",) if nic.ip else (),
                gateway=gateway,
                dns=tuple(nic.dns) if nic.ip else (),
            )
        )
    template_text, template_source = _user_template(ctx, ci.user_data)
    host_key = hostkeys.record_host_key(ctx, instance.name)
    request = cloudinit.SeedRequest(
        instance_id=f"{ctx.fleet}-{instance.name}-{spec_hash(instance)}",
        hostname=instance.hostname,
        user=user,
        ssh_authorized_keys=keys,
        password_hash=_password_hash(ctx, ci.password),
        packages=tuple(ci.packages or ()),
        apt_proxy=ci.apt_proxy,
        write_files=tuple(
            cloudinit.WriteFile(
                path=f.path, content=f.content, permissions=f.permissions, owner=f.owner
            )
            for f in ci.write_files or ()
        ),
        runcmd=tuple(c if isinstance(c, str) else tuple(c) for c in ci.runcmd or ()),
        nics=tuple(nics),
        host_keys=(
            (cloudinit.HostKey(type="ed25519", private=host_key.private, public=host_key.public),)
            if host_key
            else ()
        ),
        user_template=template_text,
        user_template_source=template_source,
        template_mode=ci.user_data_mode or "merge",
        template_vars={
            "name": instance.name,
            "template": instance.template,
            "index": instance.index,
            "hostname": instance.hostname,
            "fleet": ctx.fleet,
            "labels": dict(instance.fields.labels),
            "ips": [n.ip for n in instance.nics if n.ip],
            "macs": [n.mac for n in instance.nics],
        },
    )
    iso: bytes = build_seed_iso(
        user_data=cloudinit.render_user_data(request),
        meta_data=cloudinit.render_meta_data(request),
        network_config=cloudinit.render_network_config(request),
    )
    return iso


def _user_template(ctx: FleetContext, source: str | None) -> tuple[str | None, str | None]:
    if source is None:
        return None, None
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = ctx.loaded.path.parent / path
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as error:
        raise FleetError(f"cannot read user-data template {path}: {error.strerror}") from None


def _password_hash(ctx: FleetContext, password: str | Secret | None) -> str | None:
    """The crypt hash for cloud-init; a plain value is hashed here and never logged."""
    if password is None:
        return None
    if isinstance(password, Secret):
        if password.env is not None:
            if password.env not in os.environ:
                raise FleetError(f"password: environment variable {password.env} is not set")
            plain = os.environ[password.env]
        else:
            assert password.file is not None
            plain = Path(password.file).expanduser().read_text().rstrip("\n")
    else:
        plain = password
    return plain if secrets.looks_hashed(plain) else secrets.hash_password(plain)


# --- ready ------------------------------------------------------------------------------------


def wait_ready(
    ctx: FleetContext,
    instance: Instance,
    host_name: str,
    reach: Access,
    *,
    cancelled: Callable[[], bool] = lambda: False,
) -> float:
    """Block until the VM passes its readiness check; seconds waited. GuestError on timeout."""
    ready = instance.fields.ready
    check = ready.wait_for
    started = time.monotonic()
    host = ctx.host(host_name)
    if check == "none":
        return 0.0
    if check == "running":
        ok = wait_until(
            lambda: _running(host, instance.name), timeout=ready.timeout, cancelled=cancelled
        )
    elif check == "agent":
        ok = wait_until(
            lambda: host.agent_ping(instance.name, timeout=2.0),
            timeout=ready.timeout,
            interval=1.0,
            cancelled=cancelled,
        )
    elif check == "ssh":
        if reach.address is None:
            raise GuestError("no address to check SSH on", vm=instance.name)
        ssh_address = reach.address
        ok = wait_until(
            lambda: ssh_banner(ssh_address, reach.port) is not None,
            timeout=ready.timeout,
            cancelled=cancelled,
        )
    elif check.startswith("port:"):
        guest = int(check[5:])
        if reach.address is None:
            raise GuestError("no address to check the port on", vm=instance.name)
        target = reach.address
        if target == "127.0.0.1":
            port = (
                reach.port
                if guest == 22
                else forward_port(
                    ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + guest
                )
            )
            control = forward_port(
                ctx, host=host_name, vm=instance.name, slot=FORWARD_SLOT_BASE + CONTROL_GUEST_PORT
            )
            ok = wait_until(
                lambda: forwarded_port_open(target, port, control=control),
                timeout=ready.timeout,
                cancelled=cancelled,
            )
        else:
            ok = wait_until(
                lambda: port_open(target, guest), timeout=ready.timeout, cancelled=cancelled
            )
    else:
        raise GuestError(f"readiness check {check!r} is not available for VMs", vm=instance.name)
    if not ok:
        raise GuestError(f"not ready ({check}) after {ready.timeout:.0f}s", vm=instance.name)
    return time.monotonic() - started


def _running(host: LibvirtHost, vm: str) -> bool:
    info = host.get_domain(vm)
    return info is not None and info.state == "running"


# --- remove -----------------------------------------------------------------------------------


def remove(ctx: FleetContext, host_name: str, vm: str, progress: Progress) -> None:
    """Stop, undefine, delete the VM's volumes and release its leases. Base images stay."""
    host = ctx.host(host_name)
    info = host.get_domain(vm)
    attached: list[str] = []
    overlays: list[str] = []
    if info is not None:
        if info.owner is None or info.owner.fleet != ctx.fleet:
            raise HypervisorError("not owned by this fleet; left alone", host=host_name, vm=vm)
        attached = [
            d.source.volume if isinstance(d.source, VolumeSource) else Path(d.source.path).name
            for d in parse_domain(host.domain_xml(vm)).disks
            if d.source is not None
        ]
        overlays = host.snapshot_files(vm)  # external snapshots' files: gone with the VM
        progress(vm, "stop", "")
        if info.active:
            host.destroy(vm)
        progress(vm, "undefine", "")
        host.undefine(vm)
    progress(vm, "volumes", "")
    remove_volumes(ctx, host, host_name, vm, extra=attached)
    for path in overlays:
        parsed = parse_volume_name(Path(path).name)
        if parsed and parsed[:2] == (ctx.fleet, vm):
            host.delete_file_volume(path, vm=vm)
    ctx.store.release(vm=vm)
    hostkeys.forget_host_key(ctx, vm)
    ctx.store.event(kind="removed", vm=vm, message=f"removed from {host_name}")


def volume_names(ctx: FleetContext, vm: str, instance: Instance | None = None) -> list[str]:
    """The pool volumes a VM has: root, seed and (if its spec is known) its data disks."""
    roles = ["root", "seed.iso"]
    if instance is not None:
        roles += [f"data-{n}" for n in range(len(instance.fields.data_disks))]
    return [volume_name(fleet=ctx.fleet, vm=vm, role=role) for role in roles]


def remove_volumes(
    ctx: FleetContext,
    host: LibvirtHost,
    host_name: str,
    vm: str,
    *,
    instance: Instance | None = None,
    extra: Iterable[str] = (),
) -> int:
    """Delete the VM's volumes by name (looked up one by one: no scan of the whole pool).

    `extra` may name any volumes (a domain's disks); only this fleet's, of this VM, go.
    """
    pool = ctx.host_specs()[host_name].pool
    removed = 0
    for name in dict.fromkeys([*volume_names(ctx, vm, instance), *extra]):
        parsed = parse_volume_name(name)
        if parsed and parsed[:2] == (ctx.fleet, vm) and host.delete_volume(pool, name):
            removed += 1
    return removed


def sweep_volumes(
    ctx: FleetContext, host: LibvirtHost, host_name: str, vms: Iterable[str] | None = None
) -> list[str]:
    """Delete every volume of this fleet's VMs (or of `vms`) left on a host: one pool scan."""
    pool = ctx.host_specs()[host_name].pool
    only = set(vms) if vms is not None else None
    removed = []
    for volume in host.list_volumes(pool):
        parsed = parse_volume_name(volume.name)
        if parsed and parsed[0] == ctx.fleet and (only is None or parsed[1] in only):
            host.delete_volume(pool, volume.name)
            removed.append(volume.name)
    return removed


def recover(ctx: FleetContext) -> list[str]:
    """Roll back steps a killed run left open; returns what was cleaned, for the user."""
    cleaned: list[str] = []
    for entry in ctx.store.open_entries():
        try:
            host = ctx.host(entry.host)
        except HypervisorError:
            continue  # unreachable now: keep the entry for a later run
        pool = str(entry.detail.get("pool", "default"))
        if entry.kind == "volume":
            with contextlib.suppress(HypervisorError):
                if host.get_volume(pool, entry.target) is not None:
                    host.delete_volume(pool, entry.target)
                    cleaned.append(f"volume {entry.target} on {entry.host}")
        elif entry.kind == "domain":
            info = host.get_domain(entry.target)
            if info is not None and info.owner is not None and info.owner.fleet == ctx.fleet:
                if info.active:
                    host.destroy(entry.target)
                host.undefine(entry.target)
                remove_volumes(ctx, host, entry.host, entry.target)
                cleaned.append(f"domain {entry.target} on {entry.host}")
        ctx.store.finish(entry.id, status="undone")
    return cleaned
