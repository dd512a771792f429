"""`vmfleet serve` against real micro guests: /metrics parsed with prometheus_client and
checked against libvirt, lifecycle events from libvirt's event API, and the dashboard in a
real browser (Debian's headless Chromium driven by Playwright): it shows the VMs, powers the
group off after confirmation and sees the new state arrive without a reload. A screenshot is
saved in .cache/artifacts/ (or $VMFLEET_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e_support import SYSTEM_URI, leftovers, micro_fleet_yaml, unique_fleet, vmfleet

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "e2e-token"
# Seconds a look at the host may take: libvirt's bulk stats ask every running QEMU on the host
# (other tests' guests too); on this shared 2-core machine under load that took over a minute.
LIBVIRT_SLACK = 150.0
ARTIFACTS = Path(
    os.environ.get("VMFLEET_ARTIFACTS", Path(__file__).parent.parent / ".cache/artifacts")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, path: Path, url: str, vms: list[str]) -> None:
        self.path, self.url, self.vms = path, url, vms

    def get(self, route: str, **headers: str) -> bytes:
        request = urllib.request.Request(self.url + route, headers=headers)
        with urllib.request.urlopen(request, timeout=LIBVIRT_SLACK) as response:
            return bytes(response.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two micro guests in group `app` (PoweredOn), served on a free 127.0.0.1 port."""
    tmp = tmp_path_factory.mktemp("serve")
    fleet = unique_fleet("srv")
    prefix = fleet.split("-")[1]
    body = micro_fleet_yaml(fleet, replicas=1, template="unused").split("vms:")[0]
    vms = [f"s{prefix}-0", f"s{prefix}-1"]
    path = tmp / "fleet.yaml"
    path.write_text(
        body
        + f"vms:\n  s{prefix}: {{replicas: 2, group: app}}\n"
        + "groups:\n  app: {power_state: PoweredOn, shutdown_timeout: 3s}\n"
    )
    (tmp / "token").write_text(TOKEN + "\n")
    up = vmfleet("up", str(path))
    assert up.returncode == 0, up.stderr + up.stdout
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmfleet.cli.main",
            "serve",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(tmp / "token"),
            "--interval",
            "1",
        ],
    )
    served = Served(path, f"http://127.0.0.1:{port}", vms)
    try:
        deadline = time.monotonic() + 2 * LIBVIRT_SLACK
        while True:
            try:
                served.get("/api/v1/fleet")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
        yield served
    finally:
        server.terminate()
        server.wait(timeout=30)
        vmfleet("down", str(path), "--yes")
        assert leftovers(fleet) == []


def test_metrics_match_what_libvirt_reports(served: Served) -> None:
    conn = libvirt.open(SYSTEM_URI)
    try:
        before = {
            vm: conn.lookupByName(vm).getCPUStats(True)[0]["cpu_time"] / 1e9 for vm in served.vms
        }
        time.sleep(1.5)  # serve may answer with a look begun up to a second before the request
        text = served.get("/metrics").decode()
        after = {
            vm: conn.lookupByName(vm).getCPUStats(True)[0]["cpu_time"] / 1e9 for vm in served.vms
        }
        info = {vm: conn.lookupByName(vm).info() for vm in served.vms}
    finally:
        conn.close()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "vm" in s.labels:
                samples[(s.name, s.labels["vm"])] = s.value
    for vm in served.vms:
        assert samples[("vmfleet_vm_running", vm)] == 1.0
        assert before[vm] <= samples[("vmfleet_vm_cpu_seconds_total", vm)] <= after[vm]
        assert samples[("vmfleet_vm_vcpus", vm)] == info[vm][3]
        assert samples[("vmfleet_vm_memory_max_bytes", vm)] == info[vm][1] * 1024
        assert samples[("vmfleet_vm_memory_rss_bytes", vm)] > 0
        assert samples[("vmfleet_vm_disk_read_bytes_total", vm)] > 0
        assert samples[("vmfleet_vm_uptime_seconds", vm)] > 0


def test_dashboard_powers_the_group_off_and_shows_it_live(served: Served) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="vmfleet-chromium-"),  # a fresh profile every run
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = browser.new_page()
            page.goto(served.url + "/", timeout=LIBVIRT_SLACK * 1000)
            for vm in served.vms:
                expect(page.locator(f'span.state[data-vm="{vm}"]')).to_have_text(
                    "running", timeout=LIBVIRT_SLACK * 1000
                )
            page.evaluate("window.notReloaded = true")
            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            asked: list[str] = []
            page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
            page.click('#group-app button:text-is("off")')
            for vm in served.vms:
                expect(page.locator(f'span.state[data-vm="{vm}"]')).to_have_text(
                    "shutoff", timeout=LIBVIRT_SLACK * 1000
                )
            expect(page.locator("#events")).to_contain_text(
                "domain-stopped", timeout=LIBVIRT_SLACK * 1000
            )
            assert asked == ["Power off group app?"]
            assert page.evaluate("window.notReloaded") is True
            expect(page.locator("#group-app")).to_contain_text("PoweredOff")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1280  # no horizontal overflow at 1280x800
        finally:
            browser.close()
    events = json.loads(served.get("/api/v1/events?limit=100"))
    assert any(e["reason"] == "domain-stopped" and e["object"] == served.vms[0] for e in events)
