"""Making one VM exist, and making it go away, step by step and journaled.

Rooms: `create` and `remove` (the sequences), `definition` (domain config), `seed` (cloud-init
seed ISO), `networks`, `ports` (forwards and leases), `base_images`, `readiness`
(`ReadinessWatcher`, `wait_ready`) and `journal` (journaled steps, rollback, recover, volume
sweeps).

Create: base image (once per host) → root disk (linked clone or copy, grown) → data disks →
seed ISO → define → start → ready. Every step that creates something on a host writes an
intent to the journal first and closes it after, so a run killed at any point leaves a
record (a VM-wide entry stays open until the domain is defined and started); `recover` rolls such
half-done steps back and `up` converges again.
Remove: stop → undefine → delete the VM's volumes (named for it and listed by its domain or
made for it) and its serial log → release leases.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfleet.engine.provision.base_images import (
        base_name,
        digest,
        ensure_base,
        image_path,
        local_image,
    )
    from vmfleet.engine.provision.create_vm import add_data_disk, create
    from vmfleet.engine.provision.definition import (
        domain_config,
        domain_type,
        existing_disks,
        with_overlays,
    )
    from vmfleet.engine.provision.journal import (
        Progress,
        recover,
        remove_volumes,
        rollback,
        sweep_volumes,
        volume_names,
    )
    from vmfleet.engine.provision.networks import (
        attachment_for,
        ensure_network,
        ensure_networks,
        network_name,
        owned_network_xml,
        remove_networks,
    )
    from vmfleet.engine.provision.ports import (
        CONTROL_GUEST_PORT,
        FORWARD_SLOT_BASE,
        PORT_BASE,
        PORT_SPAN,
        Access,
        access,
        existing_forward,
        forward_port,
        record_leases,
    )
    from vmfleet.engine.provision.readiness import ReadinessWatcher, wait_ready, watcher
    from vmfleet.engine.provision.remove_vm import remove
    from vmfleet.engine.provision.seed import seed_iso

# name -> the room that defines it, imported on first use (PEP 562): `checks` takes only
# `seed` for `validate`, and the CLI registers its commands without create, readiness (asyncio)
# or the domain XML builders.
_LAZY: dict[str, str] = {
    "Access": "vmfleet.engine.provision.ports",
    "CONTROL_GUEST_PORT": "vmfleet.engine.provision.ports",
    "FORWARD_SLOT_BASE": "vmfleet.engine.provision.ports",
    "PORT_BASE": "vmfleet.engine.provision.ports",
    "PORT_SPAN": "vmfleet.engine.provision.ports",
    "Progress": "vmfleet.engine.provision.journal",
    "ReadinessWatcher": "vmfleet.engine.provision.readiness",
    "access": "vmfleet.engine.provision.ports",
    "add_data_disk": "vmfleet.engine.provision.create_vm",
    "base_name": "vmfleet.engine.provision.base_images",
    "attachment_for": "vmfleet.engine.provision.networks",
    "create": "vmfleet.engine.provision.create_vm",
    "digest": "vmfleet.engine.provision.base_images",
    "domain_config": "vmfleet.engine.provision.definition",
    "domain_type": "vmfleet.engine.provision.definition",
    "ensure_base": "vmfleet.engine.provision.base_images",
    "ensure_network": "vmfleet.engine.provision.networks",
    "ensure_networks": "vmfleet.engine.provision.networks",
    "existing_disks": "vmfleet.engine.provision.definition",
    "existing_forward": "vmfleet.engine.provision.ports",
    "forward_port": "vmfleet.engine.provision.ports",
    "image_path": "vmfleet.engine.provision.base_images",
    "local_image": "vmfleet.engine.provision.base_images",
    "network_name": "vmfleet.engine.provision.networks",
    "owned_network_xml": "vmfleet.engine.provision.networks",
    "record_leases": "vmfleet.engine.provision.ports",
    "recover": "vmfleet.engine.provision.journal",
    "remove": "vmfleet.engine.provision.remove_vm",
    "remove_networks": "vmfleet.engine.provision.networks",
    "remove_volumes": "vmfleet.engine.provision.journal",
    "rollback": "vmfleet.engine.provision.journal",
    "seed_iso": "vmfleet.engine.provision.seed",
    "sweep_volumes": "vmfleet.engine.provision.journal",
    "volume_names": "vmfleet.engine.provision.journal",
    "wait_ready": "vmfleet.engine.provision.readiness",
    "watcher": "vmfleet.engine.provision.readiness",
    "with_overlays": "vmfleet.engine.provision.definition",
}

__all__ = [
    "CONTROL_GUEST_PORT",
    "FORWARD_SLOT_BASE",
    "PORT_BASE",
    "PORT_SPAN",
    "Access",
    "Progress",
    "ReadinessWatcher",
    "access",
    "add_data_disk",
    "attachment_for",
    "base_name",
    "create",
    "digest",
    "domain_config",
    "domain_type",
    "ensure_base",
    "ensure_network",
    "ensure_networks",
    "existing_disks",
    "existing_forward",
    "forward_port",
    "image_path",
    "local_image",
    "network_name",
    "owned_network_xml",
    "record_leases",
    "recover",
    "remove",
    "remove_networks",
    "remove_volumes",
    "rollback",
    "seed_iso",
    "sweep_volumes",
    "volume_names",
    "wait_ready",
    "watcher",
    "with_overlays",
]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'vmfleet.engine.provision' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
