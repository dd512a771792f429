"""The libguestfs tools through the command-runner seam: read a disk's partitions, grow its
last partition and filesystem (virt-resize), write users, keys and files into it
(virt-customize).

Each tool boots libguestfs's small appliance VM. It runs with the `direct` backend (QEMU
started by the tool itself, no libvirt session needed) and, unless the caller knows KVM
works here, under TCG (`force_tcg`): with a broken KVM (nested, or none) the appliance would
hang or fail to start. Every failure is an `ImageError` naming the image and carrying the
tool's own last words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vmfleet.drivers.commands import CommandError, CommandRunner, SubprocessRunner
from vmfleet.errors import ImageError

StrPath = str | os.PathLike[str]

DEFAULT_TIMEOUT = 3600.0  # copying a large disk through a TCG appliance takes minutes

_PART_RE = re.compile(r"part_num:\s*(\d+)\s+part_start:\s*(\d+)")

# Units the guest's systemd runs before sshd: the SSH host keys an image was built with (or
# none, when its builder removed them for cloud-init to make) are replaced per VM.
HOST_KEYS_UNIT = "vmfleet-ssh-host-keys.service"
HOST_KEYS_UNIT_TEXT = """[Unit]
Description=SSH host keys made on first boot (vmfleet image preparation)
Before=ssh.service sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a disk as libguestfs names it (`/dev/sda2`), with its start in bytes."""

    device: str
    number: int
    start: int


class GuestTools:
    """guestfish, virt-resize and virt-customize run through a `CommandRunner`."""

    def __init__(
        self,
        *,
        runner: CommandRunner | None = None,
        tcg: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._runner: CommandRunner = runner if runner is not None else SubprocessRunner()
        self._env = {"LIBGUESTFS_BACKEND": "direct"}
        if tcg:
            self._env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
        self._timeout = timeout

    def partitions(self, path: StrPath, *, format: str) -> list[Partition]:
        """The partitions of the disk image's table, in the order they lie on the disk.

        Raises ImageError when the disk has no partition table libguestfs reads."""
        name = os.fspath(path)
        argv = ["guestfish", "--ro", f"--format={format}", "-a", name, "run", ":"]
        argv += ["part-list", "/dev/sda"]
        out = self._run(argv, path=name, doing="cannot read the partition table")
        found = [
            Partition(device=f"/dev/sda{num}", number=int(num), start=int(start))
            for num, start in _PART_RE.findall(out)
        ]
        return sorted(found, key=lambda part: part.start)

    def expand(
        self,
        src: StrPath,
        dest: StrPath,
        *,
        partition: str,
        src_format: str,
        dest_format: str,
    ) -> None:
        """Copy `src` into the (bigger, already created) `dest`, growing `partition` and its
        filesystem into the new space (`virt-resize --expand`)."""
        source, target = os.fspath(src), os.fspath(dest)
        argv = ["virt-resize", "--quiet", f"--format={src_format}"]
        argv += [f"--output-format={dest_format}", "--expand", partition, source, target]
        self._run(argv, path=source, doing=f"cannot grow {partition} into {target}")

    def customize(self, path: StrPath, *, format: str, operations: Sequence[str]) -> None:
        """Apply virt-customize `operations` (its own options, in order) to the image, with
        no network in the appliance."""
        name = os.fspath(path)
        argv = ["virt-customize", "--quiet", f"--format={format}", "-a", name, "--no-network"]
        self._run([*argv, *operations], path=name, doing="cannot set up the image")

    def _run(self, argv: list[str], *, path: str, doing: str) -> str:
        try:
            result = self._runner.run(argv, timeout=self._timeout, env=self._env)
        except CommandError as err:
            raise ImageError(f"{path}: {doing}: {err}") from err
        return result.stdout_text()


def setup_operations(*, user: str, public_key: str, hostname: str | None) -> list[str]:
    """virt-customize options that make an image without cloud-init one vmfleet logs in to:
    `user` (created with a home and no password when missing; passwordless sudo, as
    cloud-init would give)
    with `public_key` authorized, the hostname, SSH host keys made at first boot (those in
    the image are removed, so no two VMs share one), and an empty machine-id (systemd makes
    a new one at first boot, and with it a DHCP client id of the VM's own)."""
    ops = [] if hostname is None else ["--hostname", hostname]
    ops += [
        "--run-command",
        # `-p '*'`: no password, yet not locked (`!`), which sshd without PAM refuses.
        f"id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' {user}",
        "--ssh-inject",
        f"{user}:string:{public_key}",
        "--mkdir",
        "/etc/sudoers.d",
        "--write",
        f"/etc/sudoers.d/90-vmfleet-{user}:{user} ALL=(ALL) NOPASSWD:ALL\n",
        "--chmod",
        f"0440:/etc/sudoers.d/90-vmfleet-{user}",
        "--write",
        f"/etc/systemd/system/{HOST_KEYS_UNIT}:{HOST_KEYS_UNIT_TEXT}",
        "--run-command",
        f"systemctl enable {HOST_KEYS_UNIT}",
        "--delete",
        "/etc/ssh/ssh_host_*",
        "--truncate",
        "/etc/machine-id",
    ]
    return ops
