"""The scalar values of a fleet file: names, addresses, sizes, text, keys and URLs.

Each is an annotated type whose validator refuses a malformed value with a message fit for
the user (pydantic puts it at the value's position). `models` builds the spec from these.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator

from vmfleet.spec.units import GIB, MIB, format_size, parse_duration, parse_size

# --- scalar types ---------------------------------------------------------------------------

# A DNS label: lowercase letters, digits and hyphens, not starting or ending with a hyphen.
# Nothing here can break out of XML, a file path or a shell word.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
WAIT_RE = re.compile(r"^(none|running|agent|ssh|cloud-init|command|port:\d{1,5})$")


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a name, got {type(value).__name__}")
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "at most 63 characters, not starting or ending with '-'"
        )
    return value


def _image_name(value: Any) -> str:
    """Image names may hold dots, as releases do (`ubuntu-24.04`); never `..` or a slash."""
    if not isinstance(value, str):
        raise ValueError(f"expected a name, got {type(value).__name__}")
    if not IMAGE_NAME_RE.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid image name: use lowercase letters, digits, '-' and '.', "
            "at most 63 characters, not starting or ending with '-' or '.'"
        )
    return value


def _power(value: Any) -> str:
    """`on` or `off`; YAML reads a bare on/off as a boolean, which means the same."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in ("on", "off"):
        return str(value)
    raise ValueError(f"{value!r} is not a power setting: use on or off")


def _mac(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a MAC address, got {type(value).__name__}")
    mac = value.strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ValueError(f"{value!r} is not a MAC address like 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address (first octet is odd)")
    if mac == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return mac


def _ipv4(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address, got {type(value).__name__}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR such as 192.168.88.0/24, got {value!r}")
    try:
        network = ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a network in CIDR form: {error}") from None
    if network.prefixlen > 30:
        raise ValueError(f"{value!r} is too small for VMs (/30 at most)")
    return str(network)


MIN_MEMORY = 16 * MIB  # below this no guest kernel boots; `memory: 1B` is a typo
MIN_DISK = MIB


def _at_least(size: int, minimum: int) -> int:
    if size < minimum:
        raise ValueError(f"{format_size(size)} is too small: at least {format_size(minimum)}")
    return size


def _memory(value: Any) -> int:
    return _at_least(parse_size(value, bare_unit=MIB), MIN_MEMORY)


def _disk(value: Any) -> int:
    return _at_least(parse_size(value, bare_unit=GIB), MIN_DISK)


def _count(value: Any) -> Any:
    # pydantic reads `true` as 1; a count written as a boolean is a mistake.
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got the boolean {str(value).lower()}")
    return value


def _control_characters(value: str, *, allowed: str) -> str | None:
    for char in value:
        if (ord(char) < 0x20 or ord(char) == 0x7F) and char not in allowed:
            return f"U+{ord(char):04X}"
    return None


def _line(value: Any) -> Any:
    """One line of text: no control characters (they break XML, YAML and shell words)."""
    if isinstance(value, str):
        bad = _control_characters(value, allowed="")
        if bad:
            raise ValueError(f"{value!r} holds the control character {bad}; use plain text")
    return value


def _text(value: Any) -> Any:
    """Free text that may span lines: tabs and newlines, no other control characters."""
    if isinstance(value, str):
        bad = _control_characters(value, allowed="\t\n")
        if bad:
            raise ValueError(
                f"{value!r} holds the control character {bad}; only tab and newline may appear"
            )
    return value


SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)"
    r"|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
    r" AAAA[A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]*)?$"
)


def _ssh_key(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not SSH_KEY_RE.match(value.strip()):
        hint = (
            " (that looks like a file path: give the key's text, the line in the .pub file)"
            if value.strip().startswith(("/", "~", "."))
            else ""
        )
        raise ValueError(
            f"{value[:40]!r} is not one SSH public key such as 'ssh-ed25519 AAAA... comment' "
            f"(types: ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*; one line){hint}"
        )
    return value.strip()


def _http_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or re.search(r"[\s\"';\x00-\x1f\x7f]", value)
    ):
        raise ValueError(
            f"{value!r} is not an http:// or https:// URL such as http://10.0.0.1:3142"
        )
    return value


def _reserved(value: Any) -> Any:
    """One `reserved:` entry: an address, a CIDR, or a range `first-last` (first <= last)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an address, CIDR or range, got {value!r}")
    try:
        if "-" in value:
            first, last = (ipaddress.IPv4Address(x.strip()) for x in value.split("-", 1))
            if first > last:
                raise ValueError(f"range {value!r} is reversed: write {last}-{first}")
            return f"{first}-{last}"
        if "/" in value:
            return str(ipaddress.IPv4Network(value.strip(), strict=False))
        return str(ipaddress.IPv4Address(value.strip()))
    except ipaddress.AddressValueError:
        raise ValueError(
            f"{value!r} is not an address, a CIDR or a range like 192.168.88.2-192.168.88.9"
        ) from None
    except ipaddress.NetmaskValueError:
        raise ValueError(f"{value!r} is not a CIDR") from None


def _login_user(value: Any) -> Any:
    if value == "root":
        raise ValueError(
            "root cannot be the login user: vmfleet creates this user with sudo rights and "
            "logs in as it; choose another name (it gets passwordless sudo)"
        )
    return value


def _duration(value: Any) -> float:
    return parse_duration(value)


def _wait(value: Any) -> str:
    if not isinstance(value, str) or not WAIT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a readiness check: use none, running, agent, ssh, cloud-init, "
            "command or port:N"
        )
    if value.startswith("port:") and not 0 < int(value[5:]) < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return value


Name = Annotated[str, BeforeValidator(_name)]
ImageName = Annotated[str, BeforeValidator(_image_name)]
Power = Annotated[str, BeforeValidator(_power)]
Mac = Annotated[str, BeforeValidator(_mac)]
IPv4 = Annotated[str, BeforeValidator(_ipv4)]
Cidr = Annotated[str, BeforeValidator(_cidr)]
Count = Annotated[int, BeforeValidator(_count)]
Line = Annotated[str, BeforeValidator(_line)]
Text = Annotated[str, BeforeValidator(_text)]
SshKey = Annotated[str, BeforeValidator(_ssh_key)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]
Reserved = Annotated[str, BeforeValidator(_reserved)]
LoginUser = Annotated[Name, BeforeValidator(_login_user)]
MemorySize = Annotated[int, BeforeValidator(_memory)]
DiskSize = Annotated[int, BeforeValidator(_disk)]
Duration = Annotated[float, BeforeValidator(_duration)]
WaitFor = Annotated[str, BeforeValidator(_wait)]
Labels = dict[str, str]


def check_labels(labels: dict[str, Any] | None) -> dict[str, str] | None:
    if labels is None:
        return None
    if not isinstance(labels, dict):
        raise ValueError("labels must be a mapping of key: 'text' (e.g. {tier: web})")
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ValueError(f"label key {key!r} is not valid")
        if not isinstance(value, str):
            kind = "a boolean" if isinstance(value, bool) else f"a {type(value).__name__}"
            raise ValueError(
                f"label value for {key!r} is {kind}, not text (YAML reads yes, no, true, "
                f"false and numbers so): quote it, e.g. {key}: '{value}'"
            )
        text = value
        if not LABEL_VALUE_RE.match(text):
            raise ValueError(f"label value {text!r} for {key!r} is not valid")
        out[key] = text
    return out


def one_or_list(value: Any) -> Any:
    """A single address where a list of one per replica is expected: `ips: 10.0.0.5`."""
    return [value] if isinstance(value, str) else value
