"""Every libvirt object name vmfleet builds, and the few it reads back.

Fleet, VM, network and image names are DNS labels (`[a-z0-9-]`, see `spec.models.NAME_RE`),
so they may contain `-` and even `--`, but never `.`. Components are therefore joined with
`.`: `vmf-<fleet>.<vm>.<role>` splits at its first two dots whatever the names hold, and no
name of one fleet can be read as another fleet's (the old `vmf-<fleet>--<vm>--<role>` could:
`vmf-relqa--x--y--root` was fleet `relqa--x`).

Names only say where to look. Who owns an object is decided by metadata vmfleet wrote (the
domain's `<vmfleet:instance>` and its disk list, the network's `<vmfleet:network>`, the
journal), never by parsing a name alone.
"""

from __future__ import annotations

import re

PREFIX = "vmf-"
SEP = "."

# What a fleet name can never be, because our own kinds of names start with it.
RESERVED_FLEETS = frozenset({"base", "probe"})

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_VOLUME_RE = re.compile(
    rf"^vmf-(?P<fleet>{_LABEL})\.(?P<vm>{_LABEL})\.(?P<role>[a-z0-9][a-z0-9.-]*)$"
)


def volume(*, fleet: str, vm: str, role: str) -> str:
    """A VM's pool volume: role is `root`, `data-N`, `seed.iso` or `<disk>.snap-<name>`."""
    return f"{PREFIX}{fleet}{SEP}{vm}{SEP}{role}"


def parse_volume(name: str) -> tuple[str, str, str] | None:
    """(fleet, vm, role) of a name `volume()` built, else None. Unambiguous: fleet and VM
    names hold no `.`; used only to narrow a search, never as proof of ownership."""
    match = _VOLUME_RE.match(name)
    if match is None or match["fleet"] in RESERVED_FLEETS:
        return None
    return match["fleet"], match["vm"], match["role"]


def is_legacy_volume(name: str, *, fleet: str, vm: str) -> bool:
    """Whether `name` is what vmfleet 0.1.0 named this VM's volume
    (`vmf-<fleet>--<vm>--<role>`). Ambiguous on its own (the reason for the change), so only
    used for a disk that this VM's owned domain lists; roles never hold `--`."""
    prefix = f"{PREFIX}{fleet}--{vm}--"
    role = name[len(prefix) :]
    return name.startswith(prefix) and bool(role) and "--" not in role


def overlay_role(*, disk: str, snapshot: str) -> str:
    """The role of an external snapshot's overlay file for one disk (`vda.snap-<name>`)."""
    return f"{disk}{SEP}snap-{snapshot}"


def is_overlay(file_name: str) -> bool:
    """Whether a file name is one of our snapshot overlays."""
    parsed = parse_volume(file_name)
    return parsed is not None and ".snap-" in parsed[2]


def base_volume(*, image: str, digest: str) -> str:
    """The pool volume holding a base image, shared by every VM cloned from it."""
    return f"{base_prefix(image)}{digest[:12]}"


def base_lock(base: str) -> str:
    """The lock volume an upload of the base volume `base` holds from before that volume
    exists until it is whole (see `engine.provision.base_images`)."""
    return f"{base}{SEP}lock"


_BASE_RE = re.compile(rf"^vmf-base\.(?P<image>{_LABEL})\.[0-9a-f]{{1,64}}$")


def base_image_of(name: str) -> str | None:
    """The image whose base volume `name` is (as `base_volume` built it), else None (its
    upload lock, and every other volume)."""
    match = _BASE_RE.match(name)
    return None if match is None else match["image"]


def base_prefix(image: str | None = None) -> str:
    """What every base volume name (of one image, when given) starts with."""
    return f"{PREFIX}base{SEP}" + ("" if image is None else f"{image}{SEP}")


def network(*, fleet: str, network: str) -> str:
    """The libvirt network vmfleet creates for one of a fleet's nat/isolated networks."""
    return f"{PREFIX}{fleet}{SEP}{network}"


def probe(*, domain_type: str, token: str) -> str:
    """The KVM boot probe's transient domain and its kernel volume."""
    return f"{PREFIX}probe{SEP}{domain_type}{SEP}{token}"


def serial_log(vm: str) -> str:
    """The host file a VM's serial console logs to (not a libvirt object, but ours to remove)."""
    return f"/var/log/libvirt/qemu/{vm}-serial.log"


def lock(*, fleet: str) -> str:
    """The per-fleet lock volume on a host (see `engine.hostlocks`)."""
    return f"{PREFIX}{fleet}{SEP}lock"
