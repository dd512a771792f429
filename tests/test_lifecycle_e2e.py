"""A fleet's life on a real libvirtd: its image pulled over HTTP from 127.0.0.1, image removal
refused while disks depend on it, a memory change staged for a running VM and applied with
--restart, stop and start, down, then the image removed."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.e2e_support import leftovers, unique_fleet, vmfleet
from tests.support import images

from vmfleet.drivers.qemuimg import sha256

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("micro")]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def image_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(images.micro_disk(), served / "micro.qcow2")
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield (
            f"http://127.0.0.1:{httpd.server_address[1]}/micro.qcow2",
            sha256(served / "micro.qcow2"),
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_fleet(
    path: Path, fleet: str, url: str, digest: str, memory: str, disk: str = "64MiB"
) -> None:
    path.write_text(f"""
fleet: {fleet}
hosts: {{local: {{domain_type: qemu}}}}
images:
  lifeimg: {{source: "{url}", sha256: {digest}}}
defaults:
  image: lifeimg
  memory: {memory}
  disk: {disk}
  kernel:
    kernel: {images.micro_kernel()}
    initrd: {images.micro_initrd()}
    cmdline: console=ttyS0
  ready: {{wait_for: "port:22", timeout: 90s}}
vms:
  life: {{replicas: 2}}
""")


def test_image_and_vm_lifecycle(
    tmp_path: Path, image_url: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, digest = image_url
    monkeypatch.setenv("VMFLEET_CACHE", str(tmp_path / "cache"))
    fleet = unique_fleet("e2el")
    path = tmp_path / "fleet.yaml"
    write_fleet(path, fleet, url, digest, "128MiB")
    try:
        pulled = vmfleet("image", "pull", str(path))
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "cache" / f"{digest}.img").exists()
        assert vmfleet("up", str(path)).returncode == 0

        rows = json.loads(vmfleet("image", "list", str(path), "-o", "json").stdout)
        assert rows[0]["hosts"] == ["local"]
        assert sorted(rows[0]["dependants"]) == [
            f"vmf-{fleet}.life-0.root",
            f"vmf-{fleet}.life-1.root",
        ]
        refused = vmfleet("image", "rm", str(path), "lifeimg")
        assert refused.returncode == 1
        assert "still used by 2 disks" in " ".join(refused.stderr.split())

        write_fleet(path, fleet, url, digest, "160MiB", disk="96MiB")
        plan = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        assert {r["action"] for r in plan} == {"change"}
        assert {tuple(s["step"] for s in r["steps"]) for r in plan} == {("grow-disk", "define")}
        assert all(r["steps"][0]["live"] for r in plan)  # a block resize of the running disk
        staged = vmfleet("up", str(path), "-o", "json")
        assert staged.returncode == 0, staged.stderr
        assert {r["detail"] for r in json.loads(staged.stdout)} == {
            "changed; takes effect at next boot: memory"
        }
        pending = json.loads(vmfleet("plan", str(path), "-o", "json").stdout)
        assert {(r["action"], tuple(r["pending"])) for r in pending} == {("pending", ("memory",))}
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert {(r["memory"], r["disk"], r["pending"]) for r in listed} == {
            ("128MiB", "96MiB", True)
        }
        assert "nothing to do" in vmfleet("up", str(path)).stdout
        applied = vmfleet("up", str(path), "--restart", "--yes", "-o", "json")
        assert applied.returncode == 0, applied.stderr
        listed = json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        assert {(r["state"], r["memory"], r["disk"], r["pending"]) for r in listed} == {
            ("running", "160MiB", "96MiB", False)
        }
        assert "nothing to do" in vmfleet("up", str(path)).stdout

        assert vmfleet("stop", str(path), "life-0").returncode == 0
        states = {
            r["name"]: r["state"]
            for r in json.loads(vmfleet("list", str(path), "-o", "json").stdout)
        }
        assert states == {"life-0": "shutoff", "life-1": "running"}
        assert vmfleet("start", str(path), "life-0").returncode == 0
        assert vmfleet("reboot", str(path), "life-1").returncode == 0
        assert vmfleet("stop", str(path), "nosuch").returncode == 2

        assert vmfleet("down", str(path), "--yes").returncode == 0
        assert leftovers(fleet) == []
        removed = vmfleet("image", "rm", str(path), "lifeimg")
        assert removed.returncode == 0, removed.stderr
        assert not (tmp_path / "cache" / f"{digest}.img").exists()
        assert (
            json.loads(vmfleet("image", "list", str(path), "-o", "json").stdout)[0]["hosts"] == []
        )
    finally:
        vmfleet("down", str(path), "--yes")
