"""Plan and apply agree: after `up` carries out a plan, planning again finds nothing to do.

Random sequences of fleet-file edits (memory, vCPUs, disk growth, replicas up and down,
data disks added and removed, labels, network) run against libvirt's test driver; after
each edit, plan → apply → plan must be empty, and with `--restart` nothing stays pending.
VMFLEET_PROPERTY_EXAMPLES sets how many sequences run (60 by default, ~35 s here; `make fuzz`
runs 200).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.support.testhost import TestDriverHost

from vmfleet.core.plan import Plan
from vmfleet.drivers import names, sshkeys
from vmfleet.drivers.names import volume as volume_name
from vmfleet.engine import apply
from vmfleet.engine.context import FleetContext
from vmfleet.spec.load import load
from vmfleet.state.store import Store

EXAMPLES = int(os.environ.get("VMFLEET_PROPERTY_EXAMPLES", "60"))


@dataclass(frozen=True)
class Edit:
    """One version of the fleet file."""

    replicas: int
    memory_mib: int
    vcpus: int
    disk_mib: int
    data_disks: int
    tier: str
    network: bool
    restart: bool

    def yaml(self, key: Path) -> str:
        disks = ", ".join(["{size: 8MiB}"] * self.data_disks)
        network = "lab" if self.network else "null"
        return textwrap.dedent(
            f"""
            fleet: prop
            hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
            networks: {{lab: {{mode: nat, cidr: 192.168.77.0/24}}}}
            ssh: {{private_key: {key}}}
            vms:
              web:
                replicas: {self.replicas}
                memory: {self.memory_mib}MiB
                vcpus: {self.vcpus}
                disk: {self.disk_mib}MiB
                data_disks: [{disks}]
                labels: {{tier: {self.tier}}}
                network: {network}
                ready: {{wait_for: none}}
            """
        )


edits = st.builds(
    Edit,
    replicas=st.integers(1, 3),
    memory_mib=st.sampled_from([64, 96, 128]),
    vcpus=st.integers(1, 2),
    disk_mib=st.sampled_from([16, 24, 32]),
    data_disks=st.integers(0, 2),
    tier=st.sampled_from(["a", "b"]),
    network=st.booleans(),
    restart=st.booleans(),
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key pair for the seeds (made once, so no ssh-keygen per example)."""
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    pair = sshkeys.generate_ed25519(comment="vmfleet-property-test")
    path.write_text(pair.private)
    path.chmod(0o600)
    Path(str(path) + ".pub").write_text(pair.public + "\n")
    return path


def _apply(path: Path, state: Path, edit: Edit, key: Path) -> tuple[Plan, Plan]:
    path.write_text(edit.yaml(key))
    ctx = FleetContext(
        loaded=load(path), store=Store(state), state_dir=state, host_factory=TestDriverHost.factory
    )
    try:
        plan = apply.make_plan(ctx, prune=True, restart=edit.restart)
        outcomes = apply.up(ctx, plan)
        failed = [(o.vm, o.detail) for o in outcomes if not o.ok]
        assert not failed, failed
        return plan, apply.make_plan(ctx, prune=True, restart=edit.restart)
    finally:
        ctx.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(edits, min_size=1, max_size=4))
# Found by this test: a shrink applied live through the balloon, then the old size again with
# --restart: the plan compared the boot maximum, not what the VM had, and left it small.
@example(
    sequence=[
        Edit(1, 96, 1, 16, 0, "a", network=True, restart=False),
        Edit(1, 64, 1, 16, 0, "a", network=False, restart=False),
        Edit(1, 64, 1, 16, 0, "a", network=True, restart=False),
        Edit(1, 96, 1, 16, 0, "a", network=True, restart=True),
    ]
)
def test_plan_apply_plan_is_empty(tmp_path: Path, key: Path, sequence: list[Edit]) -> None:
    keeper = libvirt.open("test:///default")  # the test driver's objects live while it is open
    state = tmp_path / f"state-{os.urandom(4).hex()}"
    try:
        for edit in sequence:
            _first, second = _apply(tmp_path / "fleet.yaml", state, edit, key)
            assert second.empty, [s.describe() for s in second.steps]
            if edit.restart:
                assert second.pending == []
            _check_disks(keeper, edit)
            _check_running(keeper, edit)
    finally:
        _remove_fleet(keeper)
        keeper.close()


def _remove_fleet(conn: libvirt.virConnect) -> None:
    """Leave the test driver as found: a connection left open elsewhere in this process keeps
    its objects, and the next test's `web-0` would belong to fleet `prop`."""
    for dom in conn.listAllDomains():
        if "<vmfleet:fleet>prop</vmfleet:fleet>" in dom.XMLDesc(0):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    prefix = f"{names.PREFIX}prop{names.SEP}"
    pool = conn.storagePoolLookupByName("default-pool")
    for vol in pool.listAllVolumes():
        if vol.name().startswith(prefix):
            vol.delete(0)
    for net in conn.listAllNetworks():
        if net.name().startswith(prefix):
            if net.isActive():
                net.destroy()
            net.undefine()


def _check_disks(conn: libvirt.virConnect, edit: Edit) -> None:
    """The volumes are as the spec says: root grown (never shrunk), data disks present."""
    pool = conn.storagePoolLookupByName("default-pool")
    for n in range(edit.replicas):
        vm = f"web-{n}" if edit.replicas > 1 else "web"
        root = pool.storageVolLookupByName(volume_name(fleet="prop", vm=vm, role="root"))
        assert root.info()[1] >= edit.disk_mib << 20
        names = {v.name() for v in pool.listAllVolumes()}
        for d in range(edit.data_disks):
            assert volume_name(fleet="prop", vm=vm, role=f"data-{d}") in names


def _check_running(conn: libvirt.virConnect, edit: Edit) -> None:
    """With --restart, every VM runs what the spec says right away: its vCPUs, and its memory
    (a shrink is applied live through the balloon: the boot maximum stays until a reboot)."""
    if not edit.restart:
        return
    for n in range(edit.replicas):
        vm = f"web-{n}" if edit.replicas > 1 else "web"
        _state, _max_kib, kib, vcpus, _cpu = conn.lookupByName(vm).info()
        assert (kib // 1024, vcpus) == (edit.memory_mib, edit.vcpus)
