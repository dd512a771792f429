"""Password hashing for guest accounts: SHA-512 crypt (`$6$...`), as /etc/shadow takes it.

A plain password never reaches a seed: the user gives one, `hash_password` turns it into a
SHA-512 crypt string, and only that goes into user-data (`hashed_passwd`).

This is a pure-Python implementation of Ulrich Drepper's SHA-crypt specification (the one
glibc and libxcrypt use), not the `crypt` module: that module is deprecated since Python
3.11 and gone in 3.13, and depends on the platform's libcrypt. It is checked against the
specification's test vectors and, in the tests, against `openssl passwd -6`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from vmfleet import logs

DEFAULT_ROUNDS = 100_000
"""Rounds for new hashes: well above glibc's 5000, about 0.1 s here, still fast on a guest login."""

_SPEC_ROUNDS = 5000
_MIN_ROUNDS = 1000
_MAX_ROUNDS = 999_999_999
_SALT_MAX = 16
_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HASH_RE = re.compile(
    r"^\$6\$(?:rounds=(?P<rounds>\d{1,9})\$)?(?P<salt>[!-#%-~]{0,16})\$(?P<hash>[./0-9A-Za-z]{86})$"
)
_CRYPT_RE = re.compile(r"^\$(?:1|5|6|y|gy|7|2[abxy])\$[./0-9A-Za-z$=,]+$")

# The order in which SHA-crypt spreads the 64 digest bytes over 4-character groups.
_SHA512_ORDER = [
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
    (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
    (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
    (18, 39, 60), (40, 61, 19), (62, 20, 41),
]  # fmt: skip


def hash_password(plain: str, *, rounds: int = DEFAULT_ROUNDS, salt: str | None = None) -> str:
    """The SHA-512 crypt hash of `plain` (UTF-8), with a fresh random 16-character salt.

    `salt` (at most 16 characters of `./0-9A-Za-z`) is for reproducible tests only.
    `rounds` is clamped to 1000..999999999 as the specification says; the default 5000 is
    not written into the hash, any other count is (`$6$rounds=N$salt$hash`).
    """
    logs.secret(plain)
    if salt is None:
        salt = "".join(secrets.choice(_ALPHABET) for _ in range(_SALT_MAX))
    elif len(salt) > _SALT_MAX or any(c not in _ALPHABET for c in salt):
        raise ValueError("a salt is at most 16 characters of ./0-9A-Za-z")
    return _sha512_crypt(plain.encode("utf-8"), salt, rounds, explicit=rounds != _SPEC_ROUNDS)


def verify_password(plain: str, hashed: str) -> bool:
    """True when `plain` matches a `$6$` hash (from us, glibc, openssl or mkpasswd).

    Any other format (or a malformed hash) is False, never an error: it cannot match.
    """
    match = _HASH_RE.match(hashed)
    if match is None:
        return False
    given = match["rounds"]
    rounds = _SPEC_ROUNDS if given is None else int(given)
    again = _sha512_crypt(plain.encode("utf-8"), match["salt"], rounds, explicit=given is not None)
    return hmac.compare_digest(again, hashed)


def looks_hashed(value: str) -> bool:
    """True when `value` has the shape of a crypt(3) hash (`$6$...`, `$y$...`, `$2b$...`).

    Used to refuse a plain password where only a hash may go.
    """
    return _CRYPT_RE.match(value) is not None


def _sha512_crypt(password: bytes, salt_text: str, rounds: int, *, explicit: bool) -> str:
    rounds = min(max(rounds, _MIN_ROUNDS), _MAX_ROUNDS)
    salt = salt_text.encode("ascii")[:_SALT_MAX]
    length = len(password)

    digest_b = hashlib.sha512(password + salt + password).digest()
    context_a = hashlib.sha512(password + salt)
    context_a.update(digest_b * (length // 64) + digest_b[: length % 64])
    bits = length
    while bits:
        context_a.update(digest_b if bits & 1 else password)
        bits >>= 1
    digest_a = context_a.digest()

    digest_p = hashlib.sha512(password * length).digest()
    p_bytes = (digest_p * (length // 64 + 1))[:length]
    digest_s = hashlib.sha512(salt * (16 + digest_a[0])).digest()
    s_bytes = digest_s[: len(salt)]

    current = digest_a
    for round_number in range(rounds):
        context = hashlib.sha512(p_bytes if round_number & 1 else current)
        if round_number % 3:
            context.update(s_bytes)
        if round_number % 7:
            context.update(p_bytes)
        context.update(current if round_number & 1 else p_bytes)
        current = context.digest()

    encoded = "".join(_b64(current[a], current[b], current[c], 4) for a, b, c in _SHA512_ORDER)
    encoded += _b64(0, 0, current[63], 2)
    prefix = f"$6$rounds={rounds}$" if explicit else "$6$"
    return f"{prefix}{salt.decode('ascii')}${encoded}"


def _b64(byte2: int, byte1: int, byte0: int, count: int) -> str:
    word = (byte2 << 16) | (byte1 << 8) | byte0
    chars = []
    for _ in range(count):
        chars.append(_ALPHABET[word & 0x3F])
        word >>= 6
    return "".join(chars)
