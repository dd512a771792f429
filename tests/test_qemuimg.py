"""qemu-img driver: the real qemu-img on tiny temp images, and the argv it sends (fake runner)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from vmfleet.drivers.commands import RecordingRunner
from vmfleet.drivers.qemuimg import CheckResult, ImageInfo, QemuImg, sha256
from vmfleet.errors import ImageError

MiB = 1024 * 1024

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="no qemu-img")


def make_image(path: Path, *, fmt: str = "qcow2", size: int = MiB) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)], check=True)
    return path


def corrupt_refcounts(path: Path) -> None:
    """Zero the first refcount block: every used cluster then has refcount 0 (corruption)."""
    with path.open("r+b") as handle:
        header = handle.read(64)
        (table,) = struct.unpack(">Q", header[48:56])
        handle.seek(table)
        (block,) = struct.unpack(">Q", handle.read(8))
        handle.seek(block)
        handle.write(b"\0" * 512)


@needs_qemu_img
def test_info_reports_format_sizes_and_no_backing(tmp_path: Path) -> None:
    image = make_image(tmp_path / "base.qcow2", size=2 * MiB)
    info = QemuImg().info(image)
    assert info.path == str(image)
    assert info.format == "qcow2"
    assert info.virtual_size == 2 * MiB
    assert info.actual_size is not None
    assert info.actual_size > 0
    assert info.backing_file is None
    assert info.backing_format is None


@needs_qemu_img
def test_overlay_points_at_its_backing_file_and_can_grow(tmp_path: Path) -> None:
    base = make_image(tmp_path / "base.qcow2")
    overlay = QemuImg().create_overlay(
        tmp_path / "vm.qcow2", backing=base, backing_format="qcow2", size=4 * MiB
    )
    assert overlay.backing_file == str(base)
    assert overlay.backing_format == "qcow2"
    assert overlay.virtual_size == 4 * MiB


@needs_qemu_img
def test_overlay_defaults_to_backing_size_and_resolves_relative_backing(tmp_path: Path) -> None:
    make_image(tmp_path / "base.qcow2", size=3 * MiB)
    overlay = QemuImg().create_overlay(
        tmp_path / "vm.qcow2", backing="base.qcow2", backing_format="qcow2"
    )
    assert overlay.virtual_size == 3 * MiB
    assert overlay.backing_file == str(tmp_path / "base.qcow2")


@needs_qemu_img
def test_writing_commands_refuse_to_overwrite(tmp_path: Path) -> None:
    base = make_image(tmp_path / "base.qcow2")
    existing = tmp_path / "taken.qcow2"
    existing.write_bytes(b"precious")
    qemu = QemuImg()
    with pytest.raises(ImageError, match=r"taken.qcow2: already exists"):
        qemu.create_overlay(existing, backing=base, backing_format="qcow2")
    with pytest.raises(ImageError, match=r"already exists"):
        qemu.convert(base, existing, src_format="qcow2", dest_format="raw")
    assert existing.read_bytes() == b"precious"


@needs_qemu_img
def test_convert_writes_the_new_format_and_keeps_content(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"vmfleet!" * (MiB // 8))
    qemu = QemuImg()
    qcow = qemu.convert(raw, tmp_path / "disk.qcow2", src_format="raw", dest_format="qcow2")
    assert qcow.format == "qcow2"
    assert qcow.virtual_size == MiB
    back = qemu.convert(qcow.path, tmp_path / "back.raw", src_format="qcow2", dest_format="raw")
    assert sha256(back.path) == sha256(raw)
    assert not (tmp_path / "disk.qcow2.part").exists()


@needs_qemu_img
def test_failed_convert_leaves_no_partial_file(tmp_path: Path) -> None:
    not_qcow = tmp_path / "junk"
    not_qcow.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match=r"junk: cannot convert"):
        QemuImg().convert(not_qcow, tmp_path / "out.raw", src_format="qcow2", dest_format="raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]


@needs_qemu_img
def test_resize_grows_and_refuses_to_shrink(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.qcow2")
    qemu = QemuImg()
    assert qemu.resize(image, 8 * MiB).virtual_size == 8 * MiB
    with pytest.raises(ImageError, match=r"disk.qcow2: cannot resize.*shrink"):
        qemu.resize(image, MiB)


@needs_qemu_img
def test_check_clean_image(tmp_path: Path) -> None:
    image = make_image(tmp_path / "ok.qcow2")
    assert QemuImg().check(image) == CheckResult(
        path=str(image), format="qcow2", supported=True, leaks=0
    )


@needs_qemu_img
def test_check_raw_image_is_an_explicit_unsupported_outcome(tmp_path: Path) -> None:
    image = make_image(tmp_path / "disk.raw", fmt="raw")
    result = QemuImg().check(image, format="raw")
    assert not result.supported


@needs_qemu_img
def test_check_corrupt_image_raises_naming_the_file(tmp_path: Path) -> None:
    image = make_image(tmp_path / "bad.qcow2")
    corrupt_refcounts(image)
    with pytest.raises(ImageError, match=r"bad.qcow2: image is corrupt \(\d+ errors"):
        QemuImg().check(image)


@needs_qemu_img
@pytest.mark.parametrize("method", ["info", "check"])
def test_missing_or_unreadable_image_raises_naming_the_file(tmp_path: Path, method: str) -> None:
    missing = tmp_path / "nope.qcow2"
    with pytest.raises(ImageError, match=r"nope.qcow2"):
        getattr(QemuImg(), method)(missing)


def test_sha256_streams_the_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_sha256_of_missing_file_raises_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing: cannot read"):
        sha256(tmp_path / "missing")


INFO_JSON = json.dumps(
    {
        "virtual-size": 10 * MiB,
        "filename": "/pool/vm.qcow2",
        "format": "qcow2",
        "actual-size": 200704,
        "backing-filename": "base.qcow2",
        "full-backing-filename": "/pool/base.qcow2",
        "backing-filename-format": "qcow2",
        "dirty-flag": False,
    }
)


def test_argv_sent_to_qemu_img_through_the_runner_seam() -> None:
    runner = RecordingRunner()
    runner.script(["qemu-img", "info"], stdout=INFO_JSON)
    runner.script(["qemu-img", "create"])
    runner.script(["qemu-img", "check"], returncode=3, stdout='{"leaks": 2, "format": "qcow2"}')
    qemu = QemuImg(runner=runner, binary="qemu-img", timeout=30)

    info = qemu.create_overlay(
        "/vmftest-nonexistent/vm.qcow2",
        backing="/pool/base.qcow2",
        backing_format="qcow2",
        size=10 * MiB,
    )
    check = qemu.check("/pool/vm.qcow2")

    assert info == ImageInfo(
        path="/vmftest-nonexistent/vm.qcow2",
        format="qcow2",
        virtual_size=10 * MiB,
        actual_size=200704,
        backing_file="/pool/base.qcow2",
        backing_format="qcow2",
    )
    assert check == CheckResult(path="/pool/vm.qcow2", format="qcow2", supported=True, leaks=2)
    assert runner.argvs() == [
        (
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "/pool/base.qcow2",
            "/vmftest-nonexistent/vm.qcow2", str(10 * MiB),
        ),
        ("qemu-img", "info", "--output=json", "-U", "/vmftest-nonexistent/vm.qcow2"),
        ("qemu-img", "check", "--output=json", "-U", "/pool/vm.qcow2"),
    ]  # fmt: skip
    assert {call.timeout for call in runner.calls} == {30}


def test_qemu_img_failure_through_the_fake_becomes_image_error() -> None:
    runner = RecordingRunner().script(
        ["qemu-img", "info"], returncode=1, stderr="qemu-img: Could not open 'x': Permission denied"
    )
    with pytest.raises(ImageError, match=r"x: cannot read image: .*Permission denied"):
        QemuImg(runner=runner).info("x")
