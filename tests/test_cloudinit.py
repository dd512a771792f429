"""cloud-init documents: each feature of a SeedRequest, templates (merge/replace), networks.

Where Debian's cloud-init package can be fetched (apt-get download, never installed), the
rendered documents are also checked by cloud-init itself: user-data against its schema,
network-config through its network-state parser and renderers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vmfleet.drivers.cloudinit import (
    APT_PROXY_FILE,
    HostKey,
    NicNetwork,
    SeedRequest,
    WriteFile,
    deep_merge,
    render_meta_data,
    render_network_config,
    render_user_data,
)
from vmfleet.drivers.secrets import hash_password, verify_password
from vmfleet.errors import SpecError

PLAIN_PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PLAIN_PASSWORD, rounds=1000)
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2sga2V5 root@gateway1"
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXIga2V5 me@laptop"

BASE = SeedRequest(instance_id="lab-gateway1", hostname="gateway1", user="ubuntu")

# The deployment guide's gateway: LAN with the default route, internal network without.
LAN = NicNetwork(
    mac="52:54:00:12:34:10",
    name="ens160",
    addresses=("192.168.68.10/24",),
    gateway="192.168.68.1",
    dns=("192.168.68.1", "1.1.1.1"),
    dns_search=("lab.test",),
)
INTERNAL = NicNetwork(mac="52:54:00:12:34:20", name="ens192", addresses=("10.10.0.10/24",))

FULL = replace(
    BASE,
    fqdn="gateway1.lab.test",
    ssh_authorized_keys=(USER_KEY,),
    password_hash=PASSWORD_HASH,
    packages=("qemu-guest-agent", "curl", "nginx"),
    apt_proxy="http://10.10.0.148:3142",
    write_files=(
        WriteFile(path="/etc/motd", content="welcome\n"),
        WriteFile(
            path="/home/ubuntu/.bashrc.d/lab",
            content="export LAB=1\n",
            owner="ubuntu:ubuntu",
            permissions="600",
            defer=True,
        ),
    ),
    runcmd=("echo ready > /run/ready", ("systemctl", "enable", "--now", "qemu-guest-agent")),
    host_keys=(HostKey(type="ed25519", private=PRIVATE_KEY, public=PUBLIC_KEY),),
    nics=(LAN, INTERNAL),
)


def _user_data(req: SeedRequest) -> dict[str, Any]:
    text = render_user_data(req)
    assert text.startswith("#cloud-config\n")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def _network(req: SeedRequest) -> dict[str, Any]:
    text = render_network_config(req)
    assert text is not None
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


# --------------------------------------------------------------------------- user-data


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({}, "hostname", "gateway1"),
        ({}, "manage_etc_hosts", True),
        ({"fqdn": "gateway1.lab.test"}, "fqdn", "gateway1.lab.test"),
        ({"packages": ("curl", "vim")}, "packages", ["curl", "vim"]),
        ({"packages": ("curl",)}, "package_update", True),
        ({"runcmd": ("a b", ("c", "d e"))}, "runcmd", ["a b", ["c", "d e"]]),
        (
            {"apt_proxy": "http://10.10.0.148:3142"},
            "apt",
            {"http_proxy": "http://10.10.0.148:3142"},
        ),
        (
            {"apt_proxy": "http://p:3142", "apt_https_proxy": "http://p:3143"},
            "apt",
            {"http_proxy": "http://p:3142", "https_proxy": "http://p:3143"},
        ),
        (
            {"host_keys": (HostKey(type="ed25519", private=PRIVATE_KEY, public=PUBLIC_KEY),)},
            "ssh_keys",
            {"ed25519_private": PRIVATE_KEY, "ed25519_public": PUBLIC_KEY},
        ),
        (
            {"host_keys": (HostKey(type="ed25519", private=PRIVATE_KEY, public=PUBLIC_KEY),)},
            "ssh_deletekeys",
            True,
        ),
    ],
    ids=[
        "hostname",
        "etc-hosts",
        "fqdn",
        "packages",
        "packages-update-index",
        "runcmd-strings-and-argv",
        "apt-http-proxy",
        "apt-https-proxy",
        "host-keys",
        "host-keys-replace-image-keys",
    ],
)
def test_user_data_feature(changes: dict[str, Any], key: str, expected: object) -> None:
    assert _user_data(replace(BASE, **changes))[key] == expected


@pytest.mark.parametrize(
    ("changes", "expected_user"),
    [
        (
            {},
            {
                "name": "ubuntu",
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
            },
        ),
        ({"sudo_nopasswd": False}, {"sudo": "ALL=(ALL) ALL"}),
        ({"password_hash": PASSWORD_HASH}, {"lock_passwd": False, "hashed_passwd": PASSWORD_HASH}),
        ({"ssh_authorized_keys": (USER_KEY,)}, {"ssh_authorized_keys": [USER_KEY]}),
        ({"user": "vmfleet"}, {"name": "vmfleet"}),
    ],
    ids=["defaults", "sudo-with-password", "password-hash", "authorized-keys", "user-name"],
)
def test_login_user(changes: dict[str, Any], expected_user: dict[str, Any]) -> None:
    (user,) = _user_data(replace(BASE, **changes))["users"]
    assert expected_user.items() <= user.items()


def test_apt_proxy_is_also_written_as_01proxy_like_the_guide() -> None:
    data = _user_data(replace(BASE, apt_proxy="http://10.10.0.148:3142"))
    (proxy_file,) = [f for f in data["write_files"] if f["path"] == APT_PROXY_FILE]
    assert proxy_file["content"] == 'Acquire::http::Proxy "http://10.10.0.148:3142";\n'


def test_write_files_keep_content_mode_owner_and_defer() -> None:
    files = _user_data(FULL)["write_files"]
    assert [f["path"] for f in files] == [APT_PROXY_FILE, "/etc/motd", "/home/ubuntu/.bashrc.d/lab"]
    assert files[2] == {
        "path": "/home/ubuntu/.bashrc.d/lab",
        "content": "export LAB=1\n",
        "permissions": "0600",
        "owner": "ubuntu:ubuntu",
        "defer": True,
    }


def test_the_plain_password_appears_nowhere() -> None:
    documents = [render_user_data(FULL), render_meta_data(FULL), render_network_config(FULL)]
    assert all(PLAIN_PASSWORD not in (doc or "") for doc in documents)
    (user,) = yaml.safe_load(documents[0])["users"]
    assert verify_password(PLAIN_PASSWORD, user["hashed_passwd"])
    assert "passwd" not in user and "plain_text_passwd" not in user


@settings(max_examples=300, deadline=None)
@given(content=st.text() | st.text(alphabet="\n\r\t \x85\u2028'\":#-|>", max_size=12))
def test_any_file_content_round_trips_through_yaml(content: str) -> None:
    req = replace(BASE, write_files=(WriteFile(path="/etc/x", content=content),))
    assert _user_data(req)["write_files"][0]["content"] == content


# --------------------------------------------------------------------------- meta-data


def test_meta_data() -> None:
    assert yaml.safe_load(render_meta_data(BASE)) == {
        "instance-id": "lab-gateway1",
        "local-hostname": "gateway1",
    }


# --------------------------------------------------------------------------- network-config


def test_no_nics_means_no_network_config() -> None:
    assert render_network_config(BASE) is None


def test_dual_homed_gateway() -> None:
    """LAN NIC with the default route and DNS; internal NIC with an address only."""
    network = _network(replace(BASE, nics=(LAN, INTERNAL)))
    assert network["version"] == 2
    assert network["ethernets"] == {
        "ens160": {
            "match": {"macaddress": "52:54:00:12:34:10"},
            "set-name": "ens160",
            "dhcp4": False,
            "addresses": ["192.168.68.10/24"],
            "routes": [{"to": "0.0.0.0/0", "via": "192.168.68.1"}],
            "nameservers": {"addresses": ["192.168.68.1", "1.1.1.1"], "search": ["lab.test"]},
        },
        "ens192": {
            "match": {"macaddress": "52:54:00:12:34:20"},
            "set-name": "ens192",
            "dhcp4": False,
            "addresses": ["10.10.0.10/24"],
        },
    }
    assert "gateway4" not in str(network)


@pytest.mark.parametrize(
    ("nic", "expected"),
    [
        (
            NicNetwork(mac="52:54:00:AA:00:01"),
            {"match": {"macaddress": "52:54:00:aa:00:01"}, "dhcp4": True},
        ),
        (
            NicNetwork(mac="52:54:00:aa:00:01", mtu=1400),
            {"match": {"macaddress": "52:54:00:aa:00:01"}, "dhcp4": True, "mtu": 1400},
        ),
        (
            NicNetwork(mac="52:54:00:aa:00:01", addresses=("10.0.0.5/24",), dhcp4=True),
            {
                "match": {"macaddress": "52:54:00:aa:00:01"},
                "dhcp4": True,
                "addresses": ["10.0.0.5/24"],
            },
        ),
        (
            NicNetwork(mac="52:54:00:aa:00:01", addresses=("fd00::5/64",), gateway="fd00::1"),
            {
                "match": {"macaddress": "52:54:00:aa:00:01"},
                "dhcp4": False,
                "addresses": ["fd00::5/64"],
                "routes": [{"to": "::/0", "via": "fd00::1"}],
            },
        ),
    ],
    ids=["dhcp-when-no-address", "mtu", "static-and-dhcp", "ipv6-default-route"],
)
def test_nic_network(nic: NicNetwork, expected: dict[str, Any]) -> None:
    assert _network(replace(BASE, nics=(nic,)))["ethernets"]["nic0"] == expected


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: replace(BASE, password_hash=PLAIN_PASSWORD), "plain password"),
        (lambda: replace(BASE, user="root"), "root"),
        (lambda: replace(BASE, user="Bad User"), "user name"),
        (lambda: replace(BASE, hostname="gate_way"), "hostname"),
        (lambda: replace(BASE, apt_proxy="10.10.0.148:3142"), "proxy"),
        (lambda: replace(BASE, apt_proxy='http://p:1";\nAcquire::x "y'), "proxy"),
        (
            lambda: replace(
                BASE,
                host_keys=(
                    HostKey(type="ed25519", private=PRIVATE_KEY, public=PUBLIC_KEY),
                    HostKey(type="ed25519", private=PRIVATE_KEY, public=PUBLIC_KEY),
                ),
            ),
            "one host key per type",
        ),
        (lambda: HostKey(type="rsa", private="not a key", public=PUBLIC_KEY), "PEM"),
        (lambda: NicNetwork(mac="52:54:00:aa:00"), "MAC"),
        (lambda: NicNetwork(mac="52:54:00:aa:00:01", addresses=("10.0.0.5",)), "prefix"),
        (
            lambda: NicNetwork(
                mac="52:54:00:aa:00:01", addresses=("10.0.0.5/24",), gateway="10.0.1.1"
            ),
            "none of its subnets",
        ),
        (lambda: NicNetwork(mac="52:54:00:aa:00:01", gateway="10.0.1.1"), "none of its subnets"),
        (
            lambda: replace(BASE, nics=(LAN, replace(INTERNAL, gateway="10.10.0.1"))),
            "more than one NIC has a gateway",
        ),
        (lambda: replace(BASE, nics=(LAN, LAN)), "duplicate MAC"),
        (lambda: WriteFile(path="relative", content=""), "absolute"),
        (lambda: WriteFile(path="/x", content="", permissions="rw"), "permissions"),
    ],
)
def test_invalid_requests_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --------------------------------------------------------------------------- templates

USER_TEMPLATE = """#cloud-config
timezone: {{ timezone }}
packages:
{% for p in extra_packages %}
  - {{ p }}
{% endfor %}
runcmd:
  - echo {{ greeting | default('hello') }}
users:
  - name: ops
"""
TEMPLATE_VARS = {"timezone": "Europe/Stockholm", "extra_packages": ["vim", "htop"]}


def test_merge_lays_the_users_document_over_ours() -> None:
    req = replace(
        BASE,
        packages=("curl",),
        runcmd=("echo ours",),
        user_template=USER_TEMPLATE,
        template_vars=TEMPLATE_VARS,
    )
    data = _user_data(req)
    assert data["timezone"] == "Europe/Stockholm"
    assert data["packages"] == ["curl", "vim", "htop"]  # lists: ours, then theirs
    assert data["runcmd"] == ["echo ours", "echo hello"]
    assert [u["name"] for u in data["users"]] == ["ubuntu", "ops"]
    assert data["hostname"] == "gateway1"  # ours kept where they say nothing


def test_merge_lets_the_user_override_scalars_and_extend_mappings() -> None:
    req = replace(
        BASE,
        apt_proxy="http://p:3142",
        user_template="hostname: other\napt:\n  https_proxy: http://p:3143\n",
    )
    data = _user_data(req)
    assert data["hostname"] == "other"
    assert data["apt"] == {"http_proxy": "http://p:3142", "https_proxy": "http://p:3143"}


def test_replace_uses_the_users_document_as_it_is() -> None:
    req = replace(
        BASE,
        packages=("curl",),
        user_template=USER_TEMPLATE,
        template_vars=TEMPLATE_VARS,
        template_mode="replace",
    )
    text = render_user_data(req)
    data = yaml.safe_load(text)
    assert "hostname" not in data and data["packages"] == ["vim", "htop"]
    assert text.startswith("#cloud-config\n")


def test_replace_passes_a_shell_script_through() -> None:
    script = "#!/bin/sh\necho {{ name }}\n"
    req = replace(BASE, user_template=script, template_vars={"name": "x"}, template_mode="replace")
    assert render_user_data(req) == "#!/bin/sh\necho x\n"


@pytest.mark.parametrize(
    ("template", "mode", "line", "message"),
    [
        ("a: 1\nb: {{ missing }}\n", "merge", 2, "'missing' is undefined"),
        ("a: 1\n{% if %}\n", "merge", 2, "template syntax"),
        ("a: 1\n\nb: {{ 1 // 0 }}\n", "merge", 3, "ZeroDivisionError"),
        ("{{ ''.__class__.__mro__ }}", "merge", 1, "unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "merge", 1, "unsafe"),
        ("a: [1\n", "merge", 1, "not YAML"),
        ("- a\n- b\n", "merge", 1, "mapping"),
        ("hostname: x\n", "replace", 1, "header"),
    ],
    ids=[
        "undefined",
        "syntax",
        "runtime",
        "sandbox-dunder",
        "sandbox-globals",
        "bad-yaml",
        "not-a-mapping",
        "replace-without-header",
    ],
)
def test_template_errors_name_the_file_and_line(
    template: str, mode: str, line: int, message: str
) -> None:
    req = replace(
        BASE,
        user_template=template,
        user_template_source="templates/cloud-init-gateway.yaml.j2",
        template_mode=mode,  # type: ignore[arg-type]
    )
    with pytest.raises(SpecError) as raised:
        render_user_data(req)
    (problem,) = raised.value.problems
    assert problem.position is not None
    assert problem.position.file == "templates/cloud-init-gateway.yaml.j2"
    assert problem.position.line == line
    assert message in problem.message
    assert problem.field == "cloud_init.user_data"


def test_template_error_without_a_file_has_no_position() -> None:
    with pytest.raises(SpecError) as raised:
        render_user_data(replace(BASE, user_template="x: {{ nope }}"))
    assert raised.value.problems[0].position is None


def test_template_cannot_change_the_variables_it_is_given() -> None:
    variables = {"items": [1]}
    req = replace(BASE, user_template="x: {{ items.append(2) }}", template_vars=variables)
    with pytest.raises(SpecError):
        render_user_data(req)
    assert variables == {"items": [1]}


@pytest.mark.parametrize(
    ("base", "over", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": [1]}, {"a": [2]}, {"a": [1, 2]}),
        ({"a": {"x": 1, "y": 1}}, {"a": {"y": 2}}, {"a": {"x": 1, "y": 2}}),
        ({"a": [1]}, {"a": {"x": 1}}, {"a": {"x": 1}}),
        (
            {"a": {"b": {"c": [1]}}},
            {"a": {"b": {"c": [2], "d": 3}}},
            {"a": {"b": {"c": [1, 2], "d": 3}}},
        ),
    ],
    ids=["new-key", "scalar-replaced", "list-appended", "mapping-merged", "type-change", "deep"],
)
def test_deep_merge(base: dict[str, Any], over: dict[str, Any], expected: dict[str, Any]) -> None:
    before = repr(base), repr(over)
    assert deep_merge(base, over) == expected
    assert (repr(base), repr(over)) == before  # inputs untouched


# --------------------------------------------------------------------------- cloud-init itself

_CHECKER = """
import json, sys, warnings
warnings.simplefilter("ignore")
import yaml
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.net import eni, netplan, networkd
from cloudinit.net.network_state import parse_net_config_data

kind, path = sys.argv[1], sys.argv[2]
text = open(path).read()
if kind == "user-data":
    validate_cloudconfig_schema(yaml.safe_load(text), get_schema(), strict=True)
    print(json.dumps({"ok": True}))
else:
    state = parse_net_config_data(yaml.safe_load(text), skip_broken=False)
    print(json.dumps({
        "netplan": netplan.Renderer(config={})._render_content(state),
        "eni": eni.Renderer(config={})._render_interfaces(state),
        "networkd": networkd.Renderer(config={})._render_content(state),
    }))
"""


@pytest.fixture(scope="session")
def cloud_init_python(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A command running Python with Debian's cloud-init importable; skips when unavailable.

    The package is downloaded and unpacked, never installed on the host (it would change
    how the host boots). Its `configobj` import is stubbed: the schema never uses it.
    """
    python = sys.executable  # jsonschema and PyYAML, which cloud-init needs, are dev deps
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("no apt-get/dpkg-deb to unpack cloud-init with")
    work = tmp_path_factory.mktemp("cloud-init")
    try:
        subprocess.run(
            ["apt-get", "download", "-q", "cloud-init"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )
        (deb,) = work.glob("cloud-init_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True, timeout=60)
    except (subprocess.SubprocessError, ValueError) as exc:
        pytest.skip(f"cloud-init package not available: {exc}")
    stub = work / "stub"
    stub.mkdir()
    (stub / "configobj.py").write_text("class ConfigObj:\n    pass\n")
    checker = work / "check.py"
    checker.write_text(_CHECKER)
    site = work / "root" / "usr" / "lib" / "python3" / "dist-packages"
    return ["env", f"PYTHONPATH={site}:{stub}", python, str(checker)]


def _check(command: list[str], kind: str, text: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / kind
    path.write_text(text)
    result = subprocess.run(
        [*command, kind, str(path)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "req",
    [
        BASE,
        FULL,
        replace(FULL, sudo_nopasswd=False, apt_https_proxy="http://10.10.0.148:3142"),
        replace(FULL, user_template=USER_TEMPLATE, template_vars=TEMPLATE_VARS),
    ],
    ids=["minimal", "full", "full-variant", "merged-template"],
)
def test_user_data_passes_cloud_inits_schema(
    cloud_init_python: list[str], req: SeedRequest, tmp_path: Path
) -> None:
    assert _check(cloud_init_python, "user-data", render_user_data(req), tmp_path)["ok"]


def test_network_config_renders_with_cloud_init(
    cloud_init_python: list[str], tmp_path: Path
) -> None:
    nics = (LAN, INTERNAL, NicNetwork(mac="52:54:00:12:34:30"))
    text = render_network_config(replace(BASE, nics=nics))
    assert text is not None
    rendered = _check(cloud_init_python, "network-config", text, tmp_path)
    assert "via: 192.168.68.1" in rendered["netplan"]
    assert "route add default gw 192.168.68.1" in rendered["eni"]
    assert "iface nic2 inet dhcp" in rendered["eni"]
    assert "Gateway=192.168.68.1" in rendered["networkd"]["ens160"]
