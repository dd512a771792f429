"""The Pacemaker (and LINSTOR) seam: cluster tools run on a node through the command runner.

`ClusterTools` runs `cibadmin`, `crm_mon`, `crm_resource`, `crm_attribute`, `linstor`,
`virsh` and small file operations on a cluster node: locally, or behind a prefix such as
`ssh root@{node}` (then the command is quoted into one remote shell word) or `nsenter`.
`parse_status` reads `crm_mon --output-as=xml` into frozen data.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from vmfleet.drivers.commands import CommandError, CommandResult, CommandRunner
from vmfleet.errors import HypervisorError

CIB_TIMEOUT = 60.0
TOOL_TIMEOUT = 120.0


class ClusterError(HypervisorError):
    """The cluster refused or failed an operation (the message names the command)."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    online: bool
    standby: bool
    unclean: bool
    maintenance: bool

    @property
    def state(self) -> str:
        if self.unclean:
            return "unclean"
        if not self.online:
            return "offline"
        return "standby" if self.standby else "online"


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """One resource instance as crm_mon shows it (a clone has one per node)."""

    id: str
    agent: str
    role: str
    target_role: str | None
    active: bool
    failed: bool
    nodes: tuple[str, ...]
    clone: str | None = None
    pending: str | None = None  # an operation in flight (Starting, Migrating, ...)


# crm_mon shows an operation in flight as the resource's role (Pacemaker 2.1) or, in other
# versions, in a `pending` attribute
PENDING_ROLES = ("Starting", "Stopping", "Migrating", "Promoting", "Demoting")
INFINITY = 1_000_000  # Pacemaker's INFINITY score
PENDING_RC = 193  # an operation's rc in the history while it runs (call id -1)


@dataclass(frozen=True, slots=True)
class Operation:
    """One entry of crm_mon's operation history on a node."""

    node: str
    resource: str
    task: str  # start, stop, monitor, migrate_to, migrate_from, ...
    call: int
    rc: int

    @property
    def pending(self) -> bool:
        return self.call == -1 or self.rc == PENDING_RC


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    nodes: tuple[NodeStatus, ...]
    resources: tuple[ResourceStatus, ...]
    fail_counts: tuple[tuple[str, str, int], ...] = ()  # (node, resource, count)
    quorum: bool = True
    operations: tuple[Operation, ...] = ()

    def resource(self, rid: str) -> list[ResourceStatus]:
        return [r for r in self.resources if r.id == rid]

    def running_on(self, rid: str) -> list[str]:
        """The nodes where a resource is active and settled (no operation pending there);
        two for a VM would be a split brain."""
        return [n for r in self.resource(rid) if r.active and not r.pending for n in r.nodes]

    def active_on(self, rid: str) -> list[str]:
        """The nodes where a resource is active, settled or not (a VM still stopping counts)."""
        return [n for r in self.resource(rid) if r.active for n in r.nodes]


def _bool(element: ET.Element, name: str) -> bool:
    return element.get(name) == "true"


def parse_status(xml_text: str) -> ClusterStatus:
    """`crm_mon --output-as=xml` → ClusterStatus."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as error:
        raise ClusterError(f"crm_mon printed something that is not XML: {error}") from None
    nodes = tuple(
        NodeStatus(
            name=n.get("name", ""),
            online=_bool(n, "online"),
            standby=_bool(n, "standby"),
            unclean=_bool(n, "unclean"),
            maintenance=_bool(n, "maintenance"),
        )
        for n in root.iterfind("./nodes/node")
    )
    resources: list[ResourceStatus] = []

    def add(element: ET.Element, clone: str | None) -> None:
        role = element.get("role", "")
        pending = element.get("pending") or (role if role in PENDING_ROLES else None)
        if pending == "Monitoring" and _bool(element, "active"):
            # A monitor checks a resource where it runs (the first one right after a start
            # shows as pending): it moves nothing, so the resource is settled there.
            pending = None
        resources.append(
            ResourceStatus(
                id=element.get("id", ""),
                agent=element.get("resource_agent", ""),
                role=role,
                target_role=element.get("target_role"),
                active=_bool(element, "active"),
                failed=_bool(element, "failed"),
                nodes=tuple(n.get("name", "") for n in element.iterfind("node")),
                clone=clone,
                pending=pending,
            )
        )

    for element in root.iterfind("./resources/*"):
        if element.tag == "resource":
            add(element, None)
        elif element.tag in ("clone", "group"):
            for inner in element.iter("resource"):
                add(inner, element.get("id") if element.tag == "clone" else None)
    fails = tuple(
        (node.get("name", ""), history.get("id", ""), _int(history.get("fail-count")))
        for node in root.iterfind("./node_history/node")
        for history in node.iterfind("resource_history")
        if _int(history.get("fail-count")) > 0
    )
    quorum = root.find("./summary/current_dc")
    return ClusterStatus(
        nodes=nodes,
        resources=tuple(resources),
        fail_counts=fails,
        quorum=quorum is None or quorum.get("with_quorum", "true") == "true",
        operations=_operations(root),
    )


def _int(text: str | None) -> int:
    """A count or call id; Pacemaker writes an endless fail count as INFINITY."""
    if text and text.lstrip("+").upper() == "INFINITY":
        return INFINITY
    try:
        return int(text or "0")
    except ValueError:
        return 0


def _operations(root: ET.Element) -> tuple[Operation, ...]:
    return tuple(
        Operation(
            node=node.get("name", ""),
            resource=history.get("id", ""),
            task=op.get("task", ""),
            call=_int(op.get("call")),
            rc=_int(op.get("rc")),
        )
        for node in root.iterfind("./node_history/node")
        for history in node.iterfind("resource_history")
        for op in history.iterfind("operation_history")
    )


def remote(prefix: Sequence[str], argv: Sequence[str]) -> list[str]:
    """argv behind a node prefix; ssh gets the command as one quoted word."""
    if prefix and PurePath(prefix[0]).name == "ssh":
        return [*prefix, shlex.join(argv)]
    return [*prefix, *argv]


@dataclass(frozen=True, slots=True)
class ClusterTools:
    """The cluster's command-line tools on one node (`prefix` empty: this machine)."""

    runner: CommandRunner
    prefix: tuple[str, ...] = ()

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = TOOL_TIMEOUT,
    ) -> CommandResult:
        try:
            return self.runner.run(
                remote(self.prefix, argv), input=input, check=check, timeout=timeout
            )
        except CommandError as error:
            raise ClusterError(str(error)) from error

    def cib(self) -> str:
        """The whole CIB (configuration and status)."""
        return self.run(["cibadmin", "--query"], timeout=CIB_TIMEOUT).stdout_text()

    def replace_configuration(self, configuration_xml: str) -> None:
        """Replace `<configuration>` in one step (the cluster applies all of it or none)."""
        self.run(
            ["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
            input=configuration_xml.encode(),
            timeout=CIB_TIMEOUT,
        )

    def status(self) -> ClusterStatus:
        out = self.run(
            ["crm_mon", "--output-as=xml", "--one-shot", "--inactive", "--include=failcounts"]
        )
        return parse_status(out.stdout_text())

    def set_target_role(self, resource: str, role: str) -> None:
        self.run(
            [
                "crm_resource", "--resource", resource, "--meta",
                "--set-parameter", "target-role", "--parameter-value", role,
            ]
        )  # fmt: skip

    def move(self, resource: str, node: str) -> None:
        self.run(["crm_resource", "--move", "--resource", resource, "--node", node])

    def clear(self, resource: str) -> None:
        self.run(["crm_resource", "--clear", "--resource", resource])

    def standby(self, node: str, *, on: bool) -> None:
        self.run(
            [
                "crm_attribute", "--node", node, "--name", "standby",
                "--update", "on" if on else "off", "--lifetime", "forever",
            ]
        )  # fmt: skip

    def write_file(self, path: str, data: bytes) -> None:
        self.run(["sh", "-c", 'cat > "$1.tmp" && mv "$1.tmp" "$1"', "sh", path], input=data)

    def remove_file(self, path: str) -> None:
        self.run(["rm", "-f", path])

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).ok

    def create_disk(self, path: str, size_gib: int) -> None:
        self.run(["qemu-img", "create", "-q", "-f", "qcow2", path, f"{size_gib}G"])

    def running_domains(self, uri: str) -> list[str]:
        """Domains libvirt runs on this node (to find VMs running outside the cluster)."""
        out = self.run(["virsh", "-c", uri, "list", "--name"], check=False)
        return [line.strip() for line in out.stdout_text().splitlines() if line.strip()]

    def linstor_definitions(self) -> set[str]:
        """Names of the LINSTOR resource definitions."""
        out = self.run(["linstor", "--machine-readable", "resource-definition", "list"])
        return _linstor_names(out.stdout_text())

    def linstor(self, argv: Sequence[str]) -> None:
        self.run(argv)


def _linstor_names(text: str) -> set[str]:
    """Resource-definition names from `linstor -m rd list` (a list of API replies)."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as error:
        raise ClusterError(f"linstor printed something that is not JSON: {error}") from error
    names: set[str] = set()
    for reply in data if isinstance(data, list) else [data]:
        items = reply if isinstance(reply, list) else reply.get("rsc_dfns", [])
        for item in items:
            if isinstance(item, dict) and "name" in item:
                names.add(str(item["name"]))
    return names
