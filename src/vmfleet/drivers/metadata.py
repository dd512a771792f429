"""Ownership marks: the metadata every vmfleet domain carries, and volume naming.

libvirt is the source of truth for what exists. A domain is vmfleet's when its XML holds
an `<vmfleet:instance>` element in our namespace; a volume is vmfleet's when its name has
our prefix. Nothing else is ever changed or removed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NAMESPACE = "https://vmfleet.dev/xmlns/1"
PREFIX = "vmfleet"
VOLUME_PREFIX = "vmf-"

_VOLUME_RE = re.compile(
    r"^vmf-(?P<fleet>[a-z0-9][a-z0-9-]*)--(?P<vm>[a-z0-9][a-z0-9-]*)--(?P<role>[a-z0-9.-]+)$"
)


@dataclass(frozen=True, slots=True)
class OwnerMetadata:
    """Who owns a domain: the fleet, the VM's name, its template and index, the spec hash
    (and the runtime hash: the part of the spec that shapes the running VM; '' if unknown)."""

    fleet: str
    vm: str
    template: str
    index: int | None
    spec_hash: str
    runtime_hash: str = ""

    def to_element(self) -> ET.Element:
        """The `<instance>` element, in our namespace, for `<metadata>` or virDomainSetMetadata."""
        root = ET.Element(f"{{{NAMESPACE}}}instance")
        for tag, value in (
            ("fleet", self.fleet),
            ("vm", self.vm),
            ("template", self.template),
            ("index", "" if self.index is None else str(self.index)),
            ("spec-hash", self.spec_hash),
            ("runtime-hash", self.runtime_hash),
        ):
            if tag == "runtime-hash" and not value:
                continue  # unknown (domains defined before vmfleet wrote it)
            ET.SubElement(root, f"{{{NAMESPACE}}}{tag}").text = value
        return root

    def to_metadata_xml(self) -> str:
        """The element without namespace declarations, as virDomainSetMetadata takes it
        (libvirt puts it in our namespace under our prefix)."""
        root = ET.Element("instance")
        for child in self.to_element():
            ET.SubElement(root, child.tag.split("}")[1]).text = child.text
        return ET.tostring(root, encoding="unicode")

    def to_xml(self) -> str:
        """The element as a string with our prefix, as virDomainSetMetadata wants it."""
        ET.register_namespace(PREFIX, NAMESPACE)
        return ET.tostring(self.to_element(), encoding="unicode")

    @classmethod
    def from_element(cls, element: ET.Element) -> OwnerMetadata | None:
        """Read our element back; None when it is missing or malformed (then not ours)."""

        def text(tag: str) -> str | None:
            child = element.find(f"{{{NAMESPACE}}}{tag}")
            return None if child is None else (child.text or "")

        fleet, vm, template = text("fleet"), text("vm"), text("template")
        index, spec_hash = text("index"), text("spec-hash")
        if not fleet or not vm or template is None or spec_hash is None:
            return None
        try:
            parsed_index = int(index) if index else None
        except ValueError:
            return None
        return cls(
            fleet=fleet,
            vm=vm,
            template=template,
            index=parsed_index,
            spec_hash=spec_hash,
            runtime_hash=text("runtime-hash") or "",
        )

    @classmethod
    def from_domain_xml(cls, domain_xml: str) -> OwnerMetadata | None:
        """Find our element inside a whole domain XML document."""
        try:
            root = ET.fromstring(domain_xml)
        except ET.ParseError:
            return None
        found = root.find(f"metadata/{{{NAMESPACE}}}instance")
        return None if found is None else cls.from_element(found)


def volume_name(*, fleet: str, vm: str, role: str) -> str:
    """The pool volume name for one of a VM's files: role is `root`, `data-N` or `seed.iso`."""
    return f"{VOLUME_PREFIX}{fleet}--{vm}--{role}"


def parse_volume_name(name: str) -> tuple[str, str, str] | None:
    """(fleet, vm, role) for one of our per-VM volume names, else None."""
    match = _VOLUME_RE.match(name)
    if match is None:
        return None
    return match["fleet"], match["vm"], match["role"]


def base_volume_name(*, image: str, digest: str) -> str:
    """The pool volume holding a base image, shared by every VM cloned from it."""
    return f"{VOLUME_PREFIX}base--{image}--{digest[:12]}"
