"""Image preparation (`images: NAME: {prepare: …}`): the recipe's checks with positions, the
cache by content hash (built once, reused, rebuilt when the recipe changes), `plan` staying
read-only, `up` uploading the prepared file. Real qemu-img on real images, libvirt's test
driver; the libguestfs tools through a recording runner (argv, TCG or KVM, errors); the real
libguestfs steps (extend, setup) are in test_image_prepare_e2e.py."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e_support import unique_fleet, vmfleet
from tests.support.testhost import TestDriverHost

from vmfleet import Fleet
from vmfleet.api import Event, ImagePrepared
from vmfleet.drivers.commands import RecordingRunner
from vmfleet.drivers.guestfs import GuestTools
from vmfleet.drivers.qemuimg import QemuImg
from vmfleet.errors import ImageError
from vmfleet.state import kvmcache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The image cache of this test (the CLI processes it starts inherit it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VMFLEET_CACHE", str(folder))
    return folder


@pytest.fixture
def fleet(tmp_path: Path, cache: Path) -> Callable[[str], Path]:
    """A fleet on test:///default with one raw 16 MiB image `base` and the given prepare."""
    image = tmp_path / "base.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), "16M"], check=True)
    name = unique_fleet("prep")

    def write(prepare: str, extra: str = "") -> Path:
        path = tmp_path / "fleet.yaml"
        path.write_text(
            f"fleet: {name}\n"
            'hosts: {local: {uri: "test:///default", domain_type: qemu, pool: default-pool}}\n'
            f"images:\n  base:\n    source: {image}\n    prepare: {prepare}\n"
            "defaults: {image: base, memory: 64MiB, disk: 16MiB}\n"
            "vms: {web: {}}\n" + extra
        )
        return path

    return write


def _prepared(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "prepared").glob("*") if not p.name.endswith(".lock"))


def test_a_bad_recipe_is_reported_at_its_position(fleet: Callable[[str], Path]) -> None:
    path = fleet("{format: vmdk, size: -3, setup: {user: root, colour: blue}}")
    result = vmfleet("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr
    assert "fleet.yaml:6:15: images.base.prepare.format: Input should be 'qcow2' or 'raw'" in lines
    assert "fleet.yaml:6:29: images.base.prepare.size: a size must be positive" in lines
    assert "images.base.prepare.setup.user: root cannot be the login user" in lines
    assert "images.base.prepare.setup.colour: unknown key 'colour'" in lines
    assert "Traceback" not in lines


def test_setup_needs_host_keys_accept_new(fleet: Callable[[str], Path]) -> None:
    """Without cloud-init the guest never gets the host key vmfleet made for it."""
    result = vmfleet("validate", str(fleet("{setup: {user: debian}}")))
    assert result.returncode == 2
    assert "fleet.yaml:6:15: images.base.prepare.setup: image 'base' is set up without " in (
        result.stderr
    )
    assert "ssh: {host_keys: accept-new}" in result.stderr


def test_a_vm_must_log_in_as_the_user_setup_made(fleet: Callable[[str], Path]) -> None:
    extra = "ssh: {host_keys: accept-new, user: admin}\n"
    result = vmfleet("validate", str(fleet("{setup: {user: debian}}", extra)))
    assert result.returncode == 2
    assert "vms.web: VM logs in as 'admin' but image 'base' is set up for 'debian'" in (
        result.stderr
    )
    ok = vmfleet("validate", str(fleet("{setup: {user: debian}}", "ssh: {host_keys: accept-new}")))
    assert ok.returncode == 0, ok.stderr


def test_a_vm_of_a_set_up_image_cannot_wait_for_cloud_init(fleet: Callable[[str], Path]) -> None:
    extra = "ssh: {host_keys: accept-new}\n"
    path = fleet("{setup: {user: debian}}", extra)
    path.write_text(path.read_text().replace("vms: {web: {}}", "vms: {web: {ready: cloud-init}}"))
    result = vmfleet("validate", str(path))
    assert result.returncode == 2
    assert "vms.web: VM waits for cloud-init, which image 'base' (set up without it) never" in (
        result.stderr
    )


def test_plan_says_not_cached_and_builds_nothing(fleet: Callable[[str], Path], cache: Path) -> None:
    result = vmfleet("plan", str(fleet("{format: qcow2}")))
    assert result.returncode == 0, result.stderr
    assert "prepare (not cached)" in result.stdout
    assert not cache.exists()


def test_pull_builds_once_then_reuses(fleet: Callable[[str], Path], cache: Path) -> None:
    path = fleet("{format: qcow2}")
    first = vmfleet("image", "pull", str(path))
    assert first.returncode == 0, first.stderr
    assert "prepared image base in" in first.stderr
    [made] = _prepared(cache)
    assert made.suffix == ".qcow2" and QemuImg().info(made).format == "qcow2"
    stamp = made.stat().st_mtime_ns
    start = time.monotonic()
    again = vmfleet("image", "pull", str(path))
    took = time.monotonic() - start
    assert again.returncode == 0, again.stderr
    assert "prepar" not in again.stderr  # a cache hit says nothing
    assert _prepared(cache) == [made] and made.stat().st_mtime_ns == stamp
    assert took < 10, took  # a CLI start and one stat per image; nothing is copied
    listed = vmfleet("image", "list", str(path), "-o", "json")
    assert str(made) in listed.stdout and '"prepare": "qcow2"' in listed.stdout
    planned = vmfleet("plan", str(path))
    assert "prepare (cached)" in planned.stdout


def test_a_changed_recipe_makes_a_new_file(fleet: Callable[[str], Path], cache: Path) -> None:
    assert vmfleet("image", "pull", str(fleet("{format: qcow2}"))).returncode == 0
    assert vmfleet("image", "pull", str(fleet("{format: raw}"))).returncode == 0
    made = _prepared(cache)
    assert sorted(p.suffix for p in made) == [".qcow2", ".raw"]
    assert QemuImg().info(next(p for p in made if p.suffix == ".raw")).format == "raw"


def test_a_size_below_the_image_is_a_clean_error(fleet: Callable[[str], Path], cache: Path) -> None:
    result = vmfleet("image", "pull", str(fleet("{size: 8MiB}")))
    assert result.returncode == 2, result.stderr
    assert (
        "fleet.yaml:6:15: images.base.prepare.size: 8MiB is smaller than the image (16MiB); "
        "images are only grown" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert _prepared(cache) == []  # no half-built file is left to look finished


def test_up_prepares_then_uploads_the_prepared_file(
    fleet: Callable[[str], Path], cache: Path, test_driver_daemon: None
) -> None:
    events: list[Event] = []
    with Fleet.open(
        fleet("{format: qcow2}"), hosts=TestDriverHost.factory, on_event=events.append
    ) as opened:
        opened.up().raise_for_failures()
        rows = {row.image: row for row in opened.image_list()}
    [made] = _prepared(cache)
    assert [(e.state, e.path) for e in events if isinstance(e, ImagePrepared)] == [
        ("building", str(made)),
        ("built", str(made)),
    ]
    assert rows["base"].local == str(made) and rows["base"].hosts == ("local",)
    assert rows["base"].dependants  # the VM's disk is backed by the prepared file's volume


PART_LIST = b"""[0] = {
  part_num: 14
  part_start: 1048576
  part_end: 5242879
  part_size: 4194304
}
[1] = {
  part_num: 1
  part_start: 227540992
  part_end: 2147483135
  part_size: 1919942144
}
[2] = {
  part_num: 15
  part_start: 5242880
  part_end: 114294783
  part_size: 109051904
}
"""


def test_the_last_partition_is_the_one_that_ends_the_disk_not_the_highest_number() -> None:
    """Ubuntu's cloud images put partitions 14 and 15 before the root partition 1."""
    runner = RecordingRunner().script(["guestfish"], stdout=PART_LIST)
    parts = GuestTools(runner=runner).partitions("disk.qcow2", format="qcow2")
    assert [p.device for p in parts] == ["/dev/sda14", "/dev/sda15", "/dev/sda1"]
    [call] = runner.calls
    assert call.env == {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def test_the_appliance_uses_kvm_only_when_told_it_works() -> None:
    runner = RecordingRunner().script(["virt-customize"])
    GuestTools(runner=runner, tcg=False).customize("d.raw", format="raw", operations=[])
    assert runner.calls[0].env == {"LIBGUESTFS_BACKEND": "direct"}


def test_a_failing_tool_is_an_image_error_with_its_words() -> None:
    runner = RecordingRunner().script(
        ["virt-resize"], returncode=1, stderr="virt-resize: error: /dev/sda9: partition not found"
    )
    with pytest.raises(
        ImageError,
        match=r"src.qcow2: cannot grow /dev/sda9 into dst.qcow2: .*"
        r"partition not found",
    ):
        GuestTools(runner=runner).expand(
            "src.qcow2", "dst.qcow2", partition="/dev/sda9", src_format="qcow2", dest_format="qcow2"
        )


def test_kvm_for_the_appliance_follows_the_newest_probe_of_the_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMFLEET_CACHE_DIR", str(tmp_path))
    assert kvmcache.newest("qemu:///system") is None
    kvmcache.remember(
        kvmcache.probe_key(
            uri="qemu:///system", host_uuid="a", libvirt_version="9", qemu_version="7"
        ),
        True,
    )
    kvmcache.remember(
        kvmcache.probe_key(
            uri="qemu:///session", host_uuid="a", libvirt_version="9", qemu_version="7"
        ),
        False,
    )
    assert kvmcache.newest("qemu:///system") is True
    assert kvmcache.newest("qemu:///session") is False


def test_a_build_in_progress_elsewhere_is_waited_for_not_repeated(
    fleet: Callable[[str], Path], cache: Path
) -> None:
    """Another process holding the recipe's lock is building it: a pull waits, then uses
    that process's file instead of building its own."""
    path = fleet("{format: qcow2}")
    assert vmfleet("image", "pull", str(path)).returncode == 0
    [made] = _prepared(cache)
    theirs = made.read_bytes()
    made.unlink()
    with made.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [sys.executable, "-m", "vmfleet.cli.main", "image", "pull", str(path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert waiting.poll() is None and not made.exists()
        made.write_bytes(theirs)  # what the other builder renames into place
        fcntl.flock(lock, fcntl.LOCK_UN)
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert "prepar" not in stderr  # not built again
    assert made.read_bytes() == theirs


def test_image_rm_removes_the_prepared_file(fleet: Callable[[str], Path], cache: Path) -> None:
    path = fleet("{format: qcow2}")
    assert vmfleet("image", "pull", str(path)).returncode == 0
    [made] = _prepared(cache)
    removed = vmfleet("image", "rm", str(path), "base")
    assert removed.returncode == 0, removed.stderr
    assert str(made) in removed.stdout and not made.exists()
