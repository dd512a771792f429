"""The `Fleet` methods for HA VMs on Pacemaker clusters (`clusters:` and `ha:`): apply,
remove, start, stop, migrate, status, standby, and the export of what a cluster gets."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from vmfleet.api.base import FleetBase
from vmfleet.core import cluster as core_cluster
from vmfleet.core.expand import expand
from vmfleet.engine import ha
from vmfleet.engine.ha import Change, ClusterReport
from vmfleet.errors import UsageError


class Clusters(FleetBase):
    """Operations on the fleet's HA VMs; see `Fleet`. The cluster owns their lifecycle."""

    def ha_vms(self) -> set[str]:
        """Names of the VMs a cluster manages."""
        return ha.ha_vm_names(self._context())

    def cluster_up(self) -> tuple[Change, ...]:
        """Storage, definitions and cluster configuration of every HA VM (idempotent)."""
        with self._locked(f"cluster up {self.path}") as ctx:
            return tuple(ha.up(ctx))

    def cluster_down(self, vms: Sequence[str] = ()) -> tuple[Change, ...]:
        """Seed 001's vm_delete for the HA VMs (all, or `vms`)."""
        with self._locked(f"cluster down {self.path}") as ctx:
            return tuple(ha.down(ctx, set(vms) if vms else None))

    def cluster_start(self, vm: str) -> str:
        """Start an HA VM through its cluster; returns the node it runs on."""
        return ha.start(self._context(), vm)

    def cluster_stop(self, vm: str) -> None:
        ha.stop(self._context(), vm)

    def migrate(self, vm: str, node: str) -> str:
        """Move an HA VM to `node` (live when allowed), wait, clear the move; returns the
        node it left."""
        return ha.migrate(self._context(), vm, node)

    def cluster_status(self) -> tuple[ClusterReport, ...]:
        return tuple(ha.status(self._context()))

    def standby(self, node: str, *, on: bool = True) -> None:
        """Drain a cluster node (or let it run resources again)."""
        ha.standby(self._context(), node, on=on)

    def cluster_export(self, *, fmt: str = "cib", cluster: str | None = None) -> str:
        """What `cluster_up` applies, touching nothing: a `<cib>` per cluster, or `pcs`
        command lines."""
        names = [cluster] if cluster else list(self.spec.clusters)
        unknown = [n for n in names if n not in self.spec.clusters]
        if unknown or not names:
            raise UsageError(f"no cluster {unknown[0] if unknown else ''!r} in {self.path}")
        if fmt not in ("cib", "pcs"):
            raise UsageError(f"unknown export format {fmt!r} (cib or pcs)")
        instances = expand(self.spec, fleet=self.name)
        parts = []
        for name in names:
            config = core_cluster.wanted(self.spec, instances, fleet=self.name, cluster=name)
            if fmt == "pcs":
                lines = [f"# cluster {name}: pcs -f cib.xml <command>, then pcs cluster cib-push"]
                lines += [shlex.join(argv) for argv in core_cluster.pcs_commands(config)]
                parts.append("\n".join(lines) + "\n")
            else:
                fragment = core_cluster.fragment(config)
                root = core_cluster.standalone(fragment, fleet=self.name, nodes=config.spec.nodes)
                parts.append(core_cluster.tostring(root))
        return "".join(parts)
