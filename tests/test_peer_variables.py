"""User-data templates can refer to other VMs: `vms['db'].ip`, `groups['web']` (a group, or a
template's replicas), so a web tier is configured with its database's address."""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.e2e_support import vmfleet

from vmfleet.core.expand import expand
from vmfleet.drivers import cloudinit
from vmfleet.engine.provision import seed
from vmfleet.spec.load import load

FLEET = """\
networks:
  lab: {cidr: 192.168.77.0/24}
defaults: {network: lab}
vms:
  db: {ips: 192.168.77.20, group: data}
  web:
    replicas: 2
    cloud_init: {user_data: web.yaml.j2}
groups:
  data: {}
"""
TEMPLATE = """\
write_files:
  - path: /etc/app.env
    content: |
      DB={{ vms['db'].ip }}
      PEERS={{ groups['web'] | map(attribute='ip') | join(',') }}
      DATA={{ groups['data'] | map(attribute='name') | join(',') }}
"""


def test_templates_see_other_vms_addresses(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    (tmp_path / "web.yaml.j2").write_text(TEMPLATE)
    loaded = load(tmp_path / "fleet.yaml")
    everyone = expand(loaded.spec, fleet=loaded.name)
    web0 = next(i for i in everyone if i.name == "web-0")
    rendered = cloudinit.render_user_data(seed.seed_request(loaded, web0, everyone))
    content = yaml.safe_load(rendered.split("\n", 1)[1])["write_files"][0]["content"]
    web_ips = ",".join(n.ip for i in everyone if i.template == "web" for n in i.nics if n.ip)
    assert content == f"DB=192.168.77.20\nPEERS={web_ips}\nDATA=db\n"
    assert vmfleet("validate", cwd=tmp_path).returncode == 0
