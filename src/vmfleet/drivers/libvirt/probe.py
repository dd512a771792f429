"""The KVM boot probe: boot a tiny x86-64 payload in a transient domain, watch its console.

The payload's bytes are listed as assembly in `probe_payload.S` beside this module.
"""

from __future__ import annotations

import struct
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt

from vmfleet.drivers import names
from vmfleet.drivers.libvirt.console import ConsoleReader
from vmfleet.drivers.libvirt.snapshots import _Snapshots
from vmfleet.drivers.libvirt.types import BootProbe, MiB
from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import HostUnreachableError, HypervisorError

PROBE_DONE_MARKER = "VMFLEET-PROBE-OK"
PROBE_COPY_ROUNDS = 4


class _Probe(_Snapshots):
    """Boots the probe payload in a transient domain (`boot_probe`)."""

    def boot_probe(
        self, *, domain_type: str, timeout: float = 8.0, pool: str = "default"
    ) -> BootProbe:
        """Boot the probe payload in a transient 64 MiB diskless x86_64 domain of `domain_type`.

        The payload (`probe_payload()`, a 16 KiB multiboot image) is uploaded to `pool` as a
        volume of ours and booted as the domain's `<kernel>`: it enters 64-bit long mode,
        copies memory (what a kernel's first second looks like) and prints PROBE_DONE_MARKER
        on the serial console, which is read through a libvirt console stream (so it works
        on remote hosts). `booted` is True when the marker arrived within `timeout` s.

        The domain (named `vmf-probe.<type>.<random>`, with our metadata, auto-destroyed if
        we lose the connection) and the volume are always removed before returning. A domain
        libvirt refuses to start (say, /dev/kvm not accessible) is a "no" with libvirt's
        message in `error`; a pool or connection failure raises.
        """
        token = uuid.uuid4().hex[:8]
        name = names.probe(domain_type=domain_type, token=token)
        volume = f"{name}.kernel"
        with tempfile.TemporaryDirectory(prefix="vmf-probe-") as scratch:
            payload = Path(scratch) / "payload.bin"
            payload.write_bytes(probe_payload())
            kernel = self.upload_volume(pool, volume, payload, format="raw")
        try:
            return self._boot_probe(
                name=name, domain_type=domain_type, kernel=kernel.path, timeout=timeout
            )
        finally:
            self.delete_volume(pool, volume)

    def _boot_probe(self, *, name: str, domain_type: str, kernel: str, timeout: float) -> BootProbe:
        conn = self._connection()
        xml = _probe_domain_xml(name=name, domain_type=domain_type, kernel=kernel)
        started = time.monotonic()
        try:
            with self._call(f"start {domain_type} probe domain", vm=name):
                dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except HostUnreachableError:
            raise
        except HypervisorError as err:
            return BootProbe(
                domain_type=domain_type,
                booted=False,
                seconds=time.monotonic() - started,
                console="",
                error=str(err),
            )
        reader = ConsoleReader(conn, dom, marker=PROBE_DONE_MARKER)
        try:
            with self._call("open the probe domain's console", vm=name):
                reader.start()
            booted = reader.found.wait(timeout)
            seconds = time.monotonic() - started
        finally:
            self._destroy_transient(dom, name=name)
            reader.stop()
        return BootProbe(
            domain_type=domain_type, booted=booted, seconds=seconds, console=reader.text()
        )

    def _destroy_transient(self, dom: Any, *, name: str) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise self._error(err, doing="destroy probe domain", vm=name) from err


def _probe_domain_xml(*, name: str, domain_type: str, kernel: str) -> str:
    owner = OwnerMetadata(
        fleet="vmfleet-probe", vm=name, template="boot-probe", index=None, spec_hash="-"
    )
    # useserial: SeaBIOS prints on the serial console too, which helps read a failed probe.
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <metadata>{owner.to_xml()}</metadata>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{kernel}</kernel>
    <bios useserial='yes'/>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


# The probe payload: x86 machine code in a multiboot image, which QEMU boots as a <kernel>
# (SeaBIOS, then QEMU's multiboot loader hands over in 32-bit protected mode, paging off).
_LOAD = 0x100000  # where the image is loaded (1 MiB); it is mapped 1:1 below
_ENTRY = 0x20  # the code follows the 32-byte multiboot header
_DATA = 0x800  # messages and the GDT
_PML4, _PDPT, _PD = 0x1000, 0x2000, 0x3000  # page tables: 1 GiB identity map, 2 MiB pages
_IMAGE_SIZE = 0x4000
_COPY_SRC, _COPY_DST, _COPY_BYTES = 16 * MiB, 32 * MiB, 16 * MiB  # needs 48 MiB of RAM


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _print_code(address: int) -> bytes:
    """Send the NUL-terminated string at `address` to COM1; the same bytes in 32/64-bit mode.

    mov esi, address / next: lodsb / test al, al / jz +7 / mov dx, 0x3f8 / out dx, al / jmp next
    """
    return b"\xbe" + _u32(address) + b"\xac\x84\xc0\x74\x07\x66\xba\xf8\x03\xee\xeb\xf4"


def _copy_code(*, src: int, dst: int) -> bytes:
    """mov esi, src / mov edi, dst / mov ecx, qwords / rep movsq (direction set by caller)."""
    qwords = _COPY_BYTES // 8
    return b"\xbe" + _u32(src) + b"\xbf" + _u32(dst) + b"\xb9" + _u32(qwords) + b"\xf3\x48\xa5"


def probe_payload(*, rounds: int = PROBE_COPY_ROUNDS) -> bytes:
    """The boot probe's 16 KiB multiboot image (x86-64 code, hand-assembled, annotated).

    It prints `VMFLEET-PROBE-32` on COM1, enables PAE paging and long mode, prints
    `VMFLEET-PROBE-64`, copies 16 MiB forward and backward `rounds` times, prints
    PROBE_DONE_MARKER and halts. The copies matter: on a host whose nested KVM is broken,
    firmware and mode switches run fine but memory-heavy code crawls (a Linux kernel there
    needed ~2 minutes to print its first line, against < 1 s under TCG).
    """
    image = bytearray(_IMAGE_SIZE)
    msg32, msg64, msg_ok, gdt, gdtr = (_DATA + offset for offset in (0, 0x20, 0x40, 0x80, 0xA0))
    magic, flags = 0x1BADB002, 0x00010000  # flag 16: load addresses are in the header (no ELF)
    image[0:32] = struct.pack(
        "<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF,
        _LOAD, _LOAD, _LOAD + _IMAGE_SIZE, 0, _LOAD + _ENTRY,
    )  # fmt: skip
    code = bytearray(_print_code(_LOAD + msg32))
    code += b"\xb8" + _u32(_LOAD + _PML4) + b"\x0f\x22\xd8"  # mov eax, pml4 / mov cr3, eax
    code += b"\x0f\x20\xe0\x83\xc8\x20\x0f\x22\xe0"  # cr4 |= PAE
    code += b"\xb9\x80\x00\x00\xc0\x0f\x32"  # mov ecx, EFER / rdmsr
    code += b"\x0d\x00\x01\x00\x00\x0f\x30"  # or eax, LME / wrmsr
    code += b"\x0f\x01\x15" + _u32(_LOAD + gdtr)  # lgdt [gdtr]
    code += b"\x0f\x20\xc0\x0d\x00\x00\x00\x80\x0f\x22\xc0"  # cr0 |= PG: long mode
    after_jump = _ENTRY + len(code) + 7
    code += b"\xea" + _u32(_LOAD + after_jump) + b"\x08\x00"  # jmp far 0x08:after_jump
    code += _print_code(_LOAD + msg64)  # now in 64-bit mode
    code += b"\xbb" + _u32(rounds)  # mov ebx, rounds
    loop = len(code)
    code += b"\xfc" + _copy_code(src=_COPY_SRC, dst=_COPY_DST)  # cld / copy forward
    last = _COPY_BYTES - 8
    code += b"\xfd" + _copy_code(src=_COPY_SRC + last, dst=_COPY_DST + last)  # std / backward
    code += b"\xfc\xff\xcb"  # cld / dec ebx
    code += b"\x0f\x85" + struct.pack("<i", loop - (len(code) + 6))  # jnz loop
    code += _print_code(_LOAD + msg_ok)
    code += b"\xfa\xf4\xeb\xfd"  # cli / hlt / jmp back to hlt
    if _ENTRY + len(code) > _DATA:
        raise AssertionError("probe code overlaps its data")
    image[_ENTRY : _ENTRY + len(code)] = code
    for offset, text in ((msg32, "VMFLEET-PROBE-32\n"), (msg64, "VMFLEET-PROBE-64\n"),
                         (msg_ok, PROBE_DONE_MARKER + "\n")):  # fmt: skip
        image[offset : offset + len(text)] = text.encode()
    # GDT: null descriptor, then a 64-bit ring-0 code segment (selector 0x08); GDTR points to it.
    image[gdt : gdt + 16] = struct.pack("<QQ", 0, 0x00AF9A000000FFFF)
    image[gdtr : gdtr + 6] = struct.pack("<HI", 15, _LOAD + gdt)
    image[_PML4 : _PML4 + 8] = struct.pack("<Q", (_LOAD + _PDPT) | 0x3)  # present, writable
    image[_PDPT : _PDPT + 8] = struct.pack("<Q", (_LOAD + _PD) | 0x3)
    for index in range(512):  # 512 x 2 MiB pages (present, writable, page-size)
        image[_PD + 8 * index : _PD + 8 * index + 8] = struct.pack("<Q", (index << 21) | 0x83)
    return bytes(image)
