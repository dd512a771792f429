"""Shorthand where users expect it: `ready: ssh`, `ips: ADDRESS` for one replica, `network: lab`,
`packages:` on a VM pointing to `cloud_init.packages`; the login user from the image (catalog
defaults) unless the file says otherwise, shown by `list -o wide` and `ssh-config`."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet import SpecError
from vmfleet.spec.load import load

HOST = 'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
FLEET = (
    HOST + "images:\n  ubuntu-24.04: {catalog: ubuntu-24.04}\n"
    "networks:\n  lab: {cidr: 10.0.0.0/24}\n"
    "vms:\n  db: {ready: ssh, network: lab, ips: 10.0.0.5, image: ubuntu-24.04}\n"
)


def test_ready_and_ips_shorthand(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(FLEET)
    db = load(tmp_path / "f.yaml").spec.vms["db"]
    assert (db.ready and db.ready.wait_for, db.ips, db.network) == ("ssh", ["10.0.0.5"], "lab")


def test_packages_on_the_vm_points_to_cloud_init(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("vms:\n  web: {packages: [nginx]}\n")
    with pytest.raises(SpecError, match=r"did you mean 'cloud_init.packages'"):
        load(tmp_path / "f.yaml")


def test_login_user_comes_from_the_image_and_shows_in_list_wide(tmp_path: Path) -> None:
    (tmp_path / "vmfleet.yaml").write_text(FLEET)
    config = vmfleet("ssh-config", cwd=tmp_path)
    assert "    User ubuntu" in config.stdout, config.stderr
    wide = vmfleet("list", "-o", "wide", cwd=tmp_path)
    assert wide.returncode == 0, wide.stderr
    assert "User" in wide.stdout and "ubuntu" in wide.stdout
    assert "User" not in vmfleet("list", cwd=tmp_path).stdout


def test_the_file_wins_over_the_image_user(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(FLEET + "ssh: {user: ops}\n")
    assert "    User ops" in vmfleet("ssh-config", "f.yaml", cwd=tmp_path).stdout
