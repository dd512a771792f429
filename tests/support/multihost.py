"""Several libvirt "hosts" on one machine, for end-to-end tests and the demo.

Each `Daemon` is a libvirtd (with its own virtlogd) in its own mount namespace, started by
`scripts/multihost.sh`: private /run/libvirt, /var/lib/libvirt (with a `default` pool),
/etc/libvirt (its own host UUID) and logs; KVM hidden, so guests run under TCG. `daemons()`
starts a set and always removes them (their domains included) afterwards; `fleet_yaml()`
writes a fleet of micro guests over a set.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e_support import micro_fleet

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "multihost.sh"
# Where multihost.sh keeps each daemon's files (a folder per name).
BASE = Path(os.environ.get("VMFLEET_MULTIHOST_DIR", "/var/tmp/vmfleet-multihost"))


def _run(action: str, name: str, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), action, name],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"multihost.sh {action} {name}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Daemon:
    """One extra libvirt host; `uri` reaches it through its private socket."""

    name: str
    uri: str

    def stop(self) -> None:
        """Stop its libvirtd (the host goes down; its guests keep running)."""
        _run("stop", self.name)

    def start(self) -> None:
        """Start its libvirtd again (it finds its guests where they were)."""
        _run("start", self.name)

    def remove(self) -> None:
        """Destroy its domains, stop its daemons and delete its files."""
        _run("remove", self.name)

    def serial_log(self, vm: str) -> str:
        """What a guest of this host wrote to its serial console so far ("" before any)."""
        path = BASE / self.name / "log" / "qemu" / f"{vm}-serial.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start(name: str, *, hide: Sequence[str] = ()) -> Daemon:
    """Start daemon `name`; `hide` (at its first start) are emulators its libvirt must not
    see, such as ``/usr/bin/qemu-system-aarch64`` for a host that offers no aarch64."""
    return Daemon(name, _run("start", name, {"VMFLEET_MULTIHOST_HIDE": " ".join(hide)}))


@contextmanager
def daemons(*names: str, hide: Mapping[str, Sequence[str]] | None = None) -> Iterator[list[Daemon]]:
    """Start one daemon per name (hiding `hide[name]`'s emulators from it); remove them all on
    the way out, whatever happened."""
    started: list[Daemon] = []
    try:
        for name in names:
            _run("remove", name)  # leftovers of an interrupted run
            started.append(start(name, hide=(hide or {}).get(name, ())))
        yield started
    finally:
        for daemon in started:
            daemon.remove()


def fleet_yaml(
    fleet: str,
    hosts: Sequence[Daemon],
    vms: str,
    *,
    zones: Mapping[str, str] | None = None,
    domain_type: str = "qemu",
    timeout: str = "120s",
) -> str:
    """A fleet of micro guests over `hosts` (labelled `zone: zones[name]` when given), ready
    once running; `vms` is the lines of the `vms:` block."""

    def host(d: Daemon) -> str:
        labels = f", labels: {{zone: {zones[d.name]}}}" if zones else ""
        return f'  {d.name}: {{uri: "{d.uri}", domain_type: {domain_type}{labels}}}'

    return micro_fleet(
        fleet,
        hosts="\n".join(host(d) for d in hosts),
        vms=vms,
        ready="running",
        timeout=timeout,
    )
