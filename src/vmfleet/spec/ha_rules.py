"""Rules for HA VMs and their Pacemaker clusters (`clusters:` and `ha:`).

An HA VM's disks are made on its cluster's storage (so it cannot clone a pool image), its
NICs attach to host bridges every node has, its node rules name nodes of that cluster, and
a cluster's nodes are hosts of the fleet with the capacity Pacemaker's utilization needs.
"""

from __future__ import annotations

from vmfleet.errors import Problem
from vmfleet.spec.models import FleetSpec
from vmfleet.spec.resolve import effective, ha_settings, indexes, networks
from vmfleet.spec.source import Document

HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def check(spec: FleetSpec, doc: Document) -> list[Problem]:
    """Every problem with clusters and HA VMs."""
    return _clusters(spec, doc) + _ha_vms(spec, doc)


def _clusters(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    for name, cluster in spec.clusters.items():
        base = ("clusters", name)
        for i, node in enumerate(cluster.nodes):
            host = spec.hosts.get(node)
            if host is None:
                known = ", ".join(sorted(spec.hosts)) or "none are defined"
                problems.append(
                    doc.problem((*base, "nodes", i), f"node {node!r} is not a host; known: {known}")
                )
            elif cluster.placement_strategy != "default" and (
                host.capacity.cpus is None or host.capacity.memory is None
            ):
                problems.append(
                    doc.problem(
                        ("hosts", node, "capacity"),
                        f"placement_strategy {cluster.placement_strategy} of cluster {name!r} "
                        "needs capacity.cpus and capacity.memory on each node",
                    )
                )
        if len(set(cluster.nodes)) != len(cluster.nodes):
            problems.append(doc.problem((*base, "nodes"), "a node is listed twice"))
        storage = cluster.storage
        if storage.type == "linstor" and storage.replicas > len(cluster.nodes):
            problems.append(
                doc.problem(
                    (*base, "storage", "replicas"),
                    f"{storage.replicas} replicas but the cluster has {len(cluster.nodes)} nodes",
                )
            )
        if cluster.fencing.enabled and cluster.fencing.agent is None:
            problems.append(
                doc.problem(
                    (*base, "fencing"),
                    "fencing is on but no agent is given: set fencing.agent, or "
                    "fencing.enabled: false (then a node that only lost its cluster stack "
                    "can leave a second copy of a VM running)",
                )
            )
    return problems


def _ha_vms(spec: FleetSpec, doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    nets = networks(spec)
    for name, template in spec.vms.items():
        seen: set[str] = set()
        for index in indexes(template):
            ha = ha_settings(spec, template, index)
            if ha is None:
                continue
            base = ("vms", name) if index is None else ("vms", name, "overrides", index)
            cluster = spec.clusters.get(ha.cluster)
            if cluster is None:
                known = ", ".join(sorted(spec.clusters)) or "none are defined"
                problem = doc.problem(
                    (*base, "ha"), f"unknown cluster {ha.cluster!r}; known: {known}"
                )
                problems += [problem] if problem.message not in seen else []
                seen.add(problem.message)
                continue
            fields = effective(spec, template, index)
            found: list[Problem] = []
            if fields.image is not None:
                found.append(
                    doc.problem(
                        (*base, "image"),
                        f"an HA VM's disks are made empty on cluster {ha.cluster!r}'s "
                        f"{cluster.storage.type} storage; it cannot clone image {fields.image!r}",
                    )
                )
            for nic in fields.nics:
                net = nets.get(nic.network)  # an unknown one is reported by `references`
                if net is not None and net.mode != "bridge":
                    found.append(
                        doc.problem(
                            (*base, "network"),
                            f"an HA VM needs bridge networks every node has; {nic.network!r} "
                            f"is {net.mode}",
                        )
                    )
            nodes = set(cluster.nodes)
            for field, values in (
                ("host", [fields.host] if fields.host else []),
                ("node_preference", list(fields.node_preference)),
            ):
                for value in values:
                    if value not in nodes:
                        found.append(
                            doc.problem(
                                (*base, field),
                                f"{value!r} is not a node of cluster {ha.cluster!r} "
                                f"({', '.join(cluster.nodes)})",
                            )
                        )
            affinity = fields.affinity
            rules = [affinity.vm_affinity, affinity.vm_anti_affinity] if affinity else []
            zone = affinity and (affinity.zone_affinity or affinity.zone_anti_affinity)
            terms = [t for r in rules if r for t in (*r.required, *r.preferred)]
            if zone or any(t.topology_key != HOSTNAME_TOPOLOGY for t in terms):
                found.append(
                    doc.problem(
                        (*base, "affinity"),
                        "an HA VM's affinity can only be per node (topologyKey "
                        f"{HOSTNAME_TOPOLOGY}): Pacemaker places it",
                    )
                )
            for problem in found:
                if problem.message not in seen:
                    seen.add(problem.message)
                    problems.append(problem)
    return problems
