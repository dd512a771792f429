"""Who may do what. Reads need a token only when serve listens beyond the loopback address;
actions always need it. The token is a bearer token (`Authorization: Bearer TOKEN`) or, for
the dashboard (browsers send no header with EventSource), the `vmfleet_token` cookie, which
the page sets with SameSite=Strict so no other site's page can send it."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from vmfleet.errors import UsageError

COOKIE = "vmfleet_token"
ENV = "VMFLEET_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(*, token_file: Path | None, state_dir: Path) -> tuple[str, str]:
    """The token and where it came from: `token_file`, else $VMFLEET_TOKEN, else
    `STATE/serve-token`, made (0600, random) when missing."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            raise UsageError(f"cannot read token file {token_file}: {error.strerror}") from None
        if not token:
            raise UsageError(f"token file {token_file} is empty")
        return token, str(token_file)
    if os.environ.get(ENV):
        return os.environ[ENV].strip(), f"${ENV}"
    path = state_dir / "serve-token"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip(), str(path)


def presented(authorization: str | None, cookie: str | None) -> str | None:
    """The token a request carries: the bearer header first, then the cookie."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return cookie


def valid(token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(token.encode(), given.encode())
