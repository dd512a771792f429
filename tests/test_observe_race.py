"""A domain that leaves a host while it is being looked at (a live migration ending, another
`down` removing it) does not fail a read-only command: what was listed is read at once, in
the same breath, never looked up again by name."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.e2e_support import unique_fleet
from tests.support.testfleet import domain_xml
from tests.support.testhost import TestDriverHost

from vmfleet.drivers.libvirt import DomainInfo, LibvirtHost
from vmfleet.engine.apply import observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError
from vmfleet.spec.load import load
from vmfleet.state.store import Store


class LeavingHost(TestDriverHost):
    """Lists its domains, then the first one leaves (is destroyed and undefined), as a
    migration finishing between `status`'s listing and its next call would make it."""

    def list_domains(self, *, fleet: str | None = None) -> list[DomainInfo]:
        found = super().list_domains(fleet=fleet)
        if found:
            self.destroy(found[0].name)
            self.undefine(found[0].name)
        return found

    @classmethod
    def factory(cls, uri: str, name: str) -> LibvirtHost:
        return cls(uri, name=name)


def test_a_domain_gone_after_listing_is_reported_as_listed(
    tmp_path: Path, test_driver_daemon: None
) -> None:
    fleet = unique_fleet("race")
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {fleet}\n"
        "hosts: {local: {uri: 'test:///default', domain_type: qemu, pool: default-pool}}\n"
        "images: {d: {source: /x}}\n"
        "defaults: {image: d, memory: 64MiB}\n"
        "vms: {a: {}, b: {}}\n"
    )
    state = tmp_path / "state"
    ctx = FleetContext(
        loaded=load(path), store=Store(state), state_dir=state, host_factory=LeavingHost.factory
    )
    host = ctx.host("local")
    for vm in ("a", "b"):
        host.define(domain_xml(fleet, vm, vm, None))
        host.start(vm)
    try:
        seen = observe(ctx)
        assert [(o.name, o.state) for o in seen.vms] == [("a", "running"), ("b", "running")]
        assert host.get_domain("a") is None  # it did leave after the listing
    finally:
        for vm in ("a", "b"):
            with contextlib.suppress(FleetError):
                host.destroy(vm)
            with contextlib.suppress(FleetError):
                host.undefine(vm)
        ctx.close()
