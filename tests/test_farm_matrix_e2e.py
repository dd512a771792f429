"""A 2 targets (amd64, arm64) x 2 platforms farm of SSH micro guests across two namespaced
libvirt hosts: `arm` offers aarch64, `noarm` has qemu-system-aarch64 hidden, so its libvirt
offers no aarch64 guest. Each cell's `main` phase writes a C program, compiles it with tcc in
the guest and runs it: it prints the machine `uname()` reports, then the file `dependencies`
left on the VM's disk and the login user (`roomy` names its own). The arm64 cells run only
on `arm`. A second run at the same revision restores `init` (amd64: internal, RAM included;
arm64 under UEFI: external, disk only, so the guest boots again) and skips `dependencies`,
whose file is still there. Timings are printed for docs/benchmarks.md (cold vs cached)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import junitparser
import pytest
from tests.e2e_support import leftovers, login_key, timed_farm_run, unique_fleet, vmfleet
from tests.support import images, multihost
from tests.support.images_ssh import AMD64, ARM64, SshMicro

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("farm-matrix")]

AARCH64_EMULATOR = "/usr/bin/qemu-system-aarch64"
# The login user of each platform's cells: the default, and the one `roomy` names.
USERS = {"small": "vmfleet", "roomy": "farmer"}
HELLO_C = r"""#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    if (uname(&u) != 0)
        return 1;
    printf("hello from %s\n", u.machine);
    return 0;
}
"""
MAIN_SH = f"""set -e
cd /tmp
cat > hello.c <<'EOF'
{HELLO_C}EOF
tcc -o hello hello.c
./hello
cat /data/deps
whoami
"""


def write_phases(root: Path) -> None:
    (root / "common").mkdir(parents=True)
    (root / "common" / "main.sh").write_text(MAIN_SH)
    for platform in ("small", "roomy"):
        (root / platform).mkdir()
        (root / platform / "dependencies.sh").write_text(
            f"set -e\necho 'dependencies of {platform}' > /data/deps\nsync\n"
        )


def farm_yaml(fleet: str, key: Path, hosts: list[multihost.Daemon]) -> str:
    host_lines = "\n".join(f'  {d.name}: {{uri: "{d.uri}", domain_type: qemu}}' for d in hosts)

    def kernel(guest: SshMicro) -> str:
        return f"{{kernel: {guest.kernel()}, initrd: {guest.initrd()}, cmdline: '{guest.cmdline}'}}"

    kernels = f"{{amd64: {kernel(AMD64)}, arm64: {kernel(ARM64)}}}"
    return f"""
fleet: {fleet}
hosts:
{host_lines}
ssh: {{private_key: {key}}}
images:
  disk-amd64: {{source: {images.micro_disk()}}}
  disk-arm64: {{source: {images.micro_disk()}, arch: aarch64}}
networks: {{fwd: {{mode: user}}}}
defaults: {{disk: 64MiB, network: fwd}}
farm:
  project: {{id: {fleet}, revision: 1}}
  platforms:
    small:
      images: {{amd64: disk-amd64, arm64: disk-arm64}}
      kernels: {kernels}
      memory: 256MiB
    roomy:
      user: farmer
      images: {{amd64: disk-amd64, arm64: disk-arm64}}
      kernels: {kernels}
      memory: 384MiB
  matrix: {{targets: [amd64, arm64], platforms: [small, roomy]}}
"""


def capability_archs(uri: str) -> str:
    return subprocess.run(
        ["virsh", "-c", uri, "capabilities"], capture_output=True, text=True, check=True
    ).stdout


def test_matrix_of_micro_guests_compiles_c_on_both_architectures(tmp_path: Path) -> None:
    fleet = unique_fleet("mtx")
    key = login_key(tmp_path)
    write_phases(tmp_path / "phases")
    AMD64.initrd(), ARM64.initrd()  # built (or found) before any clock starts
    with multihost.daemons("arm", "noarm", hide={"noarm": [AARCH64_EMULATOR]}) as hosts:
        arm, noarm = hosts
        assert "<arch name='aarch64'>" in capability_archs(arm.uri)
        assert "<arch name='aarch64'>" not in capability_archs(noarm.uri)
        path = tmp_path / "fleet.yaml"
        path.write_text(farm_yaml(fleet, key, hosts))
        junit = tmp_path / "junit.xml"
        try:
            cold, cold_s = timed_farm_run(path, "--junit", str(junit))
            assert cold.returncode == 0, cold.stderr + cold.stdout
            cells = {c["cell"]: c for c in json.loads(cold.stdout)["cells"]}
            assert sorted(cells) == ["roomy/amd64", "roomy/arm64", "small/amd64", "small/arm64"]
            for label, cell in cells.items():
                platform, target = label.split("/")
                ran = {p["phase"]: p for p in cell["phase_results"]}
                assert ran["main"]["status"] == "passed", ran["main"]
                log = Path(ran["main"]["log"]).read_text()
                machine = "aarch64" if target == "arm64" else "x86_64"
                user = USERS[platform]
                assert f"hello from {machine}\ndependencies of {platform}\n{user}" in log, log
                if target == "arm64":
                    assert cell["host"] == "arm", (label, cell["host"])
                # arm64 too: its UEFI guest has ACPI, so it hears the power button
                assert ran["shutdown"]["detail"] == "stopped (graceful)", (label, ran["shutdown"])
            suites = list(junitparser.JUnitXml.fromfile(str(junit)))
            assert len(suites) == 4
            assert all({c.name: c.is_passed for c in s}["main"] for s in suites)

            cached, cached_s = timed_farm_run(path)
            assert cached.returncode == 0, cached.stderr + cached.stdout
            for cell in json.loads(cached.stdout)["cells"]:
                platform, target = cell["cell"].split("/")
                again = {p["phase"]: p for p in cell["phase_results"]}
                assert again["restore init"]["status"] == "passed", again["restore init"]
                assert again["dependencies"]["status"] == "skipped"
                machine = "aarch64" if target == "arm64" else "x86_64"
                log = Path(again["main"]["log"]).read_text()
                user = USERS[platform]
                assert f"hello from {machine}\ndependencies of {platform}\n{user}" in log, log
            print(f"\nfarm matrix benchmark: cold {cold_s:.1f} s, cached {cached_s:.1f} s")
            for label, cell in cells.items():
                seconds = {p["phase"]: p["seconds"] for p in cell["phase_results"]}
                print("cold", label, cell["host"], seconds)
            for cell in json.loads(cached.stdout)["cells"]:
                seconds = {p["phase"]: p["seconds"] for p in cell["phase_results"]}
                print("cached", cell["cell"], cell["host"], seconds)
        finally:
            vmfleet("farm", "clean", str(path))
        for daemon in hosts:
            assert leftovers(f"{fleet}-farm", uri=daemon.uri) == []
