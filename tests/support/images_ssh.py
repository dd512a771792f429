"""Micro guests that take real SSH logins and compile C, for farm phases: the micro guest's
initramfs (``images.MICRO_FILES``: DHCP on eth0, hostname from the NoCloud seed,
``vmfleet-micro: ready`` on the console) with Debian's ``dropbear-bin`` listening on port 22
instead of the banner, and ``tcc`` with ``libc6-dev`` (crt files, ``libc.so``, headers), all of
the guest's architecture, for amd64 and arm64 (TCG).

At boot ``/bin/micro-ssh-setup`` reads the seed's user-data as vmfleet renders it: the first
user's name (``vmfleet`` by default) and ``ssh_authorized_keys`` become a passwd entry with a
home and ``~/.ssh/authorized_keys``, and ``ssh_keys.ed25519_private`` is converted into
dropbear's host key, so strict host key checking against the fleet's known_hosts passes.
The VM's disk (the micro base disk, ext4) is mounted at ``/data`` for that user: the rest of
the guest is in RAM. The login shell is busybox ``sh``. A separate recipe: the banner-only
micro guests keep their small initramfs and fast boot.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support import images, images_foreign

SSH_PACKAGES = ("busybox-static", "dropbear-bin", "tcc", "libc6-dev")
# The programs the guest gets besides busybox; their shared libraries (ELF NEEDED entries,
# read with binutils' readelf, which reads every architecture) and the dynamic loader follow.
PROGRAMS = ("usr/sbin/dropbear", "usr/bin/dropbearconvert", "usr/bin/tcc")
# What tcc links with and includes: libc6-dev's crt files, `libc.so` (a linker script naming
# libc.so.6, libc_nonshared.a and the loader), the headers; tcc's own runtime folder.
DEV_FILES = ("crt1.o", "crti.o", "crtn.o", "libc.so", "libc_nonshared.a", "tcc")
SETUP_SCRIPT = """#!/bin/sh
# Run by /init with the NoCloud seed mounted: the login user, its keys and the host key
# from vmfleet's user-data (first `users` entry; `ssh_keys.ed25519_private`).
awk -v keys=/tmp/authorized_keys -v hostkey=/tmp/host_ed25519 -v name=/tmp/user '
    function unquote(s) { sub(/^["\\047]/, "", s); sub(/["\\047]$/, "", s); return s }
    block && /^    / { sub(/^    /, ""); print > hostkey; next }
    { block = 0 }
    /^- name: / && user == "" { user = unquote(substr($0, 9)) }
    /^  ssh_authorized_keys:/ { inkeys = 1; next }
    inkeys && /^  - / { print unquote(substr($0, 5)) > keys; next }
    { inkeys = 0 }
    /^  ed25519_private: [|]/ { block = 1 }
    END { print user > name }
' "$1"
user=$(cat /tmp/user)
[ -n "$user" ] || user=vmfleet
echo "root:x:0:0:root:/root:/bin/sh" >/etc/passwd
echo "$user:x:1000:1000:$user:/home/$user:/bin/sh" >>/etc/passwd
printf 'root:x:0:\\n%s:x:1000:\\n' "$user" >/etc/group
echo /bin/sh >/etc/shells
mkdir -p "/home/$user/.ssh" /etc/dropbear /var/run
chmod 1777 /tmp
touch /tmp/authorized_keys
cp /tmp/authorized_keys "/home/$user/.ssh/authorized_keys"
chmod 700 "/home/$user/.ssh"
chmod 600 "/home/$user/.ssh/authorized_keys"
chown -R 1000:1000 "/home/$user"
if [ -s /tmp/host_ed25519 ]; then
    dropbearconvert openssh dropbear /tmp/host_ed25519 \\
        /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>&1 \\
        || echo "vmfleet-micro: cannot convert the host key"
fi
rm -f /tmp/host_ed25519 /tmp/authorized_keys /tmp/user
# The VM's own disk (the micro base: an empty ext4 labelled vmfmicro) at /data, the user's:
# what a phase keeps there is in disk-only snapshots and survives a reboot.
mkdir -p /data
disk=$(findfs LABEL=vmfmicro 2>/dev/null)
if [ -n "$disk" ] && mount -t ext4 "$disk" /data; then
    chown 1000:1000 /data
fi
"""
SSH_FILES: dict[str, tuple[int, str]] = {
    "init": (
        0o755,
        images.MICRO_FILES["init"][1].replace(
            "        umount /mnt\n",
            "        [ -f /mnt/user-data ] && /bin/micro-ssh-setup /mnt/user-data\n"
            "        umount /mnt\n",
        ),
    ),
    "bin/micro-ssh-setup": (0o755, SETUP_SCRIPT),
    # -R: a host key the seed did not give is made on first use (ed25519 is quick).
    "etc/inittab": (
        0o644,
        "::respawn:/usr/sbin/dropbear -F -E -R -s -p 22\n"
        "::respawn:/bin/acpid -f\n"
        "::once:/bin/micro-ready\n",
    ),
}


@dataclass(frozen=True)
class SshMicro(images_foreign.ForeignMicro):
    """One architecture's SSH micro guest: as a foreign micro guest (its `kernel()` and
    `initrd()`), and the GNU triplet naming its library folders."""

    triplet: str = ""

    def _artifacts(self) -> Path:
        recipe = {
            "suite": images.SUITE,
            "arch": self.debian_arch,
            "triplet": self.triplet,
            "packages": self._packages(),
            "modules": images.MICRO_MODULES,
            "files": images.MICRO_FILES,
            "ssh_files": SSH_FILES,
            "programs": PROGRAMS,
            "dev_files": DEV_FILES,
        }
        builders = (
            _build,
            _copy_payload,
            _copy,
            images_foreign.unpack,
            images_foreign.stage,
            images_foreign.pack,
            images._write_initramfs,
            images._mmdebstrap,
        )
        key = images._recipe_key(recipe, builders)
        return images._cached(f"micro-ssh-{self.debian_arch}", key, functools.partial(_build, self))

    def _packages(self) -> tuple[str, ...]:
        return (self.kernel_package, *SSH_PACKAGES)


# no_timer_check: TCG on a loaded machine can otherwise panic ("IO-APIC + timer doesn't work").
AMD64 = SshMicro(
    "amd64", "linux-image-cloud-amd64", "console=ttyS0 quiet no_timer_check", "x86_64-linux-gnu"
)
ARM64 = SshMicro("arm64", "linux-image-cloud-arm64", "console=ttyAMA0", "aarch64-linux-gnu")


def _build(guest: SshMicro, out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    images_foreign.unpack(guest.debian_arch, guest._packages(), tree, out / "vmlinuz")
    staging = images_foreign.stage(tree, scratch)
    (staging / "bin/ssh-banner").unlink()
    for relative, (mode, content) in SSH_FILES.items():
        path = staging / relative
        path.write_text(content)
        path.chmod(mode)
    _copy_payload(tree, staging, guest.triplet)
    images_foreign.pack(staging, out / "initrd.img")


def _copy_payload(tree: Path, staging: Path, triplet: str) -> None:
    """The programs, their libraries, the loader, the C development files and headers."""
    wanted: list[str] = list(PROGRAMS)
    wanted += [f"usr/lib/{triplet}/{name}" for name in DEV_FILES]
    todo = list(PROGRAMS)
    seen: set[str] = set()
    while todo:
        elf = todo.pop()
        if elf in seen:
            continue
        seen.add(elf)
        dynamic = images._run(["readelf", "-d", "-l", tree / elf])
        for line in dynamic.splitlines():
            if "program interpreter:" in line:
                wanted.append(line.split(":", 1)[1].strip(" ]").lstrip("/"))
            elif "(NEEDED)" in line:
                name = line.rsplit("[", 1)[1].rstrip("]")
                found = next(
                    f"{d}/{triplet}/{name}"
                    for d in ("lib", "usr/lib")
                    if (tree / d / triplet / name).exists()
                )
                wanted.append(found)
                todo.append(found)
    wanted.append("usr/include")
    for relative in wanted:
        _copy(tree, staging, relative)


def _copy(tree: Path, staging: Path, relative: str) -> None:
    """`relative` from the tree to the staging folder; a symlink with what it points to."""
    source, target = tree / relative, staging / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        if not target.is_symlink():
            target.symlink_to(source.readlink())
        link = source.readlink()  # an absolute link points into the guest's tree, not ours
        base = Path("/") if link.is_absolute() else Path("/", relative).parent
        _copy(tree, staging, os.path.normpath(base / link).lstrip("/"))
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


if __name__ == "__main__":
    for guest in (AMD64, ARM64):
        print(guest.kernel(), guest.initrd())
