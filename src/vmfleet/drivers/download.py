"""The image cache: base images fetched once over http(s), resumable and verified.

A download goes to `<sha256>.part` in the cache; an interrupted one resumes with an HTTP
Range request; the finished file is checked against its sha256 and only then renamed
(atomically) to `<sha256>.img`. A checksum mismatch removes the partial file so the next
pull starts clean.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vmfleet.drivers import qemuimg
from vmfleet.errors import ImageError

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def default_cache_dir() -> Path:
    """$VMFLEET_CACHE, else /var/cache/vmfleet/images as root, else ~/.cache/vmfleet/images."""
    if os.environ.get("VMFLEET_CACHE"):
        return Path(os.environ["VMFLEET_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/vmfleet/images")
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "vmfleet" / "images"


def cached_path(cache: Path, sha256: str) -> Path:
    """Where the verified image with this checksum lives (it may not be there yet)."""
    return cache / f"{sha256.lower()}.img"


def fetch(
    url: str, *, sha256: str, cache: Path, progress: Progress | None = None, timeout: float = 30.0
) -> Path:
    """The cached file for `url`, downloading (or resuming) it when it is not there yet."""
    final = cached_path(cache, sha256)
    if final.exists():
        return final
    # Imported here: urllib.request loads ssl, a noticeable share of every command's start-up.
    import urllib.error
    import urllib.request

    cache.mkdir(parents=True, exist_ok=True)
    part = final.with_suffix(".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vmfleet"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:
                have = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with part.open("ab" if have else "wb") as out:
                done = have
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
            if total is not None and done < total:
                raise ImageError(
                    f"download of {url} stopped after {done} of {total} bytes; run again to resume"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise ImageError(
            f"download of {url} stopped ({reason}); run again to resume from "
            f"{part.stat().st_size if part.exists() else 0} bytes"
        ) from None
    digest = qemuimg.sha256(part)
    if digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise ImageError(f"download of {url}: sha256 is {digest}, expected {sha256.lower()}")
    os.replace(part, final)
    return final
