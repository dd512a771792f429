"""The cloud-init seed ISO of a VM: rendered user/meta/network data, user-data template,
password hash. User-data and secret files are read only inside the fleet's folder or a
trusted path (`spec.files`), relative to the fleet file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vmfleet.core.expand import Instance, user_data_variables
from vmfleet.core.plan import spec_hash
from vmfleet.drivers import cloudinit, secrets
from vmfleet.drivers.seed import build_seed_iso
from vmfleet.engine import hostkeys
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError
from vmfleet.spec import files
from vmfleet.spec.load import LoadedFleet
from vmfleet.spec.models import Secret


def seed_iso(ctx: FleetContext, instance: Instance) -> bytes:
    ci = instance.fields.cloud_init
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
                mtu=_mtu(ctx, nic.network),
            )
        )
    host_key = hostkeys.record_host_key(ctx, instance.name)
    request = replace(
        seed_request(ctx.loaded, instance, ctx.instances()),
        instance_id=f"{ctx.fleet}-{instance.name}-{spec_hash(instance)}",
        ssh_authorized_keys=keys,
        password_hash=_password_hash(ctx, ci.password),
        nics=tuple(nics),
        host_keys=(
            (cloudinit.HostKey(type="ed25519", private=host_key.private, public=host_key.public),)
            if host_key
            else ()
        ),
    )
    iso: bytes = build_seed_iso(
        user_data=cloudinit.render_user_data(request),
        meta_data=cloudinit.render_meta_data(request),
        network_config=cloudinit.render_network_config(request),
    )
    return iso


def seed_request(
    loaded: LoadedFleet, instance: Instance, everyone: Sequence[Instance] = ()
) -> cloudinit.SeedRequest:
    """What the spec alone says of a VM's seed (its template read, nothing made by a run:
    no keys, password hash or NICs; the instance id is the VM's name). `validate` renders it.
    `everyone` (the fleet's VMs) lets its template refer to other VMs (`vms`, `groups`)."""
    ci = instance.fields.cloud_init
    template_text, template_source = _user_template(loaded, ci.user_data)
    return cloudinit.SeedRequest(
        instance_id=instance.name,
        hostname=instance.hostname,
        user=ci.user or loaded.spec.ssh.user,
        packages=tuple(ci.packages or ()),
        apt_proxy=ci.apt_proxy,
        write_files=tuple(
            cloudinit.WriteFile(
                path=f.path, content=f.content, permissions=f.permissions, owner=f.owner
            )
            for f in ci.write_files or ()
        ),
        runcmd=tuple(c if isinstance(c, str) else tuple(c) for c in ci.runcmd or ()),
        user_template=template_text,
        user_template_source=template_source,
        template_mode=ci.user_data_mode or "merge",
        template_vars=user_data_variables(instance, fleet=loaded.name, everyone=everyone),
    )


def _confined(loaded: LoadedFleet, reference: str) -> Path:
    """A user-data or secret file, inside the fleet's folder or a trusted path (see
    `spec.files`; `validate` and `up` refuse others before this runs)."""
    base = loaded.path.parent
    try:
        return files.confined(reference, base=base, allowed=files.trusted(loaded.spec, base))
    except files.OutsideError as error:
        raise FleetError(str(error)) from None


def _user_template(loaded: LoadedFleet, source: str | None) -> tuple[str | None, str | None]:
    if source is None:
        return None, None
    path = _confined(loaded, source)
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
            plain = _confined(ctx.loaded, password.file).read_text().rstrip("\n")
    else:
        plain = password
    return plain if secrets.looks_hashed(plain) else secrets.hash_password(plain)


def _mtu(ctx: FleetContext, network: str) -> int | None:
    """The guest-side MTU of a NIC on `network` (`networks.*.mtu`), None for the default."""
    spec = ctx.loaded.spec.networks.get(network)
    return None if spec is None else spec.mtu
