"""Reaching a cluster: its tools on a node, the first node that answers, waiting on its state."""

from __future__ import annotations

import time
from collections.abc import Callable

from vmfleet.drivers.commands import CommandRunner
from vmfleet.drivers.pacemaker import ClusterError, ClusterStatus, ClusterTools
from vmfleet.errors import OperationTimeout
from vmfleet.spec.models import ClusterSpec

POLL_SECONDS = 0.5


def node_tools(runner: CommandRunner, cluster: ClusterSpec, node: str) -> ClusterTools:
    """The tools on `node` (the cluster's `command` with `{node}` filled in)."""
    return ClusterTools(runner, tuple(part.replace("{node}", node) for part in cluster.command))


def per_node(cluster: ClusterSpec) -> bool:
    """True when each node has its own command (files must be written on every node)."""
    return any("{node}" in part for part in cluster.command)


def reachable(runner: CommandRunner, cluster: ClusterSpec, *, name: str) -> ClusterTools:
    """The tools on the first node whose cluster stack answers (a node may be down)."""
    errors = []
    for node in cluster.nodes:
        tools = node_tools(runner, cluster, node)
        try:
            tools.status()
        except ClusterError as error:
            errors.append(f"{node}: {error}")
            continue
        return tools
    raise ClusterError(f"no node of cluster {name!r} answers: " + "; ".join(errors))


def wait_for(
    tools: ClusterTools,
    done: Callable[[ClusterStatus], bool],
    *,
    timeout: float,
    what: str,
) -> ClusterStatus:
    """Poll crm_mon until `done` holds (the real state, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        status = tools.status()
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise OperationTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
