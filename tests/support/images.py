"""Guest images for end-to-end tests, built from Debian packages and cached.

Two kinds of guest:

* ``debian_image()``: Debian 12 as a cloud-init guest (qcow2, MBR, extlinux): NoCloud seed,
  network-config v2 rendered for systemd-networkd, openssh-server, qemu-guest-agent, python3.
* ``micro_kernel()``, ``micro_initrd()``, ``micro_disk()``: the Debian cloud kernel with a
  busybox initramfs that boots in about two seconds under TCG, takes DHCP on eth0 and answers
  TCP port 22 with an SSH banner; for tests that need many VMs but not what runs inside them.
  The same guest for arm64 and ppc64el (TCG): ``tests.support.images_foreign``.

Every artefact lives under ``$VMFLEET_TEST_CACHE`` (default ``/var/cache/vmfleet-test``) in a
directory named after the hash of its recipe (packages, files written into the guest, and the
source of the functions that build it), so changing the recipe builds a new image. Builds hold
an ``fcntl`` lock: parallel pytest-xdist workers build once, the others wait and reuse.
Building needs root and the host tools that ``scripts/setup-host.sh`` installs; packages come
from the Debian mirror that the host's apt sources name.

``python -m tests.support.images build [debian|debian-plain|micro|micro-boot|all]`` builds
ahead of a test run (``debian-plain``, without cloud-init, is in ``plain_image.py``;
``micro-boot``, the micro guest on a disk that boots it, in ``micro_boot.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "DEBIAN_ROOT_LABEL",
    "MICRO_BANNER_PREFIX",
    "MICRO_CMDLINE",
    "MICRO_READY_LINE",
    "cache_dir",
    "debian_image",
    "debian_mirrors",
    "main",
    "micro_disk",
    "micro_initrd",
    "micro_kernel",
]

CACHE_ENV = "VMFLEET_TEST_CACHE"
DEFAULT_CACHE_DIR = Path("/var/cache/vmfleet-test")
SUITE = "bookworm"
FALLBACK_MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)

# ---------------------------------------------------------------------------- recipes

DEBIAN_DISK_BYTES = 2 << 30
DEBIAN_PARTITION_OFFSET = 1 << 20
DEBIAN_ROOT_LABEL = "vmfroot"
DEBIAN_PACKAGES = (
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "cloud-init",
    "cloud-guest-utils",  # growpart, for cloud-init's growpart module
    "fdisk",  # sfdisk, which growpart uses on MBR disks
    "e2fsprogs",  # resize2fs
    "openssh-server",
    "qemu-guest-agent",
    "sudo",
    "python3",
    "iproute2",
    "netbase",
)
# Keep the image small: no manuals, docs or translations (copyright files stay).
DEBIAN_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
DEBIAN_FILES: Mapping[str, str] = {
    # ds-identify reads datasource_list only when the list is on one line.
    "etc/cloud/cloud.cfg.d/99_vmfleet.cfg": (
        "# vmfleet test image: NoCloud seed only; no ifupdown or netplan in the image,\n"
        "# so network-config (v1 or v2) is rendered for systemd-networkd.\n"
        "datasource_list: [NoCloud, None]\n"
        "manage_etc_hosts: true\n"
        "# Only C.UTF-8 exists without generating locales; cloud-init's default en_US fails.\n"
        "locale: C.UTF-8\n"
        "# RSA host keys take ~15 s to generate under TCG; ed25519 and ecdsa are enough.\n"
        "ssh_genkeytypes: [ed25519, ecdsa]\n"
        "# The image boots with extlinux: no GRUB for grub-dpkg to set up (3 s under TCG).\n"
        "grub_dpkg: {enabled: false}\n"
        "system_info:\n"
        "  network:\n"
        "    renderers: [networkd]\n"
        "    activators: [networkd]\n"
    ),
    "etc/fstab": f"LABEL={DEBIAN_ROOT_LABEL} / ext4 errors=remount-ro 0 1\n",
    "etc/hostname": "debian\n",
    "etc/default/locale": "LANG=C.UTF-8\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "",
    "etc/machine-id": "",
    "boot/extlinux/extlinux.conf": (
        "DEFAULT debian\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL debian\n"
        "  LINUX /boot/vmlinuz-{kernel_version}\n"
        "  INITRD /boot/initrd.img-{kernel_version}\n"
        f"  APPEND root=LABEL={DEBIAN_ROOT_LABEL} ro console=tty0 console=ttyS0,115200n8 quiet\n"
    ),
}
# Generated on first boot, so that every clone has its own.
DEBIAN_REMOVED = ("etc/ssh/ssh_host_*", "var/lib/dbus/machine-id")
DEBIAN_ENABLED_UNITS = ("systemd-networkd.service",)
# Under TCG a guest's one vCPU is the bottleneck of its first boot: these jobs (21 s for
# e2scrub_reap alone) would compete with cloud-init and sshd for it. A test guest needs none.
DEBIAN_MASKED_UNITS = (
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "fstrim.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
)

MICRO_CMDLINE = "console=ttyS0 quiet"
MICRO_READY_LINE = "vmfleet-micro: ready"
MICRO_BANNER_PREFIX = "SSH-2.0-vmfleet-micro"
MICRO_DISK_BYTES = 64 << 20
MICRO_PACKAGES = ("linux-image-cloud-amd64", "busybox-static")
# The cloud kernel builds these as modules; their dependencies are added from modules.dep.
# button and evdev let busybox acpid turn the ACPI power button into a clean poweroff.
MICRO_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "isofs", "button", "evdev")
MICRO_FILES: Mapping[str, tuple[int, str]] = {
    "init": (
        0o755,
        f"""#!/bin/sh
# PID 1 of the vmfleet micro guest: load drivers, take the hostname from a NoCloud seed,
# DHCP on eth0, then hand over to busybox init (which runs the SSH banner server).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
kernel=$(uname -r)
while read -r module; do
    insmod "/lib/modules/$kernel/$module" || echo "vmfleet-micro: cannot load $module"
done </etc/micro-modules
name=""
if ls /sys/block | grep -q '^vd'; then
    seed=$(findfs LABEL=cidata 2>/dev/null)
    if [ -n "$seed" ] && mount -t iso9660 -o ro "$seed" /mnt 2>/dev/null; then
        name=$(sed -n 's/^[[:space:]]*local-hostname:[[:space:]]*//p' /mnt/meta-data \\
            | head -n 1 | tr -cd 'A-Za-z0-9.-')
        umount /mnt
    fi
fi
if [ -n "$name" ]; then
    hostname "$name"
    banner="{MICRO_BANNER_PREFIX}-$name"
else
    hostname vmfleet-micro
    banner="{MICRO_BANNER_PREFIX}"
fi
printf '%s\\r\\n' "$banner" >/etc/ssh-banner
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
    udhcpc -i eth0 -s /etc/udhcpc.script -t 20 -T 1 -b -S
fi
exec /bin/init
""",
    ),
    "etc/inittab": (
        0o644,
        """::respawn:/bin/nc -ll -p 22 -e /bin/ssh-banner
::respawn:/bin/acpid -f
::once:/bin/micro-ready
""",
    ),
    "bin/ssh-banner": (
        0o755,
        """#!/bin/sh
# Run by nc for each connection: greet like an SSH server, then read the client's line.
cat /etc/ssh-banner
read -r -t 5 _line
exit 0
""",
    ),
    "bin/micro-ready": (
        0o755,
        f"""#!/bin/sh
# Announce readiness on the console once the banner server listens.
while ! netstat -ltn | grep -q ':22 '; do
    usleep 20000
done
echo "{MICRO_READY_LINE}"
""",
    ),
    "etc/udhcpc.script": (
        0o755,
        """#!/bin/sh
# udhcpc hook: put the leased address, route and resolver in place.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ;;
bound | renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do
        ip route replace default via "$gateway" dev "$interface"
        break
    done
    : >/etc/resolv.conf
    for server in $dns; do
        echo "nameserver $server" >>/etc/resolv.conf
    done
    ;;
esac
exit 0
""",
    ),
    "etc/acpi/PWRF/00000080": (0o755, "#!/bin/sh\npoweroff\n"),
    "etc/hostname": (0o644, "vmfleet-micro\n"),
}

# ---------------------------------------------------------------------------- public API


def cache_dir() -> Path:
    """Where built images are kept: ``$VMFLEET_TEST_CACHE`` or ``/var/cache/vmfleet-test``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def debian_image() -> Path:
    """A bootable Debian 12 cloud-init guest: qcow2, 2 GiB virtual, zstd-compressed.

    MBR with one ext4 partition labelled ``vmfroot`` (root by label), extlinux with
    ``console=ttyS0``. cloud-init reads only a NoCloud seed (attach it as a virtio or IDE disk:
    the cloud kernel has no AHCI driver) and renders network-config for systemd-networkd;
    growpart and resizefs grow the root filesystem to the disk. SSH host keys and the
    machine id are generated on first boot. Use it as the backing file of an overlay.
    """
    return _debian_artifacts() / "debian-12.qcow2"


def micro_kernel() -> Path:
    """The Debian cloud kernel (bzImage) for direct kernel boot of micro guests."""
    return _micro_artifacts() / "vmlinuz"


def micro_initrd() -> Path:
    """A busybox initramfs for :func:`micro_kernel`; boot it with :data:`MICRO_CMDLINE`.

    It prints ``vmfleet-micro: ready`` on ttyS0 once up, takes DHCP on eth0 and answers every
    connection to TCP port 22 with ``SSH-2.0-vmfleet-micro`` (then ``-<hostname>`` when a
    NoCloud seed with ``local-hostname`` is attached as a virtio disk). The ACPI power button
    powers it off.
    """
    return _micro_artifacts() / "initrd.img"


def micro_disk() -> Path:
    """A 64 MiB qcow2 with an empty ext4 filesystem, the base disk micro guests clone."""
    return _micro_artifacts() / "disk.qcow2"


def debian_mirrors(sources_dir: Path = Path("/etc/apt")) -> list[str]:
    """One-line ``deb URI SUITE main`` entries for bookworm from the host's apt sources.

    Reads ``sources.list`` and ``sources.list.d/*.list`` (one-line format) and
    ``sources.list.d/*.sources`` (deb822), keeping only the ``deb`` entries for bookworm,
    bookworm-updates and bookworm-security with the ``main`` component. Falls back to
    deb.debian.org when the host names none.
    """
    suites = {SUITE, f"{SUITE}-updates", f"{SUITE}-security"}
    entries: list[tuple[str, str]] = []
    one_line = [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*.list"))]
    for path in one_line:
        if path.is_file():
            entries += _one_line_entries(path.read_text())
    for path in sorted(sources_dir.glob("sources.list.d/*.sources")):
        entries += _deb822_entries(path.read_text())
    mirrors: list[str] = []
    for uri, suite in entries:
        line = f"deb {uri} {suite} main"
        if suite in suites and line not in mirrors:
            mirrors.append(line)
    return mirrors or list(FALLBACK_MIRRORS)


# ---------------------------------------------------------------------------- apt sources


def _one_line_entries(text: str) -> list[tuple[str, str]]:
    entries = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if not fields or fields[0] != "deb":
            continue
        fields = fields[1:]
        if fields and fields[0].startswith("["):  # options such as [signed-by=...]
            while fields and not fields[0].endswith("]"):
                fields = fields[1:]
            fields = fields[1:]
        if len(fields) >= 3 and "main" in fields[2:]:
            entries.append((fields[0], fields[1]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, str]]:
    entries = []
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in paragraph.splitlines():
            if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "main" not in fields.get("components", "").split():
            continue
        for uri in fields.get("uris", "").split():
            entries += [(uri, suite) for suite in fields.get("suites", "").split()]
    return entries


# ---------------------------------------------------------------------------- cache


def _recipe_key(recipe: Mapping[str, object], builders: Sequence[Callable[..., object]]) -> str:
    text = json.dumps(recipe, sort_keys=True) + "".join(inspect.getsource(b) for b in builders)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # Python opens files close-on-exec, so build subprocesses never inherit the lock.
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(name: str, key: str, build: Callable[[Path, Path], None]) -> Path:
    """The directory ``<cache>/<name>-<key>``, built by ``build(out, scratch)`` if absent.

    The build writes into a temporary directory that is renamed into place only when it
    succeeded, so a crashed build leaves nothing that looks finished.
    """
    root = cache_dir()
    final = root / f"{name}-{key}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach the files
    with _exclusive(root / f".{name}-{key}.lock"):
        if final.is_dir():
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{name}-{key}.", dir=root))
        try:
            out, scratch = work / "out", work / "scratch"
            out.mkdir()
            scratch.mkdir()
            build(out, scratch)
            for path in out.iterdir():
                path.chmod(0o644)
            out.chmod(0o755)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------- helpers


def _run(command: Sequence[str | Path], *, log: Path | None = None) -> str:
    """Run a build command; on failure raise with the end of its output."""
    result = subprocess.run(
        [str(part) for part in command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if log is not None:
        log.write_text(result.stdout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed with exit code {result.returncode}:\n{result.stdout[-4000:]}"
        )
    return result.stdout


def _mmdebstrap(
    target: Path, *, variant: str, packages: Sequence[str], options: Sequence[str] = ()
) -> None:
    _run(
        [
            "mmdebstrap",
            "--mode=root",
            f"--variant={variant}",
            "--include=" + ",".join(packages),
            *options,
            SUITE,
            target,
            *debian_mirrors(),
        ],
        log=target.parent / f"mmdebstrap-{target.name}.log",
    )


def _kernel_version(tree: Path) -> str:
    versions = [p.name for p in (tree / "lib/modules").iterdir()]
    if len(versions) != 1:
        raise RuntimeError(f"expected one kernel in {tree}, found {versions}")
    return versions[0]


# ---------------------------------------------------------------------------- Debian image


def _debian_artifacts() -> Path:
    recipe = {
        "suite": SUITE,
        "packages": DEBIAN_PACKAGES,
        "dpkg_options": DEBIAN_DPKG_OPTIONS,
        "files": DEBIAN_FILES,
        "removed": DEBIAN_REMOVED,
        "units": DEBIAN_ENABLED_UNITS,
        "masked": DEBIAN_MASKED_UNITS,
        "disk_bytes": DEBIAN_DISK_BYTES,
        "partition_offset": DEBIAN_PARTITION_OFFSET,
    }
    builders = (_build_debian, _configure_debian_tree, _make_bootable_disk, _mmdebstrap)
    return _cached("debian", _recipe_key(recipe, builders), _build_debian)


def _build_debian(out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    _mmdebstrap(
        tree,
        variant="minbase",
        packages=DEBIAN_PACKAGES,
        options=[f"--dpkgopt={option}" for option in DEBIAN_DPKG_OPTIONS],
    )
    _configure_debian_tree(tree)
    raw = scratch / "disk.raw"
    _make_bootable_disk(tree, raw, scratch / "mnt")
    shutil.rmtree(tree)
    _run(
        [
            "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2",
            "-o", "compression_type=zstd", raw, out / "debian-12.qcow2",
        ]
    )  # fmt: skip


def _configure_debian_tree(tree: Path) -> None:
    kernel_version = _kernel_version(tree)
    for relative, content in DEBIAN_FILES.items():
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # resolv.conf and friends may be symlinks
        path.write_text(content.replace("{kernel_version}", kernel_version))
    for pattern in DEBIAN_REMOVED:
        for path in tree.glob(pattern):
            path.unlink()
    for unit in DEBIAN_ENABLED_UNITS:
        _run(["chroot", tree, "systemctl", "enable", unit])
    for unit in DEBIAN_MASKED_UNITS:
        _run(["chroot", tree, "systemctl", "mask", unit])


def _make_bootable_disk(
    tree: Path,
    raw: Path,
    mountpoint: Path,
    *,
    disk_bytes: int = DEBIAN_DISK_BYTES,
    label: str = DEBIAN_ROOT_LABEL,
) -> None:
    """MBR disk with one bootable ext4 partition filled from ``tree``, extlinux installed
    (``tree`` brings ``boot/extlinux/extlinux.conf`` and what it names).

    No partition devices are needed: mke2fs writes the filesystem at the partition's offset
    inside the file, and only extlinux needs it mounted (a loop device with an offset).
    """
    with raw.open("wb") as handle:
        handle.truncate(disk_bytes)
    start_sector = DEBIAN_PARTITION_OFFSET // 512
    table = f"label: dos\nstart={start_sector}, type=83, bootable\n"
    subprocess.run(["sfdisk", "--quiet", str(raw)], input=table, text=True, check=True)
    fs_kib = (disk_bytes - DEBIAN_PARTITION_OFFSET) // 1024
    # syslinux reads ext4 but not the 64bit feature; a 2 GiB filesystem does not need it.
    # 4 KiB blocks: syslinux 6.04 fails to load the kernel ("I/O error") from the 1 KiB
    # blocks mke2fs picks for small filesystems (such as the 32 MiB micro boot disk).
    _run(
        [
            "mke2fs", "-q", "-F", "-t", "ext4", "-O", "^64bit", "-b", "4096", "-L", label,
            "-E", f"offset={DEBIAN_PARTITION_OFFSET}", "-d", tree, raw, f"{fs_kib}k",
        ]
    )  # fmt: skip
    mountpoint.mkdir()
    _run(["mount", "-o", f"loop,offset={DEBIAN_PARTITION_OFFSET}", raw, mountpoint])
    try:
        _run(["extlinux", "--install", mountpoint / "boot/extlinux"])
    finally:
        _run(["umount", mountpoint])
    mbr = Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()
    with raw.open("r+b") as handle:
        handle.write(mbr[:440])  # boot code only; the partition table follows at 446


# ---------------------------------------------------------------------------- micro guest


def _micro_artifacts() -> Path:
    recipe = {
        "suite": SUITE,
        "packages": MICRO_PACKAGES,
        "modules": MICRO_MODULES,
        "files": MICRO_FILES,
        "disk_bytes": MICRO_DISK_BYTES,
    }
    builders = (_build_micro, _module_load_order, _write_initramfs, _mmdebstrap)
    return _cached("micro", _recipe_key(recipe, builders), _build_micro)


def _build_micro(out: Path, scratch: Path) -> None:
    tree = scratch / "tree"
    # extract: unpack just these packages, no maintainer scripts, no essential set.
    _mmdebstrap(tree, variant="extract", packages=MICRO_PACKAGES)
    kernel_version = _kernel_version(tree)
    shutil.copyfile(tree / f"boot/vmlinuz-{kernel_version}", out / "vmlinuz")
    _run(["depmod", "-b", tree, kernel_version])  # maintainer scripts did not run
    modules_dir = tree / "lib/modules" / kernel_version
    modules = _module_load_order(modules_dir, MICRO_MODULES)
    _write_initramfs(tree, modules_dir, modules, scratch / "initramfs", out / "initrd.img")
    raw = scratch / "micro-disk.raw"
    disk_kib = MICRO_DISK_BYTES // 1024
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "vmfmicro", raw, f"{disk_kib}k"])
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out / "disk.qcow2"])


def _module_load_order(modules_dir: Path, names: Sequence[str]) -> list[str]:
    """Module paths (relative to ``modules_dir``) in an order insmod accepts.

    modules.dep lists every module's dependencies, transitive ones included, nearest first;
    so each module's dependencies load in reverse listed order, before the module itself.
    """
    dependencies: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        dependencies[module] = needs.split()
        by_name[Path(module).name.removesuffix(".ko").replace("-", "_")] = module
    order: list[str] = []
    for name in names:
        if name not in by_name:
            raise RuntimeError(f"module {name} not in {modules_dir}/modules.dep (built in?)")
        module = by_name[name]
        for needed in [*reversed(dependencies[module]), module]:
            if needed not in order:
                order.append(needed)
    return order


def _write_initramfs(
    tree: Path, modules_dir: Path, modules: Sequence[str], staging: Path, initrd: Path
) -> None:
    kernel_version = modules_dir.name
    for directory in ("bin", "dev", "etc", "mnt", "proc", "sys", "tmp", "run", "var/log"):
        (staging / directory).mkdir(parents=True, exist_ok=True)
    busybox = staging / "bin/busybox"
    shutil.copy2(tree / "bin/busybox", busybox)
    for applet in _run([busybox, "--list"]).split():
        if not (staging / "bin" / applet).exists():
            (staging / "bin" / applet).symlink_to("busybox")
    for relative, (mode, content) in MICRO_FILES.items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)
    for module in modules:
        target = staging / "lib/modules" / kernel_version / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(modules_dir / module, target)
    (staging / "etc/micro-modules").write_text("".join(f"{m}\n" for m in modules))
    # The kernel opens /dev/console for init before anything mounts devtmpfs.
    os.mknod(staging / "dev/console", 0o600 | 0o020000, os.makedev(5, 1))
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    archive = _cpio(staging, names)
    initrd.write_bytes(gzip.compress(archive, compresslevel=6))


def _cpio(staging: Path, names: Sequence[str]) -> bytes:
    result = subprocess.run(
        ["cpio", "--create", "--format=newc", "--owner=0:0", "--quiet"],
        cwd=staging,
        input=("\n".join(names) + "\n").encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cpio failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


# ---------------------------------------------------------------------------- CLI


def _micro_boot_disk() -> Path:
    from tests.support.micro_boot import micro_boot_disk  # it builds on this module

    return micro_boot_disk()


def _debian_plain() -> list[Path]:
    from tests.support.plain_image import debian_plain_image  # it builds on this module

    return [debian_plain_image()]


IMAGES: Mapping[str, Callable[[], list[Path]]] = {
    "debian": lambda: [debian_image()],
    "debian-plain": _debian_plain,
    "micro": lambda: [micro_kernel(), micro_initrd(), micro_disk()],
    "micro-boot": lambda: [_micro_boot_disk()],
}


def main(argv: Sequence[str] | None = None) -> int:
    """``build [debian|debian-plain|micro|micro-boot|all]``: build (or find cached) images,
    print paths and times."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.images")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build test guest images into the cache")
    build.add_argument("which", nargs="?", default="all", choices=[*IMAGES, "all"])
    args = parser.parse_args(argv)
    names = list(IMAGES) if args.which == "all" else [args.which]
    print(f"cache: {cache_dir()}")
    for name in names:
        started = time.monotonic()
        paths = IMAGES[name]()
        elapsed = time.monotonic() - started
        for path in paths:
            print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        print(f"{name}: ready in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
