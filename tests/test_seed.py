"""NoCloud seed ISO: label `cidata`, exact Joliet and Rock Ridge names, contents, atomic write."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
from pathlib import Path

import pycdlib
import pytest

from vmfleet.drivers.seed import build_seed_iso, write_seed_iso

USER_DATA = "#cloud-config\nhostname: web-0\npackages: [curl]\n"
META_DATA = "instance-id: lab-web-0\nlocal-hostname: web-0\n"
NETWORK_CONFIG = "version: 2\nethernets: {}\n"
VENDOR_DATA = "#cloud-config\n{}\n"
UNICODE = "#cloud-config\nwrite_files: [{path: /etc/motd, content: 'grüße ✓'}]\n"


def _read(iso_bytes: bytes) -> tuple[str, dict[str, str], dict[str, str]]:
    """(volume ident, {joliet name: text}, {rock ridge name: text}) of an ISO."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(iso_bytes))
    try:
        ident = iso.pvd.volume_identifier.decode().strip()
        joliet: dict[str, str] = {}
        rock_ridge: dict[str, str] = {}
        for child in iso.list_children(joliet_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.file_identifier().decode("utf-16_be")
            joliet[name] = _extract(iso, joliet_path=f"/{name}")
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            rock_ridge[name] = _extract(iso, rr_path=f"/{name}")
    finally:
        iso.close()
    return ident, joliet, rock_ridge


def _extract(iso: pycdlib.PyCdlib, **path: str) -> str:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue().decode("utf-8")


@pytest.mark.parametrize(
    ("network_config", "vendor_data", "expected_names"),
    [
        (NETWORK_CONFIG, None, {"user-data", "meta-data", "network-config"}),
        (None, None, {"user-data", "meta-data"}),
        (NETWORK_CONFIG, VENDOR_DATA, {"user-data", "meta-data", "network-config", "vendor-data"}),
        ("", None, {"user-data", "meta-data", "network-config"}),
    ],
    ids=["with-network", "without-network", "with-vendor-data", "empty-network-config"],
)
def test_seed_holds_exactly_the_documents_given(
    network_config: str | None, vendor_data: str | None, expected_names: set[str]
) -> None:
    iso_bytes = build_seed_iso(
        user_data=USER_DATA,
        meta_data=META_DATA,
        network_config=network_config,
        vendor_data=vendor_data,
    )
    ident, joliet, rock_ridge = _read(iso_bytes)
    assert ident == "cidata"
    assert set(joliet) == set(rock_ridge) == expected_names
    expected = {
        "user-data": USER_DATA,
        "meta-data": META_DATA,
        "network-config": network_config,
        "vendor-data": vendor_data,
    }
    for name in expected_names:
        assert joliet[name] == rock_ridge[name] == expected[name]


def test_seed_keeps_utf8_text() -> None:
    _, joliet, _ = _read(
        build_seed_iso(user_data=UNICODE, meta_data=META_DATA, network_config=None)
    )
    assert joliet["user-data"] == UNICODE


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) not installed")
def test_isoinfo_sees_label_and_names(tmp_path: Path) -> None:
    """An independent reader (genisoimage's isoinfo) agrees on label, names and contents."""
    path = write_seed_iso(
        tmp_path / "seed.iso",
        user_data=USER_DATA,
        meta_data=META_DATA,
        network_config=NETWORK_CONFIG,
    )

    def isoinfo(*args: str) -> str:
        return subprocess.run(
            ["isoinfo", "-i", str(path), *args], capture_output=True, text=True, check=True
        ).stdout

    assert "Volume id: cidata" in isoinfo("-d")
    for flag in ("-J", "-R"):
        listed = {line.split()[-1] for line in isoinfo(flag, "-l").splitlines() if line[:1] == "-"}
        assert listed == {"user-data", "meta-data", "network-config"}
    assert isoinfo("-J", "-x", "/user-data") == USER_DATA
    assert isoinfo("-R", "-x", "/network-config") == NETWORK_CONFIG


def test_write_is_private_and_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    path.write_bytes(b"old")
    write_seed_iso(path, user_data=USER_DATA, meta_data=META_DATA, network_config=None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _, joliet, _ = _read(path.read_bytes())
    assert joliet["user-data"] == USER_DATA
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # no temporary left behind


def test_failed_write_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError):
        write_seed_iso(target, user_data=USER_DATA, meta_data=META_DATA, network_config=None)
    assert [p.name for p in tmp_path.iterdir()] == ["a-directory"]
