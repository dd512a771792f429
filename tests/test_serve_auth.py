"""Who may use `serve`: which listen addresses are loopback, where the token comes from, and
how a request presents it; a bad --listen is a usage error (exit 2)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from tests.e2e_support import vmfleet

from vmfleet.cli.serve import parse_listen
from vmfleet.errors import UsageError
from vmfleet.serve import auth


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_only_loopback_addresses_leave_reads_open(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:9177", ("127.0.0.1", 9177)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_listen_addresses_parse(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["9177", "127.0.0.1", "127.0.0.1:0", "host:99999", ":80"])
def test_bad_listen_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_listen(text)


def test_the_token_comes_from_the_file_then_env_then_a_made_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "token"
    given.write_text("from-file\n")
    monkeypatch.setenv(auth.ENV, "from-env")
    assert auth.load_token(token_file=given, state_dir=tmp_path) == ("from-file", str(given))
    assert auth.load_token(token_file=None, state_dir=tmp_path) == ("from-env", "$VMFLEET_TOKEN")
    monkeypatch.delenv(auth.ENV)
    made, where = auth.load_token(token_file=None, state_dir=tmp_path / "state")
    assert len(made) >= 32 and where == str(tmp_path / "state" / "serve-token")
    assert stat.S_IMODE((tmp_path / "state" / "serve-token").stat().st_mode) == 0o600
    assert auth.load_token(token_file=None, state_dir=tmp_path / "state")[0] == made  # kept
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        auth.load_token(token_file=empty, state_dir=tmp_path)


def test_a_request_presents_the_bearer_header_or_the_cookie() -> None:
    assert auth.presented("Bearer abc", None) == "abc"
    assert auth.presented("bearer abc", "xyz") == "abc"
    assert auth.presented("Basic abc", "xyz") is None  # a header that is not bearer: no token
    assert auth.presented(None, "xyz") == "xyz"
    assert auth.valid("abc", "abc") and not auth.valid("abc", "abd") and not auth.valid("abc", None)


def test_serve_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("images: {d: {source: /x}}\nvms: {a: {image: d}}\n")
    result = vmfleet("serve", str(path), "--listen", "nowhere")
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr and "Traceback" not in result.stderr
