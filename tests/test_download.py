"""The image download cache against a real HTTP server on 127.0.0.1: a download is verified
and renamed into place; an interrupted one resumes with a Range request; a bad checksum
leaves nothing in the cache."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vmfleet.drivers import download
from vmfleet.errors import ImageError

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB


class Server:
    def __init__(self) -> None:
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        self.ignore_range = False


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            header = self.headers.get("Range")
            state.ranges.append(header)
            start = 0
            if header and not state.ignore_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
                )
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                state.cut_after = None
                self.connection.close()
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/debian.qcow2"
    finally:
        httpd.shutdown()
        httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_is_verified_and_renamed(server: tuple[Server, str], tmp_path: Path) -> None:
    _state, url = server
    seen: list[tuple[int, int | None]] = []
    path = download.fetch(
        url, sha256=SHA, cache=tmp_path, progress=lambda done, total: seen.append((done, total))
    )
    assert path == tmp_path / f"{SHA}.img"
    assert path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert list(tmp_path.iterdir()) == [path]
    # A second fetch uses the cache and sends no request.
    assert download.fetch(url, sha256=SHA, cache=tmp_path) == path
    assert len(_state.ranges) == 1


def test_interrupted_download_resumes_with_a_range(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    state.cut_after = 700_000
    with pytest.raises(ImageError, match="run again to resume"):
        download.fetch(url, sha256=SHA, cache=tmp_path)
    part = tmp_path / f"{SHA}.part"
    assert part.stat().st_size == 700_000
    path = download.fetch(url, sha256=SHA, cache=tmp_path)
    assert state.ranges == [None, "bytes=700000-"]
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()


def test_server_ignoring_the_range_restarts_cleanly(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    state.cut_after = 100_000
    with pytest.raises(ImageError):
        download.fetch(url, sha256=SHA, cache=tmp_path)
    state.ignore_range = True
    assert download.fetch(url, sha256=SHA, cache=tmp_path).read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server: tuple[Server, str], tmp_path: Path) -> None:
    _state, url = server
    with pytest.raises(ImageError, match="sha256 is"):
        download.fetch(url, sha256="0" * 64, cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"download of http://127\.0\.0\.1:9/x stopped"):
        download.fetch("http://127.0.0.1:9/x", sha256=SHA, cache=tmp_path, timeout=2)
