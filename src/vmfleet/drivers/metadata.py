"""Ownership marks: the metadata every vmfleet domain carries.

libvirt is the source of truth for what exists. A domain is vmfleet's when its XML holds
an `<vmfleet:instance>` element in our namespace; a volume is one of its VM's when that
domain lists it as a disk (or the journal recorded creating it). Names (`drivers.names`)
only say where to look. Nothing else is ever changed or removed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

NAMESPACE = "https://vmfleet.dev/xmlns/1"
PREFIX = "vmfleet"


@dataclass(frozen=True, slots=True)
class OwnerMetadata:
    """Who owns a domain: the fleet, the VM's name, its template and index, the spec hash
    (and the runtime hash: the part of the spec that shapes the running VM; '' if unknown)."""

    fleet: str
    vm: str
    template: str
    index: int | None
    spec_hash: str
    # The VM's SSH host PUBLIC key ("ssh-ed25519 AAAA…"), so known_hosts can be rebuilt from
    # libvirt when the state dir is lost. Never a private key.
    host_key: str | None = None
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
        if self.host_key is not None:
            ET.SubElement(root, f"{{{NAMESPACE}}}host-key").text = self.host_key
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
        host_key = text("host-key") or None
        if host_key is not None and not host_key.startswith("ssh-"):
            host_key = None  # not a public key line: ignore it rather than trust it
        return cls(
            fleet=fleet,
            vm=vm,
            template=template,
            index=parsed_index,
            spec_hash=spec_hash,
            host_key=host_key,
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
