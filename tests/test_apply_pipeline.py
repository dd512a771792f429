"""`up` pipelines its VMs: a worker prepares a VM (disks, seed, definition, start) and is free
again while the VM boots, so with one worker the second VM is created while the first is
still being awaited; per-host limits count preparation only."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import libvirt
from tests.support.testhost import TestDriverHost, fleet_file

from vmfleet import Fleet
from vmfleet.drivers import sshkeys
from vmfleet.drivers.libvirt import LibvirtHost, VolumeInfo
from vmfleet.engine import apply
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store


def test_readiness_is_awaited_outside_the_worker_slots(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    pair = sshkeys.generate_ed25519()
    key.write_text(pair.private)
    key.chmod(0o600)
    Path(str(key) + ".pub").write_text(pair.public + "\n")
    path = tmp_path / "fleet.yaml"
    # Nothing listens behind the forwarded port: each VM waits its full 3 s, then fails.
    path.write_text(f"""
fleet: pipe
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
ssh: {{private_key: {key}}}
vms:
  web: {{replicas: 2, memory: 64MiB, disk: 16MiB, ready: {{wait_for: "port:2222", timeout: 3s}}}}
""")
    keeper = libvirt.open("test:///default")
    ctx = FleetContext(
        loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s",
        host_factory=TestDriverHost.factory,
    )  # fmt: skip
    seen: list[tuple[float, str, str]] = []
    lock = threading.Lock()

    def progress(vm: str, phase: str, _detail: str) -> None:
        with lock:
            seen.append((time.monotonic(), vm, phase))

    try:
        began = time.monotonic()
        outcomes = apply.up(ctx, apply.make_plan(ctx), progress=progress, workers=1)
        took = time.monotonic() - began
    finally:
        ctx.close()
        keeper.close()
    assert [(o.vm, o.ok) for o in outcomes] == [("web-0", False), ("web-1", False)]
    waiting = {vm: t for t, vm, phase in seen if phase == "ready"}
    failed = {vm: t for t, vm, phase in seen if phase == "failed"}
    assert waiting["web-1"] < failed["web-0"]  # web-1 was made while web-0 was awaited
    assert took < 5.5  # the two 3 s waits overlap (one after another: over 6 s)


class CountingHost(TestDriverHost):
    """The host seam, counting the look-ups of each volume by name."""

    looked: dict[str, int] = {}

    def get_volume(self, pool: str, name: str) -> VolumeInfo | None:
        CountingHost.looked[name] = CountingHost.looked.get(name, 0) + 1
        return super().get_volume(pool, name)

    @classmethod
    def factory(cls, uri: str, name: str) -> LibvirtHost:
        return cls(uri, name=name)


def test_one_up_checks_a_base_volume_once_not_once_per_vm(tmp_path: Path) -> None:
    """Each VM's disk is a clone of the base: a run looks the base up before it changes
    anything (preflight) and when it uploads it, and its VMs use what it found instead of
    asking the host again, one VM after the other, under the base's lock."""
    path = fleet_file(tmp_path, "  web: {replicas: 6}", prefix="memo")
    keeper = libvirt.open("test:///default")
    CountingHost.looked = {}
    try:
        with Fleet.open(path, hosts=CountingHost.factory) as fleet:
            fleet.up().raise_for_failures()
            bases = [n for n in CountingHost.looked if n.startswith("vmf-base.")]
            assert len(bases) == 1
            # preflight; the upload: before and after taking its lock (6 VMs: not 6 more)
            assert CountingHost.looked[bases[0]] == 3
            fleet.down(("web-0", "web-1", "web-2", "web-3")).raise_for_failures()
            fleet.up().raise_for_failures()
            # preflight; the first VM that needs it (the base is there: no upload)
            assert CountingHost.looked[bases[0]] == 3 + 2
            fleet.down(()).raise_for_failures()
    finally:
        keeper.close()
