"""qemu-img through the command-runner seam: inspect, check, create (overlays), convert, resize.

Every failure is an `ImageError` naming the image file and carrying qemu-img's own words.
Commands that write a file refuse to overwrite an existing one (qemu-img itself would,
silently). `sha256` is computed in Python, streaming, so it needs no runner.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmfleet.drivers.commands import CommandError, CommandRunner, SubprocessRunner, stderr_tail
from vmfleet.errors import ImageError

StrPath = str | os.PathLike[str]

# qemu-img check exit codes (see qemu-img(1)).
_CHECK_OK, _CHECK_FAILED, _CHECK_CORRUPT, _CHECK_LEAKS, _CHECK_UNSUPPORTED = 0, 1, 2, 3, 63

DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What `qemu-img info` says about one image file (sizes in bytes).

    `actual_size` is None when qemu-img cannot tell (some protocols); `backing_file` is the
    resolved path of the backing file (relative names are resolved against the image's
    directory, as qemu does) and None for an image without one; `data_file` is a qcow2's
    external data file (`format-specific.data.data-file`), None when it has none.
    """

    path: str
    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None
    backing_format: str | None
    dirty: bool = False
    data_file: str | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of `qemu-img check` on an image that is not corrupt.

    `supported` is False for formats qemu-img cannot check (raw); then the counts are 0.
    `leaks` are clusters allocated but unused: wasted space, not damage.
    """

    path: str
    format: str | None
    supported: bool
    leaks: int = 0


class QemuImg:
    """qemu-img run through a `CommandRunner` (the real one unless a test passes a fake)."""

    def __init__(
        self,
        *,
        runner: CommandRunner | None = None,
        binary: str = "qemu-img",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._runner: CommandRunner = runner if runner is not None else SubprocessRunner()
        self._binary = binary
        self._timeout = timeout

    def info(self, path: StrPath) -> ImageInfo:
        """Format, sizes and backing file of an image; works on images in use (`-U`).

        Raises ImageError when the file is missing or qemu-img cannot read it.
        """
        name = os.fspath(path)
        out = self._run(["info", "--output=json", "-U", name], path=name, doing="cannot read image")
        data = _json_object(out, path=name)
        try:
            return _image_info(name, data)
        except (KeyError, TypeError, ValueError) as err:
            raise ImageError(f"{name}: unexpected `qemu-img info` output ({err!r})") from err

    def check(self, path: StrPath, *, format: str | None = None) -> CheckResult:
        """Check an image's metadata for damage (`-U`, so it also runs on images in use).

        Returns a result for a clean image, one with leaked clusters, and one marked
        `supported=False` for a format without checks (raw). Raises ImageError naming the file
        when the image is corrupt, missing, or cannot be opened.
        """
        name = os.fspath(path)
        argv = [self._binary, "check", "--output=json", "-U"]
        if format is not None:
            argv += ["-f", format]
        argv.append(name)
        try:
            result = self._runner.run(argv, timeout=self._timeout, check=False)
        except CommandError as err:
            raise ImageError(f"{name}: cannot check image: {err}") from err
        code = result.returncode
        if code == _CHECK_UNSUPPORTED:
            return CheckResult(path=name, format=format, supported=False)
        if code in (_CHECK_OK, _CHECK_LEAKS):
            data = _json_object(result.stdout, path=name)
            return CheckResult(
                path=name,
                format=str(data.get("format", format)),
                supported=True,
                leaks=int(data.get("leaks", 0)),
            )
        if code == _CHECK_CORRUPT:
            raise ImageError(
                f"{name}: image is corrupt ({_corruptions(result.stdout)} errors found by "
                f"qemu-img check): "
                f"{stderr_tail(result.stderr, lines=5)}"
            )
        raise ImageError(
            f"{name}: qemu-img check failed (exit {code}): {stderr_tail(result.stderr)}"
        )

    def create_overlay(
        self,
        path: StrPath,
        *,
        backing: StrPath,
        backing_format: str,
        size: int | None = None,
    ) -> ImageInfo:
        """Create a qcow2 overlay at `path` on top of `backing`; returns its info.

        `size` (bytes) defaults to the backing image's virtual size; a bigger size grows the
        disk. A relative `backing` is resolved by qemu against the overlay's directory.
        Refuses (ImageError) when `path` already exists.
        """
        name = os.fspath(path)
        _refuse_existing(name)
        argv = ["create", "-q", "-f", "qcow2", "-F", backing_format, "-b", os.fspath(backing)]
        argv.append(name)
        if size is not None:
            argv.append(str(size))
        self._run(argv, path=name, doing="cannot create overlay")
        return self.info(name)

    def create(self, path: StrPath, *, format: str, size: int) -> ImageInfo:
        """Create an empty image of `size` bytes; refuses (ImageError) when `path` exists."""
        name = os.fspath(path)
        _refuse_existing(name)
        self._run(["create", "-q", "-f", format, name, str(size)], path=name, doing="cannot create")
        return self.info(name)

    def convert(
        self, src: StrPath, dest: StrPath, *, src_format: str, dest_format: str
    ) -> ImageInfo:
        """Copy `src` into a new image `dest` in another format; returns the new image's info.

        Writes to `dest.part` and renames on success, so `dest` never holds half an image;
        the partial file is removed on failure. Refuses (ImageError) when `dest` exists.
        """
        source, target = os.fspath(src), os.fspath(dest)
        _refuse_existing(target)
        partial = target + ".part"
        argv = ["convert", "-f", src_format, "-O", dest_format, source, partial]
        try:
            self._run(argv, path=source, doing=f"cannot convert to {target}")
            os.replace(partial, target)
        finally:
            # Only our own temporary file; on success it was already renamed away.
            Path(partial).unlink(missing_ok=True)
        return self.info(target)

    def resize(self, path: StrPath, size: int, *, format: str | None = None) -> ImageInfo:
        """Grow an image to `size` bytes (virtual); qemu-img refuses to shrink → ImageError."""
        name = os.fspath(path)
        argv = ["resize", "-q"]
        if format is not None:
            argv += ["-f", format]
        argv += [name, str(size)]
        self._run(argv, path=name, doing="cannot resize")
        return self.info(name)

    def _run(self, args: list[str], *, path: str, doing: str) -> bytes:
        try:
            result = self._runner.run([self._binary, *args], timeout=self._timeout)
        except CommandError as err:
            raise ImageError(f"{path}: {doing}: {err}") from err
        return result.stdout


def sha256(path: StrPath) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (fine for multi-GiB images).

    Raises ImageError naming the file when it cannot be read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as err:
        raise ImageError(f"{name}: cannot read for checksum: {err.strerror or err}") from err


def _refuse_existing(path: str) -> None:
    if os.path.lexists(path):
        raise ImageError(f"{path}: already exists; refusing to overwrite it")


def _json_object(raw: bytes, *, path: str) -> Mapping[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ImageError(f"{path}: qemu-img printed invalid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ImageError(f"{path}: qemu-img printed {type(data).__name__}, expected an object")
    return data


def _corruptions(raw: bytes) -> str:
    """The corruption count from check's JSON, or "some" when it is not there to read."""
    try:
        data = json.loads(raw)
        return str(int(data["corruptions"]))
    except (ValueError, KeyError, TypeError):
        return "some"


def _image_info(path: str, data: Mapping[str, Any]) -> ImageInfo:
    actual = data.get("actual-size")
    backing = data.get("full-backing-filename", data.get("backing-filename"))
    backing_format = data.get("backing-filename-format")
    return ImageInfo(
        path=path,
        format=str(data["format"]),
        virtual_size=int(data["virtual-size"]),
        actual_size=None if actual is None else int(actual),
        backing_file=None if backing is None else str(backing),
        backing_format=None if backing_format is None else str(backing_format),
        dirty=bool(data.get("dirty-flag", False)),
        data_file=_data_file(data),
    )


def _data_file(data: Mapping[str, Any]) -> str | None:
    specific = data.get("format-specific")
    inner = specific.get("data") if isinstance(specific, dict) else None
    value = inner.get("data-file") if isinstance(inner, dict) else None
    return None if value is None else str(value)


SAFE_BASE_FORMATS = ("qcow2", "raw")


def refuse_unsafe_base(info: ImageInfo) -> None:
    """Raise ImageError unless an image is safe to hand to QEMU as a guest's base disk.

    A base image comes from outside (a download, a file someone gave you). Its header can
    name other files that QEMU would open as part of the guest's disk (and that libvirt
    would chown to the QEMU user): a backing file (`qemu-img create -b /etc/shadow`) or a
    qcow2 external data file. So only qcow2 and raw are accepted, with neither; the format
    is the one qemu-img probed from the bytes, never the file's name.
    """
    if info.format not in SAFE_BASE_FORMATS:
        raise ImageError(
            f"{info.path}: refused: its format is {info.format!r}; base images must be qcow2 or raw"
        )
    if info.backing_file is not None:
        raise ImageError(
            f"{info.path}: refused: its header names a backing file ({info.backing_file}), "
            "which QEMU would open from this host as part of the guest's disk; flatten it "
            "first (`qemu-img convert -O qcow2 IMAGE NEW`)"
        )
    if info.data_file is not None:
        raise ImageError(
            f"{info.path}: refused: its header names an external data file "
            f"({info.data_file}), which QEMU would open from this host; flatten it first "
            "(`qemu-img convert -O qcow2 IMAGE NEW`)"
        )
