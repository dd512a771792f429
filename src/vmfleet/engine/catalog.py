"""Catalog images (and URL images given with a `checksums` list) at pull time: read the
publisher's checksum list, download and verify the image, and pin what was taken
(`state.pins`); later runs use the pin, so every host gets the same bytes even after the
publisher's "latest" moves on. A pull that finds the list changed
refuses, naming both digests, unless asked to `update`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from vmfleet.drivers import download
from vmfleet.errors import ImageError
from vmfleet.spec import catalog
from vmfleet.spec.load import LoadedFleet
from vmfleet.spec.models import ImageSpec
from vmfleet.state import pins


def pinned(loaded: LoadedFleet, state_dir: Path) -> LoadedFleet:
    """`loaded` with each pinned catalog image's sha256 filled in (as if the file said it)."""
    found = pins.load(state_dir)
    images = dict(loaded.spec.images)
    changed = False
    for name, image in images.items():
        pin = found.get(name)
        listed = image.catalog or (image.checksums and not image.sha256)
        if listed and pin and pin.catalog == (image.catalog or "") and pin.url == image.source:
            images[name] = image.model_copy(update={"sha256": pin.sha256})
            changed = True
    if not changed:
        return loaded
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"images": images}))


def pull(
    name: str,
    spec: ImageSpec,
    *,
    state_dir: Path,
    cache: Path,
    progress: download.Progress | None,
    update: bool = False,
    check: bool = False,
) -> bool:
    """Make sure the catalog image is cached and pinned; True when bytes were downloaded.

    A pinned, cached image needs no network unless `check` (an explicit `image pull`) asks
    whether the publisher's list still says the same."""
    entry = _entry(name, spec)
    pin = pins.load(state_dir).get(name)
    if pin and pin.url != entry.url:
        pin = None  # the file now names another catalog image: pin afresh
    if pin and download.cached_path(cache, pin.sha256).exists() and not (update or check):
        return False
    listed = _listed(entry)
    if pin and (pin.algorithm, pin.digest) != listed and not update:
        raise ImageError(
            f"image {name}: the publisher's {entry.file} changed since it was pinned on "
            f"{pin.pinned_at} ({pin.algorithm} {pin.digest[:16]}…, now {listed[1][:16]}…); "
            f"`vmfleet image pull --update {name}` takes the new one (existing VMs keep theirs)"
        )
    same = pin is not None and (pin.algorithm, pin.digest) == listed
    if same and pin is not None and download.cached_path(cache, pin.sha256).exists():
        return False
    algorithm, digest = listed
    _path, sha256 = download.fetch_checked(
        catalog.mirrored(entry.url),
        algorithm=algorithm,
        digest=digest,
        cache=cache,
        progress=progress,
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    pins.save(
        state_dir, name, pins.Pin(spec.catalog or "", entry.url, algorithm, digest, sha256, now)
    )
    return True


def _entry(name: str, spec: ImageSpec) -> catalog.CatalogImage:
    """The catalog's entry, or one made of the image's own URL and `checksums` list."""
    if spec.catalog is not None:
        entry = catalog.find(spec.catalog, spec.arch)
        assert entry is not None  # the spec checked it
        return entry
    assert spec.checksums is not None
    return catalog.CatalogImage(name, "", spec.arch, spec.source, spec.checksums, "")  # type: ignore[arg-type]  # any arch


def _listed(entry: catalog.CatalogImage) -> tuple[str, str]:
    url = catalog.mirrored(entry.checksums)
    found = catalog.digest_for(download.read_text(url), entry.file)
    if found is None:
        raise ImageError(f"{entry.name}: {entry.file} is not listed in {url}")
    return found
