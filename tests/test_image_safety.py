"""Base images that would reach host files are refused before anything changes: a backing
file or an external data file in the header, or a format other than qcow2/raw (probed from
the bytes, never the file name). On libvirt's test driver; the images are real."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet.drivers.qemuimg import QemuImg, refuse_unsafe_base
from vmfleet.errors import ImageError


def _img(*args: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", *args], check=True)


@pytest.fixture
def evil(tmp_path: Path) -> dict[str, Path]:
    """One image per way of reaching a host file, and a good one."""
    made = {
        "backing": tmp_path / "backing.qcow2",
        "datafile": tmp_path / "datafile.qcow2",
        "vmdk": tmp_path / "named-like.qcow2",
        "good": tmp_path / "good.img",
    }
    _img("-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", str(made["backing"]))
    _img("-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", str(made["datafile"]), "16M")
    _img("-f", "vmdk", str(made["vmdk"]), "16M")
    _img("-f", "qcow2", str(made["good"]), "16M")
    return made


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("backing", "backing file (/etc/hostname)"),
        ("datafile", "external data file"),
        ("vmdk", "format is 'vmdk'"),
    ],
)
def test_an_image_that_reaches_outside_itself_is_refused(
    evil: dict[str, Path], kind: str, why: str
) -> None:
    with pytest.raises(ImageError, match="refused") as caught:
        refuse_unsafe_base(QemuImg().info(evil[kind]))
    assert why in str(caught.value)


def test_a_plain_qcow2_under_any_name_is_accepted(evil: dict[str, Path]) -> None:
    refuse_unsafe_base(QemuImg().info(evil["good"]))


def test_up_refuses_a_backing_file_image_before_anything(
    fleet_file: Callable[[str], Path], evil: dict[str, Path]
) -> None:
    path = fleet_file(
        f"""
fleet: fast
hosts: {{local: {{uri: "test:///default", domain_type: qemu, pool: default-pool}}}}
images: {{evil: {{source: {evil["backing"]}}}, ok: {{source: {evil["good"]}}}}}
defaults: {{memory: 64MiB, disk: 16MiB}}
vms: {{a: {{image: evil}}, b: {{image: ok}}}}
"""
    )
    result = vmfleet("up", str(path))
    flat = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "nothing was changed" in flat
    assert "image evil:" in flat and "backing file (/etc/hostname)" in flat
    assert "Traceback" not in flat
