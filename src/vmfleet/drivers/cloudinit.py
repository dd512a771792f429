"""cloud-init documents for a VM's NoCloud seed: user-data, meta-data, network-config.

Pure functions: a `SeedRequest` in, YAML text out, no I/O. What they write:

- user-data (`#cloud-config`): hostname, one login user (sudo, SSH keys, optional password
  *hash*, never a plain password), SSH host keys, an APT proxy (cloud-init's `apt:` setting
  and `/etc/apt/apt.conf.d/01proxy`, as the deployment guide does), packages, files, commands.
  A user's own user-data can be given as a Jinja2 template; it is rendered in a sandbox
  with StrictUndefined and then deep-merged over ours (`merge`) or used instead (`replace`).
- meta-data: `instance-id` and `local-hostname`.
- network-config (version 2): one `ethernets` entry per NIC, matched by MAC, static
  addresses with a default route (`routes: [{to: 0.0.0.0/0, via: ...}]`, not the
  deprecated `gateway4`) and DNS, or DHCP.

The request checks its own invariants (a malformed address, a gateway off every subnet,
a plain password where a hash goes) and raises `ValueError`: such input should have been
refused when the spec was loaded. A broken user template raises `SpecError`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from vmfleet.drivers.secrets import looks_hashed
from vmfleet.errors import Position, Problem, SpecError

HostKeyType = Literal["rsa", "ecdsa", "ed25519"]
TemplateMode = Literal["merge", "replace"]

TEMPLATE_FIELD = "cloud_init.user_data"
APT_PROXY_FILE = "/etc/apt/apt.conf.d/01proxy"

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]*\$?$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
_USER_DATA_HEADERS = ("#cloud-config", "#!", "#include", "#cloud-boothook", "Content-Type:")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteFile:
    """A file cloud-init writes; `defer` waits until users exist (for a file they own)."""

    path: str
    content: str
    permissions: str = "0644"
    owner: str = "root:root"
    defer: bool = False

    def __post_init__(self) -> None:
        _require(self.path.startswith("/"), f"write_files path must be absolute: {self.path!r}")
        _require(bool(_MODE_RE.match(self.permissions)), f"bad permissions: {self.permissions!r}")

    def to_dict(self) -> dict[str, Any]:
        """The `write_files` entry."""
        entry: dict[str, Any] = {
            "path": self.path,
            "content": self.content,
            "permissions": self.permissions
            if self.permissions.startswith("0")
            else "0" + self.permissions,
            "owner": self.owner,
        }
        if self.defer:
            entry["defer"] = True
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKey:
    """An SSH host key pair to install, so the guest's identity is known before it boots."""

    type: HostKeyType
    private: str
    public: str

    def __post_init__(self) -> None:
        _require("PRIVATE KEY-----" in self.private, f"{self.type}: private is not a PEM key")
        _require("\n" not in self.public.strip(), f"{self.type}: public must be one line")


@dataclass(frozen=True, slots=True, kw_only=True)
class NicNetwork:
    """The guest-side network settings of one NIC, found by its MAC.

    `addresses` are `ip/prefix` (IPv4 or IPv6). `dhcp4` None means DHCP exactly when there
    is no static address. `gateway` becomes the default route; it must lie in one of the
    NIC's subnets. `name` renames the interface (`set-name`), else the guest's own name stays.
    `mtu` sets the interface's MTU in the guest (None: the guest's default, or DHCP's).
    """

    mac: str
    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dhcp4: bool | None = None
    name: str | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", self.mac.lower())
        _require(bool(_MAC_RE.match(self.mac)), f"not a MAC address: {self.mac!r}")
        interfaces = []
        for address in self.addresses:
            _require("/" in address, f"{self.mac}: address needs a prefix: {address!r}")
            interfaces.append(ipaddress.ip_interface(address))
        for server in self.dns:
            ipaddress.ip_address(server)
        if self.gateway is not None:
            gateway = ipaddress.ip_address(self.gateway)
            _require(
                any(gateway in interface.network for interface in interfaces),
                f"{self.mac}: gateway {self.gateway} is in none of its subnets {self.addresses}",
            )
        if self.name is not None:
            _require(
                bool(re.match(r"^[A-Za-z0-9_.-]{1,15}$", self.name)),
                f"bad interface name: {self.name!r}",
            )

    @property
    def uses_dhcp4(self) -> bool:
        """Whether the guest asks DHCP for an IPv4 address on this NIC."""
        return not self.addresses if self.dhcp4 is None else self.dhcp4

    def to_dict(self) -> dict[str, Any]:
        """The `ethernets` entry (network-config version 2)."""
        entry: dict[str, Any] = {"match": {"macaddress": self.mac}}
        if self.name is not None:
            entry["set-name"] = self.name
        entry["dhcp4"] = self.uses_dhcp4
        if self.mtu is not None:
            entry["mtu"] = self.mtu
        if self.addresses:
            entry["addresses"] = list(self.addresses)
        if self.gateway is not None:
            # `0.0.0.0/0` rather than the keyword `default`: cloud-init 22.4 (Debian 12)
            # rejects `default` when it renders for ifupdown or networkd instead of netplan.
            family = ipaddress.ip_address(self.gateway).version
            default = "0.0.0.0/0" if family == 4 else "::/0"
            entry["routes"] = [{"to": default, "via": self.gateway}]
        if self.dns or self.dns_search:
            nameservers: dict[str, Any] = {}
            if self.dns:
                nameservers["addresses"] = list(self.dns)
            if self.dns_search:
                nameservers["search"] = list(self.dns_search)
            entry["nameservers"] = nameservers
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedRequest:
    """Everything that goes into one VM's cloud-init documents.

    `user` is the login account vmfleet creates (required: images differ). `password_hash`
    must already be a crypt hash (see `vmfleet.drivers.secrets.hash_password`); a plain
    password is refused. `sudo_nopasswd` False still grants sudo, but asking the password.
    `apt_proxy` (`http://host:port`) is used for HTTP repositories; `apt_https_proxy` only
    when given (apt-cacher-ng, say, does not proxy HTTPS unless configured to).
    `runcmd` items are shell strings or argv tuples. `user_template` is the user's own
    user-data as Jinja2 text, rendered with `template_vars`; `user_template_source` names
    its file in error messages.
    """

    instance_id: str
    hostname: str
    user: str
    fqdn: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    password_hash: str | None = None
    sudo_nopasswd: bool = True
    packages: tuple[str, ...] = ()
    apt_proxy: str | None = None
    apt_https_proxy: str | None = None
    write_files: tuple[WriteFile, ...] = ()
    runcmd: tuple[str | tuple[str, ...], ...] = ()
    host_keys: tuple[HostKey, ...] = ()
    nics: tuple[NicNetwork, ...] = ()
    user_template: str | None = None
    user_template_source: str | None = None
    template_mode: TemplateMode = "merge"
    template_vars: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(self.instance_id), "instance_id must not be empty")
        _require(bool(_HOSTNAME_RE.match(self.hostname)), f"bad hostname: {self.hostname!r}")
        _require(bool(_NAME_RE.match(self.user)), f"bad user name: {self.user!r}")
        _require(self.user != "root", "the login user cannot be root")
        if self.password_hash is not None:
            _require(
                looks_hashed(self.password_hash),
                "password_hash is not a crypt hash (a plain password is never accepted)",
            )
        for proxy in (self.apt_proxy, self.apt_https_proxy):
            if proxy is not None:
                parts = urlsplit(proxy)
                _require(
                    parts.scheme in ("http", "https")
                    and bool(parts.hostname)
                    and not re.search(r"[\s\"';]", proxy),
                    f"bad APT proxy URL: {proxy!r}",
                )
        types = [key.type for key in self.host_keys]
        _require(len(types) == len(set(types)), f"one host key per type: {types}")
        macs = [nic.mac for nic in self.nics]
        _require(len(macs) == len(set(macs)), f"duplicate MACs in nics: {macs}")
        gateways = [nic.mac for nic in self.nics if nic.gateway is not None]
        _require(len(gateways) <= 1, f"more than one NIC has a gateway: {gateways}")


def render_user_data(req: SeedRequest) -> str:
    """The user-data document: `#cloud-config` and YAML, or the user's own in `replace` mode.

    In `merge` mode the rendered template must be a YAML mapping; it is laid over ours:
    mappings merge key by key, lists are appended to ours, other values replace ours.
    In `replace` mode the rendered text is returned as it is, and must begin with a header
    cloud-init knows (`#cloud-config`, `#!`, ...); a `#cloud-config` one must parse.
    Raises `SpecError` for a template that does not render or parse.
    """
    ours = _our_user_data(req)
    if req.user_template is None:
        return _cloud_config(ours)
    rendered = render_template(
        req.user_template, variables=req.template_vars, source=req.user_template_source
    )
    if req.template_mode == "replace":
        stripped = rendered.lstrip()
        if not stripped.startswith(_USER_DATA_HEADERS):
            raise _template_error(
                req.user_template_source,
                None,
                "replacing user-data needs a header cloud-init knows, such as #cloud-config",
            )
        if stripped.startswith("#cloud-config"):
            _load_mapping(rendered, source=req.user_template_source)
        return rendered
    theirs = _load_mapping(rendered, source=req.user_template_source)
    return _cloud_config(deep_merge(ours, theirs))


def render_meta_data(req: SeedRequest) -> str:
    """The meta-data document: `instance-id` (a new one re-runs first-boot) and hostname."""
    return _dump({"instance-id": req.instance_id, "local-hostname": req.hostname})


def render_network_config(req: SeedRequest) -> str | None:
    """network-config version 2 for the request's NICs; None when it names none.

    None leaves networking to cloud-init's fallback (DHCP on the first NIC). Each NIC is
    an `ethernets` entry keyed by its `name`, else `nicN` (N its position), matched by MAC.
    Without a `name`, netplan guests keep the kernel's interface name, while cloud-init's
    ifupdown and networkd renderers rename the interface to the key (`nicN`).
    """
    if not req.nics:
        return None
    ethernets = {
        nic.name if nic.name is not None else f"nic{index}": nic.to_dict()
        for index, nic in enumerate(req.nics)
    }
    # No top-level `network:` key: the NoCloud file format every cloud-init version reads.
    return _dump({"version": 2, "ethernets": ethernets})


def render_template(
    template: str, *, variables: Mapping[str, Any], source: str | None = None
) -> str:
    """Render a user's Jinja2 text in a sandbox; any undefined name is an error.

    Raises `SpecError` naming `source` (the template's file) and, where Jinja2 knows it,
    the template line.
    """
    # Imported here: most fleets have no template, and Jinja2 is a noticeable share of start-up.
    import jinja2
    import jinja2.sandbox

    name = source or "<user-data template>"
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        # The loader gives the template a file name, so Jinja2's traceback frames carry it
        # and a runtime error can be traced to its template line.
        loader=jinja2.FunctionLoader(lambda _: (template, name, lambda: True)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    try:
        return env.get_template(name).render(dict(variables))
    except jinja2.TemplateSyntaxError as exc:
        raise _template_error(source, exc.lineno, f"template syntax: {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise _template_error(source, _template_line(exc, name), f"template: {exc}") from exc
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        line = _template_line(exc, name)
        raise _template_error(source, line, f"template: {type(exc).__name__}: {exc}") from exc


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: mappings merge recursively, lists concatenate, the rest replaces.

    Neither input is changed. A key whose types differ on the two sides takes `over`'s value.
    """
    merged: dict[str, Any] = dict(base)
    for key, value in over.items():
        mine = merged.get(key)
        if isinstance(mine, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(mine, value)
        elif isinstance(mine, list) and isinstance(value, list):
            merged[key] = [*mine, *value]
        else:
            merged[key] = value
    return merged


def _our_user_data(req: SeedRequest) -> dict[str, Any]:
    data: dict[str, Any] = {"hostname": req.hostname}
    if req.fqdn is not None:
        data["fqdn"] = req.fqdn
    data["manage_etc_hosts"] = True
    user: dict[str, Any] = {
        "name": req.user,
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL" if req.sudo_nopasswd else "ALL=(ALL) ALL",
        "lock_passwd": req.password_hash is None,
    }
    if req.password_hash is not None:
        user["hashed_passwd"] = req.password_hash
    if req.ssh_authorized_keys:
        user["ssh_authorized_keys"] = list(req.ssh_authorized_keys)
    data["users"] = [user]
    if req.password_hash is not None:
        # A password is given to be used: the replicas doc logs in with it (`ssh-pass`).
        data["ssh_pwauth"] = True
    if req.host_keys:
        # cloud-init deletes the image's host keys (ssh_deletekeys) and, with `ssh_keys`
        # given, installs these and generates none (it reads `ssh_genkeytypes` only when
        # `ssh_keys` is absent; its schema refuses an empty list, so it is left out).
        data["ssh_deletekeys"] = True
        keys: dict[str, str] = {}
        for key in req.host_keys:
            keys[f"{key.type}_private"] = key.private
            keys[f"{key.type}_public"] = key.public.strip()
        data["ssh_keys"] = keys
    files = [f.to_dict() for f in req.write_files]
    if req.apt_proxy is not None or req.apt_https_proxy is not None:
        apt: dict[str, str] = {}
        lines = []
        if req.apt_proxy is not None:
            apt["http_proxy"] = req.apt_proxy
            lines.append(f'Acquire::http::Proxy "{req.apt_proxy}";')
        if req.apt_https_proxy is not None:
            apt["https_proxy"] = req.apt_https_proxy
            lines.append(f'Acquire::https::Proxy "{req.apt_https_proxy}";')
        data["apt"] = apt
        proxy_file = WriteFile(path=APT_PROXY_FILE, content="\n".join(lines) + "\n")
        files.insert(0, proxy_file.to_dict())
    if req.packages:
        data["package_update"] = True
        data["packages"] = list(req.packages)
    if files:
        data["write_files"] = files
    if req.runcmd:
        data["runcmd"] = [cmd if isinstance(cmd, str) else list(cmd) for cmd in req.runcmd]
    return data


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (PEM keys, file contents) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # YAML folds the other line breaks (CR, NEL, LS, PS) in plain, quoted and block
    # scalars; only double quotes keep them, as escapes.
    if any(char in value for char in "\r\x85\u2028\u2029"):
        style: str | None = '"'
    elif "\n" in value:
        style = "|"
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(data: Mapping[str, Any]) -> str:
    text: str = yaml.dump(
        dict(data),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    return text


def _cloud_config(data: Mapping[str, Any]) -> str:
    return "#cloud-config\n" + _dump(data)


def _load_mapping(text: str, *, source: str | None) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f" (rendered line {line})" if line is not None else ""
        raise _template_error(
            source, None, f"rendered user-data is not YAML{where}: {exc}"
        ) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise _template_error(source, None, "rendered user-data must be a YAML mapping")
    return loaded


def _template_line(exc: BaseException, name: str) -> int | None:
    """The template line Jinja2 put in the traceback (its frames carry the template name)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _template_error(source: str | None, line: int | None, message: str) -> SpecError:
    position = Position(file=source, line=line or 1, column=1) if source is not None else None
    if source is None and line is not None:
        message = f"line {line}: {message}"
    return SpecError([Problem(position=position, field=TEMPLATE_FIELD, message=message)])
