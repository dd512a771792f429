"""Putting the fleet's fragment into a cluster's configuration, and taking it out (pure).

The input is the CIB as `cibadmin --query` prints it; the output a new `<configuration>`
for one `cibadmin --replace --scope configuration`. Options, resource defaults and node
utilization go into the sets Pacemaker reads first (`cib-bootstrap-options`, the first
`rsc_defaults` set, each node's utilization), replacing values of the same name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from vmfleet.core.cluster.cib import (
    CONSTRAINT_PREFIX,
    ForeignResourceError,
    Fragment,
)
from vmfleet.core.cluster.model import OWNER_META
from vmfleet.errors import FleetError

BOOTSTRAP_OPTIONS = "cib-bootstrap-options"
MOVE_PREFIXES = ("cli-prefer-", "cli-ban-")
_REFS = ("rsc", "with-rsc", "first", "then")


def configuration(cib_xml: str) -> ET.Element:
    """The `<configuration>` of a CIB document (or the element itself)."""
    try:
        root = ET.fromstring(cib_xml)
    except ET.ParseError as error:
        raise FleetError(f"the cluster's CIB is not XML: {error}") from None
    found = root if root.tag == "configuration" else root.find("configuration")
    if found is None:
        raise FleetError("no <configuration> in the cluster's CIB")
    return found


def _section(config: ET.Element, tag: str) -> ET.Element:
    found = config.find(tag)
    if found is None:
        found = ET.SubElement(config, tag)
    return found


def owner_of(resource: ET.Element) -> str | None:
    """The fleet a top-level resource (or clone) belongs to, from its meta attributes."""
    for nvpair in resource.iterfind("./meta_attributes/nvpair"):
        if nvpair.get("name") == OWNER_META:
            return nvpair.get("value")
    return None


def owned_resources(config: ET.Element, fleet: str) -> dict[str, ET.Element]:
    """The fleet's top-level resources, by id (a clone's primitive id maps to the clone too)."""
    out: dict[str, ET.Element] = {}
    for resource in _section(config, "resources"):
        if owner_of(resource) == fleet:
            out[resource.get("id", "")] = resource
            for inner in resource.iterfind("primitive"):
                out[inner.get("id", "")] = resource
    return out


def _all_ids(config: ET.Element) -> dict[str, ET.Element]:
    out: dict[str, ET.Element] = {}
    for resource in _section(config, "resources"):
        out[resource.get("id", "")] = resource
        for inner in resource.iterfind("primitive"):
            out[inner.get("id", "")] = resource
    return out


def _refs(constraint: ET.Element) -> set[str]:
    return {constraint.get(a, "") for a in _REFS} - {""}


def _drop_constraints(config: ET.Element, names: set[str], *, moves: bool) -> None:
    """Remove the fleet's constraints on `names` (and `cli-*` move/ban ones when `moves`)."""
    section = _section(config, "constraints")
    for constraint in list(section):
        cid = constraint.get("id", "")
        ours = cid.startswith(CONSTRAINT_PREFIX) or (moves and cid.startswith(MOVE_PREFIXES))
        if ours and _refs(constraint) & names:
            section.remove(constraint)


def _put_nvpairs(target: ET.Element, pairs: ET.Element) -> None:
    """Copy `pairs`' nvpairs into `target`, replacing any of the same name."""
    names = {p.get("name") for p in pairs}
    for nvpair in list(target.iterfind("nvpair")):
        if nvpair.get("name") in names:
            target.remove(nvpair)
    for nvpair in pairs:
        target.append(nvpair)


def merged(cib_xml: str, fragment: Fragment, *, fleet: str) -> ET.Element:
    """The configuration with the fleet's part replaced by `fragment`.

    Raises ForeignResourceError when a wanted resource id exists but belongs to no fleet or
    to another one: vmfleet never takes over what it did not make.
    """
    config = configuration(cib_xml)
    existing = _all_ids(config)
    owned = owned_resources(config, fleet)
    wanted_ids = {r.get("id", "") for r in fragment.resources}
    wanted_ids |= {p.get("id", "") for r in fragment.resources for p in r.iterfind("primitive")}
    clash = sorted(i for i in wanted_ids if i in existing and i not in owned)
    if clash:
        raise ForeignResourceError(
            f"resources {', '.join(clash)} exist in the cluster and were not made by fleet "
            f"{fleet!r}; rename the VMs or remove those resources"
        )
    resources = _section(config, "resources")
    for resource in {id(r): r for r in owned.values()}.values():
        resources.remove(resource)
    _drop_constraints(config, set(owned) | wanted_ids, moves=False)
    for resource in fragment.resources:
        resources.append(resource)
    constraints = _section(config, "constraints")
    for constraint in fragment.constraints:
        constraints.append(constraint)
    crm_config = _section(config, "crm_config")
    bootstrap = crm_config.find(f"cluster_property_set[@id='{BOOTSTRAP_OPTIONS}']")
    if bootstrap is None:
        bootstrap = ET.Element("cluster_property_set", {"id": BOOTSTRAP_OPTIONS})
        crm_config.insert(0, bootstrap)
    _put_nvpairs(bootstrap, fragment.options)
    rsc_defaults = _section(config, "rsc_defaults")
    first = rsc_defaults.find("meta_attributes")
    if first is None:
        first = ET.SubElement(
            rsc_defaults, "meta_attributes", {"id": fragment.defaults.get("id", "")}
        )
    _put_nvpairs(first, fragment.defaults)
    nodes = _section(config, "nodes")
    for uname, util in fragment.utilization:
        node = nodes.find(f"node[@uname='{uname}']")
        if node is None:
            continue  # not joined yet: its utilization is set on the next `up`
        current = node.find("utilization")
        if current is None:
            current = ET.SubElement(node, "utilization", {"id": util.get("id", "")})
        _put_nvpairs(current, util)
    return config


def without(cib_xml: str, *, fleet: str, vms: Iterable[str] | None = None) -> ET.Element:
    """The configuration without the fleet's VM resources (all, or those of `vms`) and every
    constraint on them, move constraints included. Fencing and options stay."""
    config = configuration(cib_xml)
    owned = owned_resources(config, fleet)
    chosen = None if vms is None else set(vms)
    drop: dict[int, ET.Element] = {}
    names: set[str] = set()
    for rid, resource in owned.items():
        if resource.tag == "primitive" and resource.get("class") == "stonith":
            continue
        vm = _vm_of(rid)
        if chosen is None or vm in chosen:
            drop[id(resource)] = resource
            names.add(rid)
    resources = _section(config, "resources")
    for resource in drop.values():
        resources.remove(resource)
    _drop_constraints(config, names, moves=True)
    return config


def _vm_of(resource_id: str) -> str:
    """`p_virtdom_web` → web; `ms_drbd_web_sda`/`p_drbd_web_sda` → web."""
    for prefix in ("p_virtdom_", "ms_drbd_", "p_drbd_"):
        if resource_id.startswith(prefix):
            rest = resource_id[len(prefix) :]
            return rest if prefix == "p_virtdom_" else rest.rsplit("_", 1)[0]
    return resource_id


def canonical(element: ET.Element) -> str:
    """A text form that ignores whitespace and attribute order, for comparing configurations."""
    copy = ET.fromstring(ET.tostring(element))
    for node in copy.iter():
        node.text = (node.text or "").strip() or None
        node.tail = None
        attrs = sorted(node.attrib.items())
        node.attrib.clear()
        node.attrib.update(attrs)
    return ET.tostring(copy, encoding="unicode")


def tostring(element: ET.Element) -> str:
    copy = ET.fromstring(ET.tostring(element))
    ET.indent(copy)
    return ET.tostring(copy, encoding="unicode") + "\n"


def standalone(fragment: Fragment, *, fleet: str, nodes: Iterable[str]) -> ET.Element:
    """A whole `<cib>` holding only the fleet's configuration (nodes numbered from 1, empty
    status): for review, `crm_verify --xml-file` and `crm_simulate --xml-file`."""
    root = ET.Element(
        "cib",
        {"validate-with": "pacemaker-3.9", "epoch": "1", "num_updates": "0", "admin_epoch": "0"},
    )
    config = ET.SubElement(root, "configuration")
    for tag in ("crm_config", "nodes", "resources", "constraints"):
        ET.SubElement(config, tag)
    for n, node in enumerate(nodes, start=1):
        ET.SubElement(config.find("nodes"), "node", {"id": str(n), "uname": node})  # type: ignore[arg-type]
    ET.SubElement(root, "status")
    new = merged(ET.tostring(root, encoding="unicode"), fragment, fleet=fleet)
    root.remove(config)
    root.insert(0, new)
    return root
