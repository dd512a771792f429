"""Placement: which host each new VM goes to, and why. Pure: data in, decisions out.

Input: the hosts as facts (`HostFacts`: reachability, labels, architectures, KVM, capacity
after overcommit, what is already allocated), the VMs already on hosts (`Placed`, never
moved), the new VMs (`VmRequest`) and a strategy (`spread` or `pack`). Output: a host for
every VM that fits, and for every VM that does not, the reasons host by host.

A host is rejected for a VM when (in this order, every reason kept when explaining):
unreachable; the VM is pinned elsewhere (`host:`); not schedulable (a pin overrides it);
it cannot run the VM's architecture; not enough vCPUs, memory or disk left; the template's
`max_per_host` is reached; a required anti-affinity term of the VM matches a VM in the same
topology domain (host, zone, or any host label), or a placed VM's required anti-affinity
matches this VM there (anti-affinity holds both ways); a required affinity term has no
matching VM in that domain.

Among the hosts left, the best is the lowest of (position in `node_preference`, minus the
preferred-affinity score, 0 for KVM else 1, the strategy's load key, the host's order), so
node preference beats soft affinity, which beats KVM, which beats spreading or packing;
ties go to the host listed first. Every VM is placed in input order (pinned ones first);
one whose required affinity waits for VMs not placed yet is deferred until they are, and a
VM whose selector matches itself may start its own domain when nothing matching is placed.

For planning moves (`core.moves`), the pieces `place` is made of: a `State` of hosts and
placed VMs (`add`, and `remove` to take one out again), a VM's `Rules` against it
(`rules_for`), why a host refuses it (`check`), a host's `rank` for it (lowest best) and
why no host takes it (`summary`).

Speed: hosts sit in one heap per architecture, keyed by what does not depend on the VM
(KVM, load, order); hosts a VM's soft rules favour are scored beside the heap's first host
that fits, which gives exactly the answer of scoring every host (`explain` does that).
"""

from vmfleet.core.placement.facts import (
    HOST,
    HOST_KEYS,
    ZONE_KEYS,
    HostFacts,
    HostVerdict,
    Placed,
    PlacementResult,
    Resources,
    Strategy,
    Term,
    VmRequest,
    domain,
    terms_of,
    topology_key,
)
from vmfleet.core.placement.solve import place, summary
from vmfleet.core.placement.state import Rules, State, check, rank, rules_for

__all__ = [
    "HOST",
    "HOST_KEYS",
    "ZONE_KEYS",
    "HostFacts",
    "HostVerdict",
    "Placed",
    "PlacementResult",
    "Resources",
    "Rules",
    "State",
    "Strategy",
    "Term",
    "VmRequest",
    "check",
    "domain",
    "place",
    "rank",
    "rules_for",
    "summary",
    "terms_of",
    "topology_key",
]
