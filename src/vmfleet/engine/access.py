"""How to reach each VM: SSH endpoints, ssh_config blocks, Ansible inventories, IP lists.

The endpoint of a VM is its static or discovered address (port 22), or for a user-mode NIC
the 127.0.0.1 port forwarded to it. Host keys are verified from the first connection: the
fleet's known_hosts (in the state folder) holds each VM's key under its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vmfleet.core import groups, targets
from vmfleet.core.expand import Instance
from vmfleet.engine.apply import Observation, observe
from vmfleet.engine.context import FleetContext, default_uri
from vmfleet.engine.hostkeys import known_hosts_path, strict_host_keys
from vmfleet.engine.hostkeys import restore as restore_host_keys
from vmfleet.engine.operations import discover_ips
from vmfleet.engine.provision.ports import leased_port
from vmfleet.errors import GuestError


@dataclass(frozen=True, slots=True)
class Endpoint:
    vm: str
    template: str
    host: str
    state: str
    address: str | None
    port: int
    user: str
    key: Path | None  # None: the fleet key was not generated yet (no `up` so far)
    known_hosts: Path
    strict: bool
    proxy_jump: str | None

    def ssh_options(self) -> list[str]:
        """`-o` options: our key, our known_hosts, the VM's name as host key alias."""
        return [
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            f"HostKeyAlias={self.vm}",
            "-o",
            f"StrictHostKeyChecking={'yes' if self.strict else 'accept-new'}",
            "-o",
            "IdentitiesOnly=yes",
        ]


def resolve(ctx: FleetContext, target: str) -> list[Instance]:
    """The VMs a target names: `NAME@i`, a VM name, a template (all replicas), a group or
    `all` (`core.targets.resolve`)."""
    return targets.resolve(ctx.loaded.spec, ctx.instances(), target, fleet=ctx.fleet)


def endpoints(
    ctx: FleetContext, instances: list[Instance], observation: Observation | None = None
) -> list[Endpoint]:
    """Where each VM's SSH is, as things stand on the hosts now."""
    observation = observation or observe(ctx)
    seen = {o.name: o for o in observation.vms}
    if not ctx.store.readonly:  # after `.vmfleet/` was lost (read-only commands write nothing)
        for host_name in sorted({o.host for o in observation.vms}):
            restore_host_keys(ctx, ctx.host(host_name).list_domains(fleet=ctx.fleet))
    out = []
    for inst in instances:
        observed = seen.get(inst.name)
        host = observed.host if observed else ctx.place(inst)
        state = (
            observed.state
            if observed
            else ("unreachable" if host in observation.unreachable else "absent")
        )
        address: str | None = None
        port = 22
        proxy = None
        if any(n.mode == "user" for n in inst.nics):
            leased = leased_port(ctx, host=host, vm=inst.name)
            if leased is not None:  # none until `up` made the VM: no address yet
                address, port = "127.0.0.1", leased
            proxy = _proxy_jump(ctx, host)
        else:
            found = discover_ips(ctx, inst, observed)
            address = found[0] if found else None
        out.append(
            Endpoint(
                vm=inst.name,
                template=inst.template,
                host=host,
                state=state,
                address=address,
                port=port,
                user=inst.fields.cloud_init.user or ctx.loaded.spec.ssh.user,
                key=ctx.existing_ssh_key(),
                known_hosts=known_hosts_path(ctx),
                strict=strict_host_keys(ctx),
                proxy_jump=proxy,
            )
        )
    return out


def _proxy_jump(ctx: FleetContext, host: str) -> str | None:
    """A remote host's own SSH login, when its forwards listen on *its* 127.0.0.1."""
    uri = ctx.host_specs()[host].uri or default_uri()
    parts = urlsplit(uri)
    if not parts.hostname or parts.hostname in ("localhost", "127.0.0.1"):
        return None
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname}{port}"


def require_reachable(endpoint: Endpoint) -> None:
    """GuestError when a VM cannot be connected to now (not running, no address yet)."""
    if endpoint.state != "running":
        raise GuestError(f"is {endpoint.state}, not running (vmfleet up / start)", vm=endpoint.vm)
    if endpoint.address is None:
        raise GuestError(
            "has no reachable address yet (no static IP, lease or agent answer)", vm=endpoint.vm
        )


def ssh_argv(
    endpoint: Endpoint,
    *,
    password: bool = False,
    command: list[str] | None = None,
    tty: bool | None = None,
) -> list[str]:
    """The system ssh command line for one VM."""
    assert endpoint.address is not None
    argv = ["ssh", *endpoint.ssh_options(), "-p", str(endpoint.port)]
    if password:
        argv += [
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ]
    else:
        identity = [] if endpoint.key is None else ["-i", str(endpoint.key)]
        argv += [*identity, "-o", "BatchMode=yes"] if command else identity
    if endpoint.proxy_jump:
        argv += ["-J", endpoint.proxy_jump]
    if tty:
        argv.append("-t")
    argv.append(f"{endpoint.user}@{endpoint.address}")
    if command:
        argv += ["--", *command]
    return argv


def scp_argv(endpoint: Endpoint, paths: list[str], *, recursive: bool = False) -> list[str]:
    """The system scp command line copying `paths` (the last is the destination); a path
    `VM:rest` is on the VM and becomes `user@address:rest`. Same key and known_hosts as ssh."""
    assert endpoint.address is not None
    argv = ["scp", *endpoint.ssh_options(), "-P", str(endpoint.port), "-i", str(endpoint.key)]
    if endpoint.proxy_jump:
        argv += ["-J", endpoint.proxy_jump]
    if recursive:
        argv.append("-r")
    prefix = f"{endpoint.vm}:"
    remote = f"{endpoint.user}@{endpoint.address}:"
    converted = [remote + p.removeprefix(prefix) if p.startswith(prefix) else p for p in paths]
    return [*argv, "--", *converted]


def forward_argv(endpoint: Endpoint, *, local: int, remote: int) -> list[str]:
    """The system ssh command line forwarding 127.0.0.1:`local` to port `remote` on the VM
    (its own loopback), with no shell, until interrupted."""
    assert endpoint.address is not None
    argv = ["ssh", *endpoint.ssh_options(), "-p", str(endpoint.port), "-i", str(endpoint.key)]
    if endpoint.proxy_jump:
        argv += ["-J", endpoint.proxy_jump]
    argv += ["-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:localhost:{remote}"]
    return [*argv, f"{endpoint.user}@{endpoint.address}"]


def ssh_config(endpoints_: list[Endpoint]) -> str:
    """An ssh_config fragment: `Host NAME` blocks, so plain `ssh NAME` works."""
    blocks = []
    for ep in endpoints_:
        lines = [f"Host {ep.vm}"]
        lines.append(f"    HostName {ep.address or ep.vm}")
        lines.append(f"    Port {ep.port}")
        lines.append(f"    User {ep.user}")
        if ep.key is not None:
            lines.append(f"    IdentityFile {ep.key}")
        else:
            lines.append("    # IdentityFile: no key yet (vmfleet up generates the fleet's key)")
        lines.append("    IdentitiesOnly yes")
        lines.append(f"    UserKnownHostsFile {ep.known_hosts}")
        lines.append(f"    HostKeyAlias {ep.vm}")
        lines.append(f"    StrictHostKeyChecking {'yes' if ep.strict else 'accept-new'}")
        if ep.proxy_jump:
            lines.append(f"    ProxyJump {ep.proxy_jump}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _group_name(prefix: str, value: str) -> str:
    return f"{prefix}_" + re.sub(r"[^A-Za-z0-9_]", "_", value)


def inventory(ctx: FleetContext, endpoints_: list[Endpoint]) -> dict[str, object]:
    """An Ansible inventory (YAML form): hosts with connection vars, grouped by template,
    vmfleet group, hypervisor host and label."""
    instances = ctx.instances()
    by_name = {i.name: i for i in instances}
    member_of = groups.memberships(ctx.loaded.spec, instances)
    hosts: dict[str, dict[str, object]] = {}
    children: dict[str, set[str]] = {}
    for ep in endpoints_:
        inst = by_name[ep.vm]
        hosts[ep.vm] = hostvars(ep)
        names = [_group_name("template", inst.template), _group_name("host", ep.host)]
        names += [_group_name("group", g) for g in member_of[inst.name]]
        names += [_group_name("label", f"{k}_{v}") for k, v in inst.fields.labels.items()]
        for name in names:
            children.setdefault(name, set()).add(ep.vm)
    return {
        "all": {
            "hosts": hosts,
            "children": {
                name: {"hosts": dict.fromkeys(sorted(vms))}
                for name, vms in sorted(children.items())
            },
        }
    }


def hostvars(ep: Endpoint) -> dict[str, object]:
    """The connection variables Ansible needs for one VM."""
    common = " ".join(
        [
            f"-o UserKnownHostsFile={ep.known_hosts}",
            f"-o HostKeyAlias={ep.vm}",
            f"-o StrictHostKeyChecking={'yes' if ep.strict else 'accept-new'}",
        ]
        + ([f"-J {ep.proxy_jump}"] if ep.proxy_jump else [])
    )
    key = {} if ep.key is None else {"ansible_ssh_private_key_file": str(ep.key)}
    return {
        "ansible_host": ep.address or ep.vm,
        "ansible_port": ep.port,
        "ansible_user": ep.user,
        **key,
        "ansible_ssh_common_args": common,
        "vmfleet_template": ep.template,
        "vmfleet_hypervisor": ep.host,
        "vmfleet_state": ep.state,
    }


def dynamic_inventory(inv: dict[str, object]) -> dict[str, object]:
    """The `--list` JSON of a dynamic inventory script, from the YAML form."""
    all_group = inv["all"]
    assert isinstance(all_group, dict)
    hosts: dict[str, dict[str, object]] = all_group["hosts"]
    children: dict[str, dict[str, dict[str, None]]] = all_group["children"]
    out: dict[str, object] = {"_meta": {"hostvars": hosts}}
    out["all"] = {"hosts": sorted(hosts), "children": sorted(children)}
    for name, group in children.items():
        out[name] = {"hosts": sorted(group["hosts"])}
    return out
