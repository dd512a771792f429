"""The native fleet spec as typed, frozen pydantic models.

A fleet file has hosts, images, networks, defaults, profiles, vms (templates, each with
replicas) and groups. Models here check types and shapes of single values; rules that span
the file (references, duplicates, addresses inside networks) live in `validate`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vmfleet.spec.units import GIB, MIB, parse_duration, parse_size

# --- scalar types ---------------------------------------------------------------------------

# A DNS label: lowercase letters, digits and hyphens, not starting or ending with a hyphen.
# Nothing here can break out of XML, a file path or a shell word.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
WAIT_RE = re.compile(r"^(none|running|agent|ssh|command|port:\d{1,5})$")


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a name, got {type(value).__name__}")
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "at most 63 characters, not starting or ending with '-'"
        )
    return value


def _mac(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a MAC address, got {type(value).__name__}")
    mac = value.strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ValueError(f"{value!r} is not a MAC address like 52:54:00:12:34:56")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value!r} is a multicast MAC address (first octet is odd)")
    if mac == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return mac


def _ipv4(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address, got {type(value).__name__}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR such as 192.168.88.0/24, got {value!r}")
    try:
        network = ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a network in CIDR form: {error}") from None
    if network.prefixlen > 30:
        raise ValueError(f"{value!r} is too small for VMs (/30 at most)")
    return str(network)


def _memory(value: Any) -> int:
    return parse_size(value, bare_unit=MIB)


def _disk(value: Any) -> int:
    return parse_size(value, bare_unit=GIB)


def _duration(value: Any) -> float:
    return parse_duration(value)


def _wait(value: Any) -> str:
    if not isinstance(value, str) or not WAIT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a readiness check: use none, running, agent, ssh, command or port:N"
        )
    if value.startswith("port:") and not 0 < int(value[5:]) < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return value


Name = Annotated[str, BeforeValidator(_name)]
Mac = Annotated[str, BeforeValidator(_mac)]
IPv4 = Annotated[str, BeforeValidator(_ipv4)]
Cidr = Annotated[str, BeforeValidator(_cidr)]
MemorySize = Annotated[int, BeforeValidator(_memory)]
DiskSize = Annotated[int, BeforeValidator(_disk)]
Duration = Annotated[float, BeforeValidator(_duration)]
WaitFor = Annotated[str, BeforeValidator(_wait)]
Labels = dict[str, str]


class Model(BaseModel):
    """Base of every spec model: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_labels(labels: dict[str, Any] | None) -> dict[str, str] | None:
    if labels is None:
        return None
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ValueError(f"label key {key!r} is not valid")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not LABEL_VALUE_RE.match(text):
            raise ValueError(f"label value {text!r} for {key!r} is not valid")
        out[key] = text
    return out


# --- hosts, images, networks ----------------------------------------------------------------


class Capacity(Model):
    """Overrides for what libvirt reports about a host."""

    cpus: int | None = Field(default=None, gt=0)
    memory: MemorySize | None = None
    disk: DiskSize | None = None


class Overcommit(Model):
    cpu: float = Field(default=16.0, gt=0)  # as OpenStack Nova: vCPUs share cores
    memory: float = Field(default=1.0, gt=0)
    disk: float = Field(default=1.0, gt=0)


class HostSpec(Model):
    """A libvirt host. Without `uri`, the local default (qemu:///system as root)."""

    uri: str | None = None
    labels: Labels = Field(default_factory=dict)
    domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    schedulable: bool = True
    pool: str = "default"
    capacity: Capacity = Field(default_factory=Capacity)
    overcommit: Overcommit = Field(default_factory=Overcommit)

    _labels = field_validator("labels", mode="before")(_check_labels)


class ImageSpec(Model):
    """A base image: a local path, or an http(s) URL with its sha256."""

    source: str
    sha256: str | None = None
    format: Literal["qcow2", "raw"] | None = None
    arch: str = "x86_64"

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("sha256 must be 64 hex digits")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _url_needs_sha(self) -> ImageSpec:
        if self.source.startswith(("http://", "https://")) and not self.sha256:
            raise ValueError("an image downloaded from a URL needs its sha256")
        return self


class NetworkSpec(Model):
    """Where NICs attach.

    `nat` and `isolated` networks are created and owned by vmfleet; `existing` names a libvirt
    network someone else manages; `bridge` attaches to a host bridge; `user` is QEMU user-mode
    networking with an SSH port forward on 127.0.0.1.
    """

    mode: Literal["nat", "isolated", "existing", "bridge", "user"] = "nat"
    cidr: Cidr | None = None
    gateway: IPv4 | None = None
    dhcp: bool = True
    dns: list[IPv4] = Field(default_factory=list)
    reserved: list[str] = Field(default_factory=list)
    bridge: str | None = None
    name: str | None = Field(default=None, description="libvirt network name for mode existing")
    mtu: int | None = Field(default=None, ge=576, le=65535)
    domain: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> NetworkSpec:
        if self.mode in ("nat", "isolated") and self.cidr is None:
            raise ValueError(f"a {self.mode} network needs a cidr")
        if self.mode == "bridge" and not self.bridge:
            raise ValueError("a bridge network needs `bridge: <host bridge name>`")
        if self.mode == "existing" and not self.name:
            raise ValueError("an existing network needs `name: <libvirt network>`")
        if self.mode == "user" and self.cidr is not None:
            raise ValueError("a user-mode network has no cidr (QEMU picks 10.0.2.0/24)")
        if self.bridge is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.bridge):
            raise ValueError(f"{self.bridge!r} is not a valid bridge name")
        return self


# --- high availability (Pacemaker clusters) -------------------------------------------------


class ClusterStorage(Model):
    """Where an HA VM's disks live: LINSTOR/DRBD volumes, or files on a path every node sees."""

    type: Literal["linstor", "shared"] = "shared"
    pool: str | None = None
    replicas: int = Field(default=2, ge=1, le=8)
    path: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> ClusterStorage:
        if self.type == "linstor" and not self.pool:
            raise ValueError("linstor storage needs `pool: <LINSTOR storage pool>`")
        if self.type == "shared" and not (self.path and self.path.startswith("/")):
            raise ValueError("shared storage needs `path:` (an absolute directory every node sees)")
        return self


class ClusterFencing(Model):
    """STONITH: on (with a fence agent, e.g. `fence_ipmilan` or `external/...`) or off."""

    enabled: bool = True
    agent: str | None = None
    params: dict[str, str] = Field(default_factory=dict)


class ClusterSpec(Model):
    """A Pacemaker cluster whose nodes are fleet hosts; HA VMs are its resources.

    `command` reaches a node where the cluster tools run (`{node}` is replaced by the node's
    name, e.g. `[ssh, "root@{node}"]`); empty means this machine.
    """

    type: Literal["pacemaker"] = "pacemaker"
    nodes: list[Name] = Field(min_length=1)
    fencing: ClusterFencing = Field(default_factory=ClusterFencing)
    storage: ClusterStorage
    command: list[str] = Field(default_factory=list)
    definitions: str | None = None
    hypervisor: str = "qemu:///system"
    domain_type: Literal["kvm", "qemu"] = "kvm"
    migration_transport: Literal["ssh", "tcp", "tls"] = "ssh"
    migrate_options: str | None = None
    stickiness: int = Field(default=100, ge=0)
    placement_strategy: Literal["default", "utilization", "minimal", "balanced"] = "balanced"


class HaSettings(Model):
    """`ha: NAME` or `ha: {cluster: NAME, ...}`: the VM is a resource of that cluster."""

    cluster: Name
    state: Literal["started", "stopped"] = "started"
    allow_migrate: bool = True
    force_stop: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"cluster": value} if isinstance(value, str) else value


# --- VMs ------------------------------------------------------------------------------------


class DataDisk(Model):
    size: DiskSize
    name: Name | None = None
    format: Literal["qcow2", "raw"] = "qcow2"


class KernelBoot(Model):
    kernel: str
    initrd: str | None = None
    cmdline: str = ""


class WriteFile(Model):
    path: str
    content: str = ""
    permissions: str = "0644"
    owner: str = "root:root"


class Secret(Model):
    """A secret given by reference, never inline in logs: `{env: NAME}` or `{file: path}`."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


class CloudInit(Model):
    user: Name | None = None
    password: str | Secret | None = None
    ssh_keys: list[str] | None = None
    packages: list[str] | None = None
    apt_proxy: str | None = None
    write_files: list[WriteFile] | None = None
    runcmd: list[str | list[str]] | None = None
    user_data: str | None = Field(default=None, description="path to a Jinja2 user-data file")
    user_data_mode: Literal["merge", "replace"] | None = None
    install_docker: bool | None = None


class Ready(Model):
    wait_for: WaitFor = "none"
    timeout: Duration = 300.0
    command: str | None = None


class LabelSelector(Model):
    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")

    _labels = field_validator("match_labels", mode="before")(_check_labels)


class AffinityTerm(Model):
    label_selector: list[LabelSelector] = Field(alias="labelSelector")
    topology_key: str = Field(default="kubernetes.io/hostname", alias="topologyKey")


class AffinityRule(Model):
    required: list[AffinityTerm] = Field(
        default_factory=list, alias="requiredDuringSchedulingIgnoredDuringExecution"
    )
    preferred: list[AffinityTerm] = Field(
        default_factory=list, alias="preferredDuringSchedulingIgnoredDuringExecution"
    )

    @field_validator("required", "preferred", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class Affinity(Model):
    vm_affinity: AffinityRule | None = Field(default=None, alias="vmAffinity")
    vm_anti_affinity: AffinityRule | None = Field(default=None, alias="vmAntiAffinity")
    zone_affinity: AffinityRule | None = Field(default=None, alias="zoneAffinity")
    zone_anti_affinity: AffinityRule | None = Field(default=None, alias="zoneAntiAffinity")


class NicSpec(Model):
    """One NIC of a template; `mac_addresses` and `ips` have one entry per replica."""

    network: Name
    mac_addresses: list[Mac] | None = None
    ips: list[IPv4] | None = None
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"


class VmFields(Model):
    """Everything a template, a profile or `defaults` may set. None means 'not set here'."""

    hostname: Name | None = None
    description: str | None = None
    memory: MemorySize | None = None
    vcpus: int | None = Field(default=None, gt=0, le=1024)
    disk: DiskSize | None = None
    image: Name | None = None
    clone: Literal["linked", "full"] | None = None
    data_disks: list[DataDisk] | None = None
    network: Name | None = None
    nics: list[NicSpec] | None = None
    arch: str | None = None
    machine: str | None = None
    cpu_model: str | None = None
    firmware: Literal["bios", "uefi"] | None = None
    kernel: KernelBoot | None = None
    graphics: Literal["vnc", "none"] | None = None
    labels: Labels | None = None
    group: Name | None = None
    host: Name | None = None
    node_preference: list[Name] | None = None
    affinity: Affinity | None = None
    max_per_host: int | None = Field(default=None, gt=0)
    cloud_init: CloudInit | None = None
    ready: Ready | None = None
    autostart: bool | None = None
    snapshot_type: Literal["auto", "internal", "external"] | None = None
    ha: HaSettings | None = None

    _labels = field_validator("labels", mode="before")(_check_labels)

    @field_validator("node_preference", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class VmOverride(VmFields):
    """Per-replica overrides: the template's fields for one index."""


class VmTemplate(VmFields):
    """A VM, or `replicas` identical VMs named `{name}-{i}`."""

    replicas: int = Field(default=1, gt=0, le=10000)
    extends: list[Name] = Field(default_factory=list)
    mac_addresses: list[Mac] | None = None
    ips: list[IPv4] | None = None
    overrides: dict[int, VmOverride] = Field(default_factory=dict)

    @field_validator("extends", mode="before")
    @classmethod
    def _extends_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


# --- groups ---------------------------------------------------------------------------------


class BootTier(Model):
    members: list[Name]
    delay: Duration = 0.0
    wait_for: WaitFor = "running"
    timeout: Duration = 300.0
    command: str | None = None


class Retention(Model):
    keep: int = Field(gt=0)


class GroupSpec(Model):
    members: list[Name] = Field(default_factory=list)
    group: Name | None = None
    power_state: Literal["PoweredOn", "PoweredOff", "Suspended"] | None = None
    boot_order: list[BootTier] = Field(default_factory=list)
    shutdown_timeout: Duration = 60.0
    snapshots: Retention | None = None
    labels: Labels = Field(default_factory=dict)

    _labels = field_validator("labels", mode="before")(_check_labels)


class SshSettings(Model):
    """How vmfleet logs in: the user cloud-init creates, the key, and host-key policy.

    `host_keys: provided` (default) gives each VM a host key made by vmfleet and trusts only
    that; `accept-new` is for images that ignore provided keys (trust on first connection).
    """

    user: Name = "vmfleet"
    private_key: str | None = None
    host_keys: Literal["provided", "accept-new"] = "provided"


class PlacementSettings(Model):
    """How new VMs are spread over hosts: `spread` (least loaded first) or `pack`."""

    strategy: Literal["spread", "pack"] = "spread"


class FleetSpec(Model):
    """The whole fleet file."""

    fleet: Name | None = None
    hosts: dict[Name, HostSpec] = Field(default_factory=dict)
    images: dict[Name, ImageSpec] = Field(default_factory=dict)
    networks: dict[Name, NetworkSpec] = Field(default_factory=dict)
    defaults: VmFields = Field(default_factory=VmFields)
    profiles: dict[Name, VmFields] = Field(default_factory=dict)
    vms: dict[Name, VmTemplate] = Field(default_factory=dict)
    groups: dict[Name, GroupSpec] = Field(default_factory=dict)
    ssh: SshSettings = Field(default_factory=SshSettings)
    snapshots: Retention | None = None
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    clusters: dict[Name, ClusterSpec] = Field(default_factory=dict)
