"""SHA-512 crypt password hashes: the specification's vectors, openssl agrees, hashes verify."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from vmfleet.drivers.secrets import hash_password, looks_hashed, verify_password

# Test vectors from Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512".
SPEC_VECTORS = [
    (
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "a short string",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]


@pytest.mark.parametrize(("plain", "hashed"), SPEC_VECTORS)
def test_specification_vectors_verify(plain: str, hashed: str) -> None:
    assert verify_password(plain, hashed)
    assert not verify_password(plain + "x", hashed)


def test_spec_vector_is_reproduced_with_its_salt() -> None:
    plain, hashed = SPEC_VECTORS[0]
    assert hash_password(plain, rounds=5000, salt="saltstring") == hashed


@pytest.mark.parametrize("plain", ["s3cret", "", "pässwörd ✓", "x" * 200, "$6$looks$hashed"])
def test_new_hashes_verify_and_only_for_their_password(plain: str) -> None:
    hashed = hash_password(plain, rounds=5000)
    assert hashed.startswith("$6$") and looks_hashed(hashed)
    assert verify_password(plain, hashed)
    assert not verify_password(plain + "!", hashed)


def test_default_rounds_are_written_into_the_hash() -> None:
    hashed = hash_password("s3cret")
    assert hashed.startswith("$6$rounds=100000$")
    assert verify_password("s3cret", hashed)


def test_salts_are_fresh() -> None:
    assert hash_password("same", rounds=1000) != hash_password("same", rounds=1000)


@pytest.mark.parametrize("salt", ["has$dollar", "x" * 17, "spa ce"])
def test_bad_salts_are_refused(salt: str) -> None:
    with pytest.raises(ValueError, match="salt"):
        hash_password("p", salt=salt)


@pytest.mark.parametrize(
    "hashed", ["", "s3cret", "$1$abc$def", "$6$salt$tooshort", "$6$rounds=x$salt$" + "a" * 86]
)
def test_malformed_or_foreign_hashes_never_verify(hashed: str) -> None:
    assert not verify_password("s3cret", hashed)


@pytest.mark.parametrize(
    ("value", "hashed"),
    [
        ("$6$rounds=5000$abc$" + "a" * 86, True),
        ("$y$j9T$abc$def", True),
        ("$2b$12$abcdefghijklmnopqrstuv", True),
        ("hunter2", False),
        ("$notahash", False),
        ("", False),
    ],
)
def test_looks_hashed(value: str, hashed: bool) -> None:
    assert looks_hashed(value) is hashed


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("plain", ["s3cret", "pässwörd ✓"])
def test_openssl_hashes_verify_and_agree(plain: str) -> None:
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", "Nv8cpRdXd4cqYND.", "-stdin"],
        input=plain.encode(),
        capture_output=True,
        check=True,
    )
    theirs = result.stdout.decode().strip()
    assert verify_password(plain, theirs)
    assert hash_password(plain, rounds=5000, salt="Nv8cpRdXd4cqYND.") == theirs
