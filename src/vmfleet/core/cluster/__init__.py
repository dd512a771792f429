"""Pure decisions for HA VMs on Pacemaker clusters: the wanted configuration (`model`), its
CIB (`cib`), merging into a live CIB (`merge`) and the equivalent commands (`commands`)."""

from vmfleet.core.cluster.cib import ForeignResourceError, Fragment, fragment
from vmfleet.core.cluster.commands import (
    linstor_create,
    linstor_delete,
    pcs_commands,
    replica_nodes,
)
from vmfleet.core.cluster.merge import (
    canonical,
    configuration,
    merged,
    owned_resources,
    standalone,
    tostring,
    without,
)
from vmfleet.core.cluster.model import ClusterConfig, Colocation, HaDisk, HaVm, wanted

__all__ = [
    "ClusterConfig",
    "Colocation",
    "ForeignResourceError",
    "Fragment",
    "HaDisk",
    "HaVm",
    "canonical",
    "configuration",
    "fragment",
    "linstor_create",
    "linstor_delete",
    "merged",
    "owned_resources",
    "pcs_commands",
    "replica_nodes",
    "standalone",
    "tostring",
    "wanted",
    "without",
]
