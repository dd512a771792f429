"""Prepared images: an image's `prepare:` recipe run once and cached by content hash.

The prepared file is `<cache>/prepared/<key>.<format>` beside the download cache, where
`key` is the sha256 of the source's digest, the recipe (format, size, setup user, hostname),
the public key it authorizes and `VERSION`: a change to any of them makes a new file, an
unchanged recipe reuses the old one. A build writes `<key>.<format>.tmp` and renames it when
every step succeeded, under an `fcntl` lock on `<key>.lock`, so two processes (or threads)
build it once and a killed build leaves no file that looks finished.

Steps, in order: convert (`qemu-img convert` to `format`), or extend (`virt-resize
--expand` of the disk's last partition into a `size` image, which converts as it copies);
then setup (`virt-customize`: the login user and its key, hostname, host keys at first
boot). The libguestfs tools run under TCG unless the KVM probe found KVM working here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmfleet import logs
from vmfleet.drivers import download
from vmfleet.drivers.guestfs import GuestTools, setup_operations
from vmfleet.drivers.qemuimg import QemuImg, refuse_unsafe_base
from vmfleet.engine.context import FleetContext, default_uri
from vmfleet.errors import ImageError, SpecError
from vmfleet.spec.prepare import ImagePrepare
from vmfleet.spec.source import Document
from vmfleet.spec.units import format_size
from vmfleet.spec.validate import setup_user
from vmfleet.state import kvmcache

_log = logs.get("prepare")

VERSION = 1
"""Raise when a step changes what it writes: every prepared file is then built again."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything a prepared file depends on; `key` names it in the cache."""

    image: str
    source: Path
    source_digest: str
    prepare: ImagePrepare
    user: str | None
    public_key: str | None

    @property
    def key(self) -> str:
        """sha256 of what the prepared file is made from and how."""
        text = json.dumps(
            {
                "version": VERSION,
                "source": self.source_digest,
                "prepare": self.prepare.model_dump(mode="json"),
                "user": self.user,
                "public_key": self.public_key,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A prepared image: its file, whether this call built it, and each step's seconds."""

    image: str
    key: str
    path: Path
    built: bool
    seconds: dict[str, float]


def cache_dir() -> Path:
    """Where prepared files live: `prepared/` in the download cache."""
    return download.default_cache_dir() / "prepared"


def recipe(ctx: FleetContext, image: str, *, make_key: bool = False) -> Recipe | None:
    """The recipe of an image with `prepare:` (None without). Reading the source's digest
    needs its file; the fleet's public key is read, or made when `make_key` (`up`, `image
    pull`); a read-only caller gets None when it is not there yet."""
    from vmfleet.engine import provision  # the provision package imports this module

    spec = ctx.loaded.spec.images[image]
    if spec.prepare is None:
        return None
    source = provision.image_path(ctx, spec.source, spec.sha256)
    remote = spec.source.startswith(("http://", "https://"))
    digest = spec.sha256 if remote and spec.sha256 else provision.digest(ctx, source)
    if spec.sha256 and digest != spec.sha256:
        raise ImageError(
            f"image {image}: sha256 of {source} is {digest}, the spec says {spec.sha256}"
        )
    user = public_key = None
    if spec.prepare.setup is not None:
        user = setup_user(ctx.loaded.spec, image)
        if make_key:
            public_key = ctx.ssh_public_key()
        else:
            existing = ctx.existing_ssh_key()
            if existing is None:
                return None
            public_key = Path(f"{existing}.pub").read_text().strip()
    return Recipe(image, source, digest, spec.prepare, user, public_key)


def cached(ctx: FleetContext, image: str) -> Path | None:
    """The image's prepared file when it is in the cache (read-only); None when not built
    yet or not knowable yet (source not downloaded, login key not made)."""
    try:
        found = recipe(ctx, image)
    except ImageError:
        return None
    if found is None:
        return None
    path = _path(found)
    return path if path.exists() else None


def ensure(
    ctx: FleetContext, image: str, *, building: Callable[[Path], None] | None = None
) -> Prepared:
    """The image's prepared file, built now when the cache does not hold it (`building`
    hears the file's path as a build starts)."""
    found = recipe(ctx, image, make_key=True)
    if found is None:
        raise ImageError(f"image {image} has no prepare recipe")
    final = _path(found)
    if final.exists():
        return Prepared(image, found.key, final, False, {})
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.with_suffix(".lock")):
        if final.exists():  # another process built it while we waited
            return Prepared(image, found.key, final, False, {})
        if building is not None:
            building(final)
        seconds = _build(found, final, ctx.loaded.document)
    return Prepared(image, found.key, final, True, seconds)


def _path(found: Recipe) -> Path:
    return cache_dir() / f"{found.key}.{found.prepare.format}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(found: Recipe, final: Path, document: Document) -> dict[str, float]:
    """Run the recipe into `<final>.tmp`, then rename it to `final`; each step's seconds."""
    tmp = final.with_name(final.name + ".tmp")
    for leftover in (tmp, Path(f"{tmp}.part")):
        leftover.unlink(missing_ok=True)  # a killed build's; we hold the lock
    qemu = QemuImg()
    source = qemu.info(found.source)
    try:  # the tools below would open a backing file the header names
        refuse_unsafe_base(source)
    except ImageError as error:
        raise ImageError(f"image {found.image}: {error}") from None
    prep = found.prepare
    if prep.size is not None and prep.size < source.virtual_size:
        raise SpecError(
            [
                document.problem(
                    ("images", found.image, "prepare", "size"),
                    f"{format_size(prep.size)} is smaller than the image "
                    f"({format_size(source.virtual_size)}); images are only grown",
                )
            ]
        )
    tools = GuestTools(tcg=kvmcache.newest(default_uri()) is not True)
    seconds: dict[str, float] = {}
    try:
        start = time.monotonic()
        if prep.size is not None and prep.size > source.virtual_size:
            last = _last_partition(tools, found, source.format)
            qemu.create(tmp, format=prep.format, size=prep.size)
            tools.expand(
                found.source,
                tmp,
                partition=last,
                src_format=source.format,
                dest_format=prep.format,
            )
            seconds["extend"] = time.monotonic() - start
        else:
            qemu.convert(found.source, tmp, src_format=source.format, dest_format=prep.format)
            seconds["convert"] = time.monotonic() - start
        if prep.setup is not None:
            assert found.user is not None and found.public_key is not None
            start = time.monotonic()
            ops = setup_operations(
                user=found.user, public_key=found.public_key, hostname=prep.setup.hostname
            )
            tools.customize(tmp, format=prep.format, operations=ops)
            seconds["setup"] = time.monotonic() - start
        refuse_unsafe_base(qemu.info(tmp))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    logs.event(_log, "prepared", image=found.image, path=str(final), seconds=seconds)
    return seconds


def _last_partition(tools: GuestTools, found: Recipe, fmt: str) -> str:
    parts = tools.partitions(found.source, format=fmt)
    if not parts:
        raise ImageError(
            f"image {found.image}: {found.source} has no partitions; prepare.size grows the "
            "last partition of a partitioned disk"
        )
    return parts[-1].device
