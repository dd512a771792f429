"""An image's `prepare:` recipe: convert, extend and set up a base image once, before use.

`format` is what the prepared file is (qcow2 or raw); `size` grows the disk, its last
partition and that partition's filesystem; `setup` makes an image without cloud-init usable
by vmfleet: the fleet's login key for a user (created when missing), a hostname, SSH host
keys made at first boot. The engine (`engine/prepare.py`) runs it with qemu-img and the
libguestfs tools and caches the result by content hash.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from vmfleet.spec.units import TIB, format_size
from vmfleet.spec.values import DiskSize, LoginUser, Name

MAX_PREPARED = 64 * TIB
"""Largest size `prepare` grows an image to: far above any test image, it catches a typo
(`10000T`) before qemu-img tries to make it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


class ImageSetup(_Model):
    """What an image without cloud-init gets written into it.

    `user` is the login user that receives the fleet's key (created when the image lacks
    it; default: the image's `user`, else `ssh.user`); `hostname` is written to
    /etc/hostname (every VM of the image shares it: there is no per-VM data without
    cloud-init)."""

    user: LoginUser | None = None
    hostname: Name | None = None


class ImagePrepare(_Model):
    """Convert (`format`), extend (`size`), set up (`setup`): all optional, in that order."""

    format: Literal["qcow2", "raw"] = "qcow2"
    size: DiskSize | None = None
    setup: ImageSetup | None = None

    @field_validator("size")
    @classmethod
    def _bounded(cls, size: int | None) -> int | None:
        if size is not None and size > MAX_PREPARED:
            raise ValueError(
                f"{format_size(size)} is larger than {format_size(MAX_PREPARED)}, "
                "the largest size prepare grows an image to"
            )
        return size
