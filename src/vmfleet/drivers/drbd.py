"""DRBD's own view of replicated disks, read on a cluster node through the command runner.

`read(tools, node=...)` asks the node's `drbdsetup status --json` (DRBD 9: a list of
resources, each with its role, its devices' `disk-state` and its connections to peers with
their `peer_devices`), else `linstor --machine-readable resource list` (the controller's
view of every node: `state.in_use`, volumes' `state.disk_state` and `replication_states`,
`layer_object.drbd.connections`). When neither answers, the view says why instead of
failing: a status command must still show the rest of the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vmfleet.drivers.commands import CommandError, CommandResult
from vmfleet.drivers.pacemaker import ClusterTools, remote
from vmfleet.errors import OperationTimeout

NOT_FOUND = 127  # a shell's (ssh, sh -c) and nsenter's exit code for a missing program
DRBDSETUP = ("drbdsetup", "status", "--json")
LINSTOR = ("linstor", "--machine-readable", "resource", "list")
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PeerState:
    """How one node sees a peer's copy of a resource (volume 0)."""

    node: str
    connection: str  # Connected, Connecting, StandAlone, ...
    replication: str  # Established, SyncSource, SyncTarget, Off, ...
    disk: str  # UpToDate, Inconsistent, Outdated, DUnknown, ...
    in_sync: float | None  # percent of the volume in sync with that peer (None: not reported)


@dataclass(frozen=True, slots=True)
class DrbdResource:
    """One resource on one node: its role there, its local disk state and its peers."""

    name: str
    node: str
    role: str  # Primary, Secondary, Unknown
    disk: str
    peers: tuple[PeerState, ...]


@dataclass(frozen=True, slots=True)
class DrbdView:
    """What one node reports, from `drbdsetup` or `linstor`; `source` None and `reason` set
    when neither tool answered."""

    node: str
    source: str | None
    resources: tuple[DrbdResource, ...] = ()
    reason: str = ""

    def resource(self, name: str) -> DrbdResource | None:
        return next((r for r in self.resources if r.name == name), None)


class DrbdOutputError(ValueError):
    """A tool printed something that is not the JSON we know."""


def _json(text: str, tool: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DrbdOutputError(f"{tool} printed something that is not JSON: {error}") from None


def _percent(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _dict(value: object) -> dict[str, Any]:
    """A JSON object, or {} for anything else (a field missing or of another type)."""
    return value if isinstance(value, dict) else {}


def _dicts(value: object) -> list[dict[str, Any]]:
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def _volume0(items: object) -> dict[str, Any]:
    """The entry for volume 0 (seed 001's disks are `/dev/drbd/by-res/{vm}_{disk}/0`)."""
    found = _dicts(items)
    return next((i for i in found if i.get("volume", 0) == 0), found[0] if found else {})


def parse_drbdsetup(text: str, *, node: str | None) -> tuple[DrbdResource, ...]:
    """`drbdsetup status --json` on `node` → its resources (node "" when not known)."""
    data = _json(text, "drbdsetup")
    if not isinstance(data, list):
        raise DrbdOutputError("drbdsetup status --json did not print a list of resources")
    out = []
    for res in data:
        if not isinstance(res, dict):
            continue
        peers = []
        for conn in _dicts(res.get("connections")):
            device = _volume0(conn.get("peer_devices"))
            peers.append(
                PeerState(
                    node=str(conn.get("name", conn.get("peer-node-id", "?"))),
                    connection=str(conn.get("connection-state", "Unknown")),
                    replication=str(device.get("replication-state", "Off")),
                    disk=str(device.get("peer-disk-state", "DUnknown")),
                    in_sync=_percent(device.get("percent-in-sync")),
                )
            )
        out.append(
            DrbdResource(
                name=str(res.get("name", "")),
                node=node or "",
                role=str(res.get("role", "Unknown")),
                disk=str(_volume0(res.get("devices")).get("disk-state", "DUnknown")),
                peers=tuple(peers),
            )
        )
    return tuple(out)


def parse_linstor(text: str, *, node: str | None) -> tuple[DrbdResource, ...]:
    """`linstor -m resource list` (a list of replies, each a list of resources of every
    node) → the resources deployed on `node` (every node's with None), as each node's DRBD
    reported them to the controller."""
    data = _json(text, "linstor")
    replies = data if isinstance(data, list) else [data]
    everything = [
        r
        for reply in replies
        for r in (reply if isinstance(reply, list) else [reply])
        if isinstance(r, dict) and "node_name" in r
    ]
    out = []
    for res in everything:
        if node is not None and res.get("node_name") != node:
            continue
        state = _linstor_state(res)
        replication = _dict(state.get("replication_states"))
        links = _dict(_dict(_dict(res.get("layer_object")).get("drbd")).get("connections"))
        peers = []
        for peer in sorted(set(links) | set(replication)):
            link = _dict(links.get(peer))
            repl = _dict(replication.get(peer))
            peers.append(
                PeerState(
                    node=peer,
                    connection=str(
                        link.get("message") or ("Connected" if link.get("connected") else "Unknown")
                    ),
                    replication=str(repl.get("replication_state", "Unknown")),
                    disk=_peer_disk(everything, name=str(res.get("name")), node=peer),
                    in_sync=_percent(repl.get("done_percentage")),
                )
            )
        in_use = _dict(res.get("state")).get("in_use")
        out.append(
            DrbdResource(
                name=str(res.get("name", "")),
                node=str(res.get("node_name")),
                role="Primary" if in_use else "Secondary" if in_use is False else "Unknown",
                disk=str(state.get("disk_state", "DUnknown")),
                peers=tuple(peers),
            )
        )
    return tuple(out)


def _peer_disk(everything: list[dict[str, Any]], *, name: str, node: str) -> str:
    """The peer's disk state as the controller last heard it from that peer."""
    for res in everything:
        if res.get("name") == name and res.get("node_name") == node:
            return str(_linstor_state(res).get("disk_state", "DUnknown"))
    return "DUnknown"


def _linstor_state(res: dict[str, Any]) -> dict[str, Any]:
    """The `state` of a LINSTOR resource's volume 0 (disk_state, replication_states)."""
    volumes = [{"volume": v.get("volume_number", 0), **v} for v in _dicts(res.get("volumes"))]
    return _dict(_volume0(volumes).get("state"))


def _ask(tools: ClusterTools, argv: Sequence[str]) -> tuple[CommandResult | None, str]:
    """Run a read-only tool; (result, "") when it answered, else (None, why not)."""
    try:
        result = tools.runner.run(remote(tools.prefix, argv), check=False, timeout=TIMEOUT)
    except CommandError as error:
        if error.returncode is None:
            return None, f"no {argv[0]}"
        return None, f"{argv[0]} failed: {error}"
    except OperationTimeout:
        return None, f"{argv[0]} did not answer within {TIMEOUT:.0f} s"
    if result.returncode == NOT_FOUND:
        return None, f"no {argv[0]}"
    if not result.ok:
        tail = result.stderr_text().strip().splitlines()
        return None, f"{argv[0]} exited {result.returncode}" + (f": {tail[-1]}" if tail else "")
    return result, ""


def read(tools: ClusterTools, *, node: str | None) -> DrbdView:
    """The DRBD resources on `node` (None: wherever `tools` run, name unknown): drbdsetup
    first, LINSTOR when drbdsetup is missing or fails, else an empty view with the reasons
    (never an error)."""
    reasons = []
    for argv, parse in ((DRBDSETUP, parse_drbdsetup), (LINSTOR, parse_linstor)):
        result, why = _ask(tools, argv)
        if result is None:
            reasons.append(why)
            continue
        try:
            return DrbdView(node or "", argv[0], parse(result.stdout_text(), node=node))
        except DrbdOutputError as error:
            reasons.append(str(error))
    return DrbdView(node or "", None, reason=", ".join(reasons))
