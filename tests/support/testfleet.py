"""A fleet whose VMs run on libvirt's test driver (in-process, shared per process), for the
fast tests of `serve`: domains carry vmfleet metadata, names are unique per fleet."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from vmfleet.drivers.metadata import OwnerMetadata
from vmfleet.errors import FleetError
from vmfleet.serve.service import ServedFleet
from vmfleet.spec.load import load

FLEET = """
fleet: {fleet}
hosts:
  local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}
images: {{d: {{source: /x}}}}
defaults: {{image: d, memory: 64MiB}}
groups:
  {p}app: {{members: [{p}web], power_state: PoweredOn}}
  {p}site: {{members: [{p}app, {p}db]}}
vms:
  {p}web: {{replicas: {replicas}}}
  {p}db: {{}}
  {p}spare: {{}}
"""


def domain_xml(fleet: str, vm: str, template: str, index: int | None) -> str:
    owner = OwnerMetadata(fleet=fleet, vm=vm, template=template, index=index, spec_hash="h")
    return (
        f"<domain type='test'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<metadata>{owner.to_xml()}</metadata><os><type>hvm</type></os></domain>"
    )


@contextlib.contextmanager
def running_fleet(
    directory: Path, *, replicas: int = 2, lock_wait: float = 0.0
) -> Iterator[ServedFleet]:
    """web-0.., db running, spare not created (prefixed with a unique `p`)."""
    p = f"t{uuid.uuid4().hex[:5]}-"
    fleet = f"serve{uuid.uuid4().hex[:6]}"
    path = directory / "fleet.yaml"
    path.write_text(FLEET.format(fleet=fleet, p=p, replicas=replicas))
    served = ServedFleet(load(path), state=directory / "s", lock_wait=lock_wait)
    ctx = served.context()
    host = ctx.host("local")
    made = [i for i in ctx.instances() if not i.name.endswith("spare")]
    for instance in made:
        host.define(domain_xml(fleet, instance.name, instance.template, instance.index))
        host.start(instance.name)
    try:
        yield served
    finally:
        for instance in made:
            with contextlib.suppress(FleetError):
                host.destroy(instance.name)
                host.undefine(instance.name)
        served.close()
