"""Checks made before `up` changes anything: every fault that can be seen beforehand is
reported here, all at once, and nothing on any host is touched.

- a host that cannot be reached (already raised while planning);
- a missing or corrupt image file, or one whose sha256 differs from the spec, or one whose
  header names a backing or data file on this host, or that is not qcow2 or raw;
- a domain of the same name on the host that vmfleet does not own (or another fleet owns);
- a storage pool without room for what the plan will write.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from vmfleet.core.plan import Plan
from vmfleet.drivers import names
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


def check(ctx: FleetContext, plan: Plan) -> None:
    """Raise PreflightError listing every problem with `plan`; return when it can run."""
    problems: list[str] = []
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


def _check_image(ctx: FleetContext, name: str) -> tuple[Path, str]:
    spec = ctx.loaded.spec.images[name]
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
