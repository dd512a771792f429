"""The message for VMs that cannot be placed, short at any fleet size.

VMs that fail for the same reasons share one block (976 replicas that fit nowhere are one
block, not 976), and an unreachable host's error is said once, with what to check, instead
of once per VM in every block.
"""

from __future__ import annotations

from collections.abc import Mapping

UNREACHABLE_HINT = (
    "is libvirtd (or virtqemud) running there, is the URI right, and may this user use it "
    "(the libvirt group, or polkit)?"
)
NAMES_SHOWN = 6


def report(failures: Mapping[str, tuple[str, ...]], unreachable: Mapping[str, str]) -> str:
    """`nothing was changed: N VMs cannot be placed:` and the grouped blocks (see module)."""
    lines: list[str] = []
    for host, why in sorted(unreachable.items()):
        why = why.removeprefix(f"host {host}: ")  # the error names the host already
        lines.append(f"  host {host} is unreachable: {why}".rstrip(": "))
        lines.append(f"    hint: {UNREACHABLE_HINT}")
    groups: dict[tuple[str, ...], list[str]] = {}
    for vm, reasons in failures.items():
        key = tuple(_short(reason, unreachable) for reason in reasons)
        groups.setdefault(key, []).append(vm)
    for reasons, vms in groups.items():
        lines.append(f"  {names(vms)}:")
        lines += [f"    - {r}" for r in reasons]
    count = len(failures)
    return f"nothing was changed: {count} VM{'s' if count != 1 else ''} cannot be placed:\n" + (
        "\n".join(lines)
    )


def names(vms: list[str]) -> str:
    """`a, b, c` — or for many, the first few and how many in all."""
    if len(vms) <= NAMES_SHOWN:
        return ", ".join(vms)
    return f"{', '.join(vms[: NAMES_SHOWN - 1])}, … {vms[-1]} ({len(vms)} VMs)"


def _short(reason: str, unreachable: Mapping[str, str]) -> str:
    for host, why in unreachable.items():
        if reason == f"{host}: unreachable: {why}".rstrip(": "):
            return f"{host}: unreachable (above)"
    return reason
