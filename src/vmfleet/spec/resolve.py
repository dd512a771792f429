"""What a VM's fields finally are, once defaults, profiles, template and overrides stack.

Order, lowest first: built-in defaults, `defaults:`, each profile in `extends` (in order),
the template, then `overrides[index]`. Scalars take the highest layer that sets them;
`labels` merge key by key; `cloud_init` merges field by field (lists are replaced, not
appended, so a layer can drop a package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmfleet.spec.models import (
    Affinity,
    CloudInit,
    DataDisk,
    FleetSpec,
    HaSettings,
    KernelBoot,
    NetworkSpec,
    NicSpec,
    Ready,
    VmFields,
    VmTemplate,
)
from vmfleet.spec.units import GIB, MIB

BUILTIN_USER_NETWORK = "user"
DEFAULT_MEMORY = 1024 * MIB
DEFAULT_VCPUS = 1
DEFAULT_DISK = 10 * GIB
DEFAULT_ARCH = "x86_64"


@dataclass(frozen=True, slots=True)
class Effective:
    """A VM's fields after stacking every layer; nothing is None that has a default."""

    memory: int
    vcpus: int
    disk: int
    image: str | None
    clone: str
    data_disks: tuple[DataDisk, ...]
    nics: tuple[NicSpec, ...]
    arch: str
    machine: str | None
    cpu_model: str | None
    firmware: str
    kernel: KernelBoot | None
    graphics: str
    labels: dict[str, str]
    group: str | None
    host: str | None
    node_preference: tuple[str, ...]
    affinity: Affinity | None
    max_per_host: int | None
    cloud_init: CloudInit
    ready: Ready
    autostart: bool
    snapshot_type: str
    power: str  # "off": a standby VM, defined by `up` but not started
    hostname: str | None
    description: str | None


def layers(spec: FleetSpec, template: VmTemplate, index: int | None) -> list[VmFields]:
    """The layers that apply to one VM, lowest first; unknown profiles are skipped here."""
    stack: list[VmFields] = [spec.defaults]
    stack += [spec.profiles[name] for name in template.extends if name in spec.profiles]
    stack.append(template)
    if index is not None and index in template.overrides:
        stack.append(template.overrides[index])
    return stack


def _top(stack: list[VmFields], field: str) -> Any:
    for layer in reversed(stack):
        value = getattr(layer, field)
        if value is not None:
            return value
    return None


DOCKER_PACKAGE = "docker.io"
DOCKER_ENABLE = "systemctl enable --now docker"


def _merged_cloud_init(stack: list[VmFields]) -> CloudInit:
    """The layers' `cloud_init` merged field by field; `install_docker: true` becomes the
    `docker.io` package (as the replicas doc's inventory does) and a command starting it."""
    merged: dict[str, Any] = {}
    for layer in stack:
        if layer.cloud_init is not None:
            merged.update(layer.cloud_init.model_dump(exclude_none=True, by_alias=False))
    if merged.get("install_docker"):
        packages = list(merged.get("packages") or [])
        runcmd = list(merged.get("runcmd") or [])
        merged["packages"] = packages + [DOCKER_PACKAGE] * (DOCKER_PACKAGE not in packages)
        merged["runcmd"] = runcmd + [DOCKER_ENABLE] * (DOCKER_ENABLE not in runcmd)
    return CloudInit.model_validate(merged)


def _with_image_user(spec: FleetSpec, cloud_init: CloudInit, image: str | None) -> CloudInit:
    """The login user: `cloud_init.user`, else `ssh.user` when the file sets it, else the
    image's `user` (catalog images have one: debian, ubuntu, ...) or its `prepare.setup`
    user, else `ssh.user`'s default."""
    if cloud_init.user or "user" in spec.ssh.model_fields_set or image not in spec.images:
        return cloud_init
    user = spec.images[image].login_user
    return cloud_init.model_copy(update={"user": user}) if user else cloud_init


def template_network(spec: FleetSpec, template: VmTemplate) -> str:
    """The network the shorthand (`network`, `mac_addresses`, `ips`) of a template uses."""
    name = _top(layers(spec, template, None), "network")
    return str(name) if name is not None else BUILTIN_USER_NETWORK


def template_nics(spec: FleetSpec, template: VmTemplate, index: int | None) -> tuple[NicSpec, ...]:
    """The NICs of a template: `nics:` as written, or one NIC from the shorthand fields."""
    stack = layers(spec, template, index)
    nics = _top(stack, "nics")
    if nics is not None:
        return tuple(nics)
    return (
        NicSpec(
            network=template_network(spec, template),
            mac_addresses=template.mac_addresses,
            ips=template.ips,
        ),
    )


def effective(spec: FleetSpec, template: VmTemplate, index: int | None) -> Effective:
    """Every field of one VM (template at `index`, or None for an unreplicated VM)."""
    stack = layers(spec, template, index)
    labels: dict[str, str] = {}
    for layer in stack:
        labels.update(layer.labels or {})
    return Effective(
        memory=_top(stack, "memory") or DEFAULT_MEMORY,
        vcpus=_top(stack, "vcpus") or DEFAULT_VCPUS,
        disk=_top(stack, "disk") or DEFAULT_DISK,
        image=_top(stack, "image"),
        clone=_top(stack, "clone") or "linked",
        data_disks=tuple(_top(stack, "data_disks") or ()),
        nics=template_nics(spec, template, index),
        arch=_top(stack, "arch") or _image_arch(spec, _top(stack, "image")),
        machine=_top(stack, "machine"),
        cpu_model=_top(stack, "cpu_model"),
        firmware=_top(stack, "firmware") or "bios",
        kernel=_top(stack, "kernel"),
        graphics=_top(stack, "graphics") or "none",
        labels=labels,
        group=_top(stack, "group"),
        host=_top(stack, "host"),
        node_preference=tuple(_top(stack, "node_preference") or ()),
        affinity=_top(stack, "affinity"),
        max_per_host=_top(stack, "max_per_host"),
        cloud_init=_with_image_user(spec, _merged_cloud_init(stack), _top(stack, "image")),
        ready=_top(stack, "ready") or Ready(),
        autostart=bool(_top(stack, "autostart")),
        snapshot_type=_top(stack, "snapshot_type") or "auto",
        power=_top(stack, "power") or "on",
        hostname=_top(stack, "hostname"),
        description=_top(stack, "description"),
    )


def _image_arch(spec: FleetSpec, image: str | None) -> str:
    """A VM without `arch` runs its image's architecture (x86_64 without an image)."""
    return spec.images[image].arch if image in spec.images else DEFAULT_ARCH


def networks(spec: FleetSpec) -> dict[str, NetworkSpec]:
    """The fleet's networks plus the built-in `user` network (unless the file defines one)."""
    out = dict(spec.networks)
    out.setdefault(BUILTIN_USER_NETWORK, NetworkSpec(mode="user"))
    return out


def replica_name(base: str, index: int | None) -> str:
    """`web-2` for index 2; the bare name for an unreplicated VM."""
    return base if index is None else f"{base}-{index}"


def indexes(template: VmTemplate) -> list[int | None]:
    """[None] for one replica (bare name), else 0..replicas-1."""
    return [None] if template.replicas == 1 else list(range(template.replicas))


def ha_settings(spec: FleetSpec, template: VmTemplate, index: int | None) -> HaSettings | None:
    """The cluster settings of one VM (None: libvirt manages it, not a cluster).

    Kept out of `Effective` so that the spec hash of VMs outside clusters stays as it was.
    """
    value = _top(layers(spec, template, index), "ha")
    return value if isinstance(value, HaSettings) else None


def is_ha(spec: FleetSpec, template: str, index: int | None) -> bool:
    """Whether a cluster, not libvirt, manages this VM."""
    return bool(spec.clusters) and ha_settings(spec, spec.vms[template], index) is not None
