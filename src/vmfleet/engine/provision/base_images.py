"""Base images: the local file of an image, its (cached) digest, its volume on a host."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.drivers import download, names, qemuimg
from vmfleet.drivers.qemuimg import QemuImg, refuse_unsafe_base
from vmfleet.engine import hostlocks, prepare
from vmfleet.engine.context import FleetContext
from vmfleet.errors import ImageError

if TYPE_CHECKING:
    from vmfleet.drivers.libvirt import LibvirtHost, VolumeInfo

# How long an upload of a base volume may hold its lock (and others wait for it).
UPLOAD_WAIT = 3600.0

_base_locks: dict[tuple[str, str], threading.Lock] = {}
_base_locks_guard = threading.Lock()


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
    """sha256 of an image, cached by path, size and mtime (a read-only command reads the
    cache but writes nothing: it hashes again next time)."""
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = ctx.state_dir / "digests"
    entry = cache / hashlib.sha256(key.encode()).hexdigest()
    if entry.exists():
        return entry.read_text().strip()
    value = qemuimg.sha256(path)
    if not ctx.store.readonly:
        cache.mkdir(parents=True, exist_ok=True)
        entry.write_text(value)
    return value


def local_image(ctx: FleetContext, image: str) -> tuple[Path, str]:
    """The file `up` uploads for an image and the digest that names its base volume: the
    prepared file and its recipe key for an image with `prepare:` (ImageError when it is
    not prepared yet), else the image's own file and sha256."""
    spec = ctx.loaded.spec.images[image]
    if spec.prepare is None:
        path = image_path(ctx, spec.source, spec.sha256)
        return path, digest(ctx, path)
    found = prepare.recipe(ctx, image)
    prepared = prepare.cached(ctx, image)
    if found is None or prepared is None:
        raise ImageError(f"image {image} is not prepared yet (vmfleet image pull prepares it)")
    return prepared, found.key


def base_name(ctx: FleetContext, image: str) -> str | None:
    """The base volume `ensure_base` would use for the image's file as it is now (named by
    its digest: the spec's, else the file's; a prepared image's by its recipe key); None
    when that cannot be known before `up` (a catalog image not pinned yet, a file that is
    missing: `up` pulls it or refuses; a prepared image's login key not made yet)."""
    spec = ctx.loaded.spec.images[image]
    if spec.prepare is not None:
        try:
            found = prepare.recipe(ctx, image)
        except ImageError:
            return None
        return None if found is None else names.base_volume(image=image, digest=found.key)
    if spec.sha256:
        return names.base_volume(image=image, digest=spec.sha256)
    if spec.source.startswith(("http://", "https://")):
        return None
    try:
        path = image_path(ctx, spec.source, spec.sha256)
    except ImageError:
        return None
    return names.base_volume(image=image, digest=digest(ctx, path))


def ensure_base(
    ctx: FleetContext, host: LibvirtHost, host_name: str, image: str
) -> tuple[str, str, int]:
    """The base volume (path, format, virtual size) for `image` on a host, uploaded once.

    Other vmfleet runs (other fleets, other machines) share base volumes: an upload holds the
    lock volume `names.base_lock` from before the base volume exists until it is whole, and a
    base volume is used only when no such lock is held. A lock left by a dead run is broken
    and the half-sent base volume it guarded sent again.
    """
    spec = ctx.loaded.spec.images[image]
    if spec.prepare is not None:
        made = prepare.ensure(ctx, image)  # built by `up` before the plan; cached here
        path, digest_value = made.path, made.key
    else:
        path = image_path(ctx, spec.source, spec.sha256)
        digest_value = digest(ctx, path)
    if spec.prepare is None and spec.sha256 and spec.sha256 != digest_value:
        raise ImageError(
            f"image {image}: sha256 of {path} is {digest_value}, the spec says {spec.sha256}"
        )
    pool = ctx.host_specs()[host_name].pool
    name = names.base_volume(image=image, digest=digest_value)
    key = (host.uri, pool, name)
    memo = ctx.base_memo
    if memo is not None and key in memo:
        return memo[key]  # this run found it whole already: nothing uploads a base twice
    with _base_locks_guard:
        lock = _base_locks.setdefault((host.uri, name), threading.Lock())
    with lock:
        if memo is not None and key in memo:
            return memo[key]
        existing = host.get_volume(pool, name)
        # Whole unless an upload holds its lock (taken before the volume was created).
        if existing is None or _uploading(host, pool, name):
            with upload_lock(ctx, host, host_name, pool, name) as broke:
                existing = host.get_volume(pool, name)
                if existing is not None and broke:
                    host.delete_volume(pool, name)  # its uploader died: bytes may be missing
                    existing = None
                if existing is None:
                    existing = _upload(ctx, host, host_name, pool, name, path, image=image)
        # Read from the host, not the local file: the host may be remote.
        found = (existing.path, existing.format or "raw", existing.capacity)
        if memo is not None:
            memo[key] = found
        return found


def _uploading(host: LibvirtHost, pool: str, base: str) -> bool:
    return hostlocks.holds_locks(host) and host.get_volume(pool, names.base_lock(base)) is not None


@contextlib.contextmanager
def upload_lock(
    ctx: FleetContext, host: LibvirtHost, host_name: str, pool: str, base: str
) -> Iterator[bool]:
    """Hold the upload lock of the base volume `base`; yields whether a dead run's lock was
    broken to get it (then `base`, if there, may be missing bytes)."""
    if not hostlocks.holds_locks(host):
        yield False
        return

    def notice(message: str) -> None:
        ctx.store.event(kind="lock-broken", vm="", message=message)

    with hostlocks.hold_one(
        host, host_name, pool, names.base_lock(base),
        what=f"the upload of {base}", wait=UPLOAD_WAIT, ttl=UPLOAD_WAIT, notice=notice,
    ) as broke:  # fmt: skip
        yield broke


def _upload(
    ctx: FleetContext,
    host: LibvirtHost,
    host_name: str,
    pool: str,
    name: str,
    path: Path,
    *,
    image: str,
) -> VolumeInfo:
    spec = ctx.loaded.spec.images[image]
    local = QemuImg().info(path)
    refuse_unsafe_base(local)  # preflight checked it too; the file may have changed
    fmt = spec.prepare.format if spec.prepare else spec.format or local.format
    entry = ctx.store.intent(
        run=ctx.run_id, host=host_name, vm="", kind="volume", target=name, detail={"pool": pool}
    )
    uploaded = host.upload_volume(pool, name, path, format=fmt)
    ctx.store.finish(entry)
    return uploaded
