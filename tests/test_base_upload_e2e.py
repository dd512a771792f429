"""Base volumes are shared by every run on a host (other fleets, other checkouts): a run never
uses one another run is still sending, and one a dead run left half sent is sent again.

Real libvirtd, micro guests. Each test makes an image file of its own (random bytes: a digest,
so a base volume, no other test shares) and plays the other run by hand: an upload lock
volume naming a live or a dead process, over a base volume of zeros (bytes still missing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e_support import SYSTEM_URI, leftovers, micro_fleet_yaml, unique_fleet, vmfleet

from vmfleet.drivers import names, qemuimg
from vmfleet.drivers.libvirt import LibvirtHost

pytestmark = pytest.mark.e2e

POOL = "default"
IMAGE_BYTES = 8 << 20


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.image = tmp_path / "disk.raw"
        self.image.write_bytes(os.urandom(IMAGE_BYTES))
        self.fleet = unique_fleet("upl")
        self.path = tmp_path / "fleet.yaml"
        from tests.support import images

        self.path.write_text(
            micro_fleet_yaml(self.fleet, replicas=1, ready="running", template="u").replace(
                f"micro: {{source: {images.micro_disk()}}}", f"micro: {{source: {self.image}}}"
            )
        )
        self.base = names.base_volume(image="micro", digest=qemuimg.sha256(self.image))
        self.lock = names.base_lock(self.base)
        self.host = LibvirtHost(SYSTEM_URI, name="local")

    def other_run_uploading(self, pid: int) -> None:
        """What another run leaves while it sends the base: its lock, a base of zeros."""
        record = {
            "token": uuid.uuid4().hex,
            "what": f"the upload of {self.base}",
            "pid": pid,
            "hostname": socket.gethostname(),
            "user": "root",
            "since": time.time(),
            "expires": time.time() + 3600,
        }
        assert self.host.create_marker(POOL, self.lock, json.dumps(record).encode())
        self.host.create_volume(
            POOL,
            f"<volume><name>{self.base}</name><capacity unit='bytes'>{IMAGE_BYTES}</capacity>"
            "<target><format type='raw'/></target></volume>",
        )

    def base_bytes(self) -> bytes | None:
        return self.host.read_marker(POOL, self.base, limit=IMAGE_BYTES)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    try:
        yield made
    finally:
        vmfleet("down", str(made.path), "--yes")
        for name in (made.lock, made.base):
            made.host.delete_volume(POOL, name)
        made.host.close()
        assert leftovers(made.fleet) == []


def test_a_base_another_run_is_still_sending_is_waited_for(setup: Setup) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        setup.other_run_uploading(other.pid)
        up = subprocess.Popen(
            [sys.executable, "-m", "vmfleet.cli.main", "up", str(setup.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4)
        assert up.poll() is None  # waiting for the other run's upload
        assert setup.host.get_domain("u") is None  # and nothing made on a half-sent base
        # the other run finishes: the whole image in the base, then its lock released
        setup.host.delete_volume(POOL, setup.base)
        setup.host.upload_volume(POOL, setup.base, setup.image, format="raw")
        setup.host.delete_volume(POOL, setup.lock)
        out, err = up.communicate(timeout=300)
        assert up.returncode == 0, out + err
    finally:
        other.kill()
        other.wait()
    assert setup.base_bytes() == setup.image.read_bytes()
    listed = json.loads(vmfleet("list", str(setup.path), "-o", "json").stdout)
    assert [(v["name"], v["state"]) for v in listed] == [("u", "running")]


def test_a_base_a_dead_run_left_half_sent_is_sent_again(setup: Setup) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    setup.other_run_uploading(dead.pid)
    assert setup.base_bytes() != setup.image.read_bytes()
    up = vmfleet("up", str(setup.path), timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert setup.base_bytes() == setup.image.read_bytes()
    assert setup.host.get_volume(POOL, setup.lock) is None
    events = json.loads(vmfleet("events", str(setup.path), "-o", "json").stdout)
    (broken,) = [e for e in events if e["reason"] == "lock-broken"]
    assert f"pid {dead.pid}" in broken["message"] and "no longer running" in broken["message"]
    # the listing of images names the base volume, never its lock
    images = json.loads(vmfleet("image", "list", str(setup.path), "-o", "json").stdout)
    assert images[0]["hosts"] == ["local"] and images[0]["dependants"] == [
        "vmf-" + setup.fleet + ".u.root"
    ]


def test_a_killed_runs_upload_is_not_undone_once_another_run_sent_the_base(
    setup: Setup,
) -> None:
    """A run killed while sending leaves its journal entry open; meanwhile another run sent
    the base whole (and may use it). Rolling back the entry keeps that base."""
    from vmfleet.state.store import Store

    sent = setup.host.upload_volume(POOL, setup.base, setup.image, format="raw")
    inode = os.stat(sent.path).st_ino
    store = Store(setup.path.parent / ".vmfleet")
    store.intent(
        run="killed", host="local", vm="", kind="volume", target=setup.base,
        detail={"pool": POOL},
    )  # fmt: skip
    store.close()
    up = vmfleet("up", str(setup.path), timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert os.stat(sent.path).st_ino == inode  # the same file: never deleted and sent anew
    listed = json.loads(vmfleet("list", str(setup.path), "-o", "json").stdout)
    assert [(v["name"], v["state"]) for v in listed] == [("u", "running")]
