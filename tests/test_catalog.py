"""The image catalog: `vmfleet image catalog` lists it; `images: {x: {catalog: NAME}}` takes
the URL from it and the digest from the publisher's checksum list (GNU SHA256SUMS/SHA512SUMS
and BSD CHECKSUM forms) at pull time, pinned in the state so a changed "latest" is reported.
A URL image may name its checksum list (`checksums:`) instead of a sha256: pinned the same
way. Served by a local HTTP server on 127.0.0.1 standing in as the mirror (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet.errors import SpecError
from vmfleet.spec import catalog
from vmfleet.spec.load import load_text, parse

DEBIAN = "cloud.debian.org/images/cloud/bookworm/latest"
UBUNTU = "cloud-images.ubuntu.com/releases/noble/release"
ROCKY = "dl.rockylinux.org/pub/rocky/9/images/x86_64"


def _publish(root: Path, image: bytes) -> None:
    """The three publishers' folders, each in its own checksum-list form."""
    deb = root / DEBIAN
    deb.mkdir(parents=True, exist_ok=True)
    (deb / "debian-12-generic-amd64.qcow2").write_bytes(image)
    (deb / "SHA512SUMS").write_text(
        f"{hashlib.sha512(b'other').hexdigest()}  debian-12-generic-arm64.qcow2\n"
        f"{hashlib.sha512(image).hexdigest()}  debian-12-generic-amd64.qcow2\n"
    )
    ubu = root / UBUNTU
    ubu.mkdir(parents=True, exist_ok=True)
    (ubu / "ubuntu-24.04-server-cloudimg-amd64.img").write_bytes(image + b"u")
    (ubu / "SHA256SUMS").write_text(
        f"{hashlib.sha256(image + b'u').hexdigest()} *ubuntu-24.04-server-cloudimg-amd64.img\n"
    )
    rocky = root / ROCKY
    rocky.mkdir(parents=True, exist_ok=True)
    name = "Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
    (rocky / name).write_bytes(image + b"r")
    (rocky / "CHECKSUM").write_text(
        f"# {name}: 7 bytes\nSHA256 ({name}) = {hashlib.sha256(image + b'r').hexdigest()}\n"
    )


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{h}  f.qcow2\n", ("sha256", "{h}")),  # GNU, text mode
        ("{h} *f.qcow2\n", ("sha256", "{h}")),  # GNU, binary mode (Ubuntu)
        ("{l}  f.qcow2\n", ("sha512", "{l}")),  # Debian's SHA512SUMS
        ("-----BEGIN PGP SIGNED MESSAGE-----\nSHA256 (f.qcow2) = {h}\n", ("sha256", "{h}")),
        ("{h}  other.qcow2\n", None),
    ],
)
def test_checksum_list_forms(text: str, expected: tuple[str, str] | None) -> None:
    h, long = "a" * 64, "b" * 128
    want = None if expected is None else (expected[0], expected[1].format(h=h, l=long))
    assert catalog.digest_for(text.format(h=h, l=long), "f.qcow2") == want


def test_catalog_lists_both_architectures() -> None:
    result = vmfleet("image", "catalog", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {(r["name"], r["arch"]): r for r in json.loads(result.stdout)}
    for name in ("debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04", "fedora-42"):
        assert (name, "x86_64") in rows and (name, "aarch64") in rows
    assert {"almalinux-9", "rocky-9", "arch", "opensuse-leap-15.6"} <= {n for n, _a in rows}
    assert rows[("ubuntu-24.04", "x86_64")]["user"] == "ubuntu"
    assert rows[("debian-12", "x86_64")]["checksums"].endswith("/SHA512SUMS")


def test_pull_resolves_pins_and_reports_a_changed_latest(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = mirror
    _publish(root, b"debian-v1")
    (tmp_path / "vmfleet.yaml").write_text(
        "images:\n"
        "  debian: {catalog: debian-12}\n"
        "  ubuntu-24.04: {catalog: ubuntu-24.04}\n"
        "  rocky: {catalog: rocky-9}\n"
        "vms:\n  web: {image: ubuntu-24.04}\n"
    )
    env = {"VMFLEET_CATALOG_MIRROR": url, "VMFLEET_CACHE": str(tmp_path / "cache")}
    first = vmfleet("image", "pull", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "pulled: debian, ubuntu-24.04, rocky" in first.stdout
    pins = json.loads((tmp_path / ".vmfleet" / "images.json").read_text())
    assert pins["debian"]["algorithm"] == "sha512"
    assert pins["debian"]["sha256"] == hashlib.sha256(b"debian-v1").hexdigest()
    assert (tmp_path / "cache" / f"{pins['rocky']['sha256']}.img").exists()
    assert vmfleet("image", "pull", cwd=tmp_path, env=env).stdout.strip() == (
        "all images are present"
    )

    _publish(root, b"debian-v2")  # the publisher's "latest" moves on
    changed = vmfleet("image", "pull", "debian", cwd=tmp_path, env=env)
    assert changed.returncode == 1
    assert "changed since it was pinned" in changed.stderr
    assert "--update debian" in changed.stderr
    updated = vmfleet("image", "pull", "--update", "debian", cwd=tmp_path, env=env)
    assert updated.returncode == 0, updated.stderr
    pins = json.loads((tmp_path / ".vmfleet" / "images.json").read_text())
    assert pins["debian"]["sha256"] == hashlib.sha256(b"debian-v2").hexdigest()


def test_a_url_image_with_a_checksum_list_is_pinned_at_its_first_pull(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = mirror
    data, name = b"debian-nocloud", "debian-12-nocloud-amd64-daily.qcow2"
    (root / "daily").mkdir()
    (root / "daily" / name).write_bytes(data)
    (root / "daily" / "SHA512SUMS").write_text(f"{hashlib.sha512(data).hexdigest()}  {name}\n")
    (tmp_path / "vmfleet.yaml").write_text(
        f"images:\n  deb: {{source: {url}/daily/{name}, checksums: {url}/daily/SHA512SUMS}}\n"
        "vms:\n  web: {image: deb}\n"
    )
    env = {"VMFLEET_CATALOG_MIRROR": "", "VMFLEET_CACHE": str(tmp_path / "cache")}
    first = vmfleet("image", "pull", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "pulled: deb" in first.stdout
    pin = json.loads((tmp_path / ".vmfleet" / "images.json").read_text())["deb"]
    assert (pin["catalog"], pin["algorithm"]) == ("", "sha512")
    assert pin["sha256"] == hashlib.sha256(data).hexdigest()
    again = vmfleet("image", "pull", cwd=tmp_path, env=env)
    assert again.stdout.strip() == "all images are present"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("{source: 'https://x.example/a.qcow2'}", "or `checksums:`, the URL of the publisher"),
        ("{source: /srv/a.qcow2, checksums: 'https://x.example/SUMS'}", "checksums is the"),
        ("{catalog: debian-12, checksums: 'https://x.example/SUMS'}", "checksums is the"),
    ],
)
def test_checksums_goes_with_a_url_source(image: str, message: str) -> None:
    document, _fmt = load_text(f"images:\n  deb: {image}\n", file="f.yaml")
    with pytest.raises(SpecError, match=message):
        parse(document)
