"""The image cache: base images fetched once over http(s), resumable and verified.

A download goes to `<sha256>.part` in the cache; an interrupted one resumes with an HTTP
Range request; the finished file is checked against its sha256 and only then renamed
(atomically) to `<sha256>.img`. A checksum mismatch removes the partial file so the next
pull starts clean.
"""

from __future__ import annotations

import hashlib
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
    part = final.with_suffix(".part")
    _download(url, part, progress=progress, timeout=timeout)
    digest = qemuimg.sha256(part)
    if digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise ImageError(f"download of {url}: sha256 is {digest}, expected {sha256.lower()}")
    os.replace(part, final)
    return final


def fetch_checked(
    url: str, *, algorithm: str, digest: str, cache: Path, progress: Progress | None = None
) -> tuple[Path, str]:
    """(cached file, its sha256) for `url` whose `algorithm` (sha256 or sha512) digest is
    `digest`, as a publisher's checksum list gives it; cached under its sha256 like `fetch`."""
    if algorithm == "sha256":
        return fetch(url, sha256=digest, cache=cache, progress=progress), digest
    part = cache / f"{algorithm}-{digest[:64]}.part"
    _download(url, part, progress=progress, timeout=30.0)
    with part.open("rb") as handle:
        got = hashlib.file_digest(handle, algorithm).hexdigest()
    if got != digest.lower():
        part.unlink(missing_ok=True)
        raise ImageError(f"download of {url}: {algorithm} is {got}, expected {digest.lower()}")
    sha256 = qemuimg.sha256(part)
    final = cached_path(cache, sha256)
    os.replace(part, final)
    return final, sha256


def read_text(url: str, *, timeout: float = 30.0, limit: int = 1 << 20) -> str:
    """A small text file (a checksum list) over http(s); ImageError when it cannot be read."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "vmfleet"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read(limit)).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise ImageError(f"cannot read {url}: {getattr(error, 'reason', error)}") from None


def _download(url: str, part: Path, *, progress: Progress | None, timeout: float) -> None:
    """Download (or resume) `url` into `part`."""
    # Imported here: urllib.request loads ssl, a noticeable share of every command's start-up.
    import urllib.error
    import urllib.request

    part.parent.mkdir(parents=True, exist_ok=True)
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
