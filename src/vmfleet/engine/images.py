"""Base images: fetch and prepare them, see where they are used, remove them when nothing
depends on them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from vmfleet.core.plan import ImageFacts
from vmfleet.drivers import download, names
from vmfleet.drivers.qemuimg import QemuImg, refuse_unsafe_base
from vmfleet.engine import catalog, prepare, provision
from vmfleet.engine.context import FleetContext
from vmfleet.errors import HostUnreachableError, ImageError, UsageError
from vmfleet.spec.models import ImageSpec
from vmfleet.spec.units import format_size

Progress = Callable[[str, int, int | None], None]  # (image, bytes, total)


def missing(ctx: FleetContext) -> list[str]:
    """URL images of the fleet that are not in the download cache yet (catalog images also
    when not pinned yet)."""
    cache = download.default_cache_dir()
    return [
        name
        for name, spec in ctx.loaded.spec.images.items()
        if ((spec.catalog or spec.checksums) and not spec.sha256)
        or (
            spec.sha256
            and spec.source.startswith(("http://", "https://"))
            and not download.cached_path(cache, spec.sha256).exists()
        )
    ]


def pull(
    ctx: FleetContext,
    names: list[str] | None = None,
    progress: Progress | None = None,
    *,
    update: bool = False,
    check: bool = False,
) -> list[str]:
    """Download every URL image (or those named) into the cache; returns those fetched.

    Catalog images, and URL images given with `checksums`, are resolved from the
    publisher's checksum list and pinned
    (`engine.catalog`; `check` re-reads the list of a pinned one, `update` takes a changed
    "latest"). Local image files are left to
    preflight, which reports every missing one at once.
    """
    images = ctx.loaded.spec.images
    unknown = sorted(set(names or []) - set(images))
    if unknown:
        raise UsageError(f"unknown image {', '.join(unknown)}; known: {', '.join(images)}")
    fetched = []
    cache = download.default_cache_dir()
    for name in names or list(images):
        spec = images[name]
        if spec.catalog or (spec.checksums and not spec.sha256):
            report = _for_image(progress, name)
            got = catalog.pull(
                name,
                spec,
                state_dir=ctx.state_dir,
                cache=cache,
                progress=report,
                update=update,
                check=check,
            )
            ctx.loaded = catalog.pinned(ctx.loaded, ctx.state_dir)
            fetched += [name] if got else []
        elif spec.source.startswith(("http://", "https://")):
            assert spec.sha256 is not None
            if download.cached_path(cache, spec.sha256).exists():
                continue
            path = download.fetch(
                spec.source, sha256=spec.sha256, cache=cache, progress=_for_image(progress, name)
            )
            fetched.append(name)
            try:  # checked again by preflight before use; say it now, naming the image
                refuse_unsafe_base(QemuImg().info(path))
            except ImageError as error:
                raise ImageError(f"image {name}: {error}") from None
    return fetched


def facts(ctx: FleetContext, wanted: list[str]) -> dict[str, ImageFacts]:
    """Size and format of each named image's local file, as `up` uploads it: the format the
    spec states, else the one qemu-img reads. Read-only; an image not downloaded yet (or a
    file qemu-img cannot read, which preflight reports at `up`) has them as None."""
    out: dict[str, ImageFacts] = {}
    for name in wanted:
        spec = ctx.loaded.spec.images[name]
        if spec.prepare is not None:
            out[name] = _prepared_facts(ctx, name)
            continue
        remote = spec.source.startswith(("http://", "https://"))
        if remote and not spec.sha256:  # a catalog image not pinned yet
            out[name] = ImageFacts(spec.source)
            continue
        try:
            path = provision.image_path(ctx, spec.source, spec.sha256)
        except ImageError:  # not downloaded yet, or missing: `up` pulls it or says so
            out[name] = ImageFacts(spec.source, format=spec.format)
            continue
        fmt: str | None = spec.format
        if fmt is None:
            try:
                fmt = QemuImg().info(path).format
            except ImageError:  # unreadable: `up`'s preflight refuses it, with qemu-img's words
                fmt = None
        out[name] = ImageFacts(spec.source, path.stat().st_size, fmt)
    return out


def _prepared_facts(ctx: FleetContext, name: str) -> ImageFacts:
    spec = ctx.loaded.spec.images[name]
    assert spec.prepare is not None
    path = prepare.cached(ctx, name)
    if path is None:
        return ImageFacts(spec.source, format=spec.prepare.format, prepare="not cached")
    return ImageFacts(spec.source, path.stat().st_size, spec.prepare.format, prepare="cached")


def prepare_all(
    ctx: FleetContext,
    names: list[str] | None = None,
    *,
    building: Callable[[str, Path], None] | None = None,
) -> list[prepare.Prepared]:
    """Build every image with `prepare:` (or those named) whose prepared file is not cached
    (`building` hears each one as its build starts); sources must be pulled first."""
    out = []
    for name in list(ctx.loaded.spec.images) if names is None else names:
        if ctx.loaded.spec.images[name].prepare is None:
            continue
        hear = None if building is None else functools.partial(building, name)
        out.append(prepare.ensure(ctx, name, building=hear))
    return out


def _recipe_text(spec: ImageSpec) -> str | None:
    """`qcow2, 4GiB, setup debian` for `image list`."""
    if spec.prepare is None:
        return None
    parts: list[str] = [spec.prepare.format]
    if spec.prepare.size is not None:
        parts.append(format_size(spec.prepare.size))
    setup = spec.prepare.setup
    if setup is not None:
        parts.append("setup" + (f" {setup.user}" if setup.user else ""))
    return ", ".join(parts)


def _for_image(progress: Progress | None, name: str) -> download.Progress | None:
    if progress is None:
        return None
    report = progress

    def one(done: int, total: int | None) -> None:
        report(name, done, total)

    return one


def listing(ctx: FleetContext) -> list[dict[str, object]]:
    """A row per image: source, local file, and per host its base volume and dependants."""
    rows: list[dict[str, object]] = []
    where = _where(ctx)
    for name, spec in ctx.loaded.spec.images.items():
        local, size = _local(ctx, name, spec)
        hosts = where.get(name, {})
        rows.append(
            {
                "image": name,
                "source": spec.source,
                "local": local,
                "size": size,
                "prepare": _recipe_text(spec),
                "hosts": sorted(hosts),
                "dependants": sorted({d for deps in hosts.values() for d in deps}),
            }
        )
    return rows


def _local(ctx: FleetContext, name: str, spec: ImageSpec) -> tuple[str, str | None]:
    """(local file, its size) of an image: the prepared file for one with `prepare:`."""
    try:
        path: Path | None = provision.image_path(ctx, spec.source, spec.sha256)
    except ImageError:
        return "not downloaded" if spec.sha256 else "missing", None
    if spec.prepare is not None:
        path = prepare.cached(ctx, name)
    if path is None:
        return "not prepared", None
    return str(path), format_size(path.stat().st_size)


def _where(ctx: FleetContext) -> dict[str, dict[str, list[str]]]:
    """image → host → volumes backed by that image's base volumes there."""
    out: dict[str, dict[str, list[str]]] = {}
    for host_name, host_spec in ctx.host_specs().items():
        try:
            volumes = ctx.host(host_name).list_volumes(host_spec.pool)
        except HostUnreachableError:
            continue
        bases: dict[str, str] = {}  # base volume path → image
        for volume in volumes:
            image = names.base_image_of(volume.name)
            if image in ctx.loaded.spec.images:
                bases[volume.path] = image
                out.setdefault(image, {}).setdefault(host_name, [])
        for volume in volumes:
            image = bases.get(volume.backing_path or "")
            if image is not None:  # backed by any base of the image, old digests too
                out[image][host_name].append(volume.name)
    return out


def remove(ctx: FleetContext, name: str) -> list[str]:
    """Delete an image's base volumes from every host and its cached download.

    Refused (ImageError listing them) while any overlay still depends on it.
    """
    if name not in ctx.loaded.spec.images:
        raise UsageError(f"unknown image {name}")
    dependants = _where(ctx).get(name, {})
    blocking = [f"{vol} on {host}" for host, vols in dependants.items() for vol in vols]
    if blocking:
        raise ImageError(
            f"image {name} is still used by {len(blocking)} disk"
            f"{'s' if len(blocking) != 1 else ''}: {', '.join(sorted(blocking))}; "
            "remove those VMs first (vmfleet down)"
        )
    removed = []
    for host_name, host_spec in ctx.host_specs().items():
        host = ctx.host(host_name)
        for volume in host.list_volumes(host_spec.pool):
            if names.base_image_of(volume.name) == name:
                host.delete_volume(host_spec.pool, volume.name)
                removed.append(f"{volume.name} on {host_name}")
    spec = ctx.loaded.spec.images[name]
    prepared = prepare.cached(ctx, name) if spec.prepare is not None else None
    if prepared is not None:
        prepared.unlink()
        removed.append(str(prepared))
    if spec.sha256 and spec.source.startswith(("http://", "https://")):
        cached = download.cached_path(download.default_cache_dir(), spec.sha256)
        if cached.exists():
            cached.unlink()
            removed.append(str(cached))
    return removed
