"""The native fleet spec as typed, frozen pydantic models.

A fleet file has hosts, images, networks, defaults, profiles, vms (templates, each with
replicas) and groups. Models here check the shapes of sections; single values are checked by
the types in `values`, and rules that span the file (references, duplicates, addresses
inside networks, address pools) live in `validate`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vmfleet.spec import catalog
from vmfleet.spec.farm import FarmSpec
from vmfleet.spec.farm import KernelBoot as KernelBoot  # defined there, a VM field here
from vmfleet.spec.prepare import ImagePrepare
from vmfleet.spec.values import (
    Cidr,
    Count,
    DiskSize,
    Duration,
    HttpUrl,
    ImageName,
    IPv4,
    Labels,
    Line,
    LoginUser,
    Mac,
    MemorySize,
    Name,
    Power,
    Reserved,
    SshKey,
    Text,
    WaitFor,
    check_labels,
    one_or_list,
)


class Model(BaseModel):
    """Base of every spec model: frozen, unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False, defer_build=True
    )


# --- hosts, images, networks ----------------------------------------------------------------


class Capacity(Model):
    """Overrides for what libvirt reports about a host."""

    cpus: Count | None = Field(default=None, gt=0)
    memory: MemorySize | None = None
    disk: DiskSize | None = None


class Overcommit(Model):
    cpu: float = Field(default=16.0, gt=0)  # as OpenStack Nova: vCPUs share cores
    memory: float = Field(default=1.0, gt=0)
    disk: float = Field(default=1.0, gt=0)


class HostSpec(Model):
    """A libvirt host. Without `uri`, the local default (qemu:///system as root)."""

    uri: Line | None = None
    labels: Labels = Field(default_factory=dict)
    domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    schedulable: bool = True
    pool: str = "default"
    capacity: Capacity = Field(default_factory=Capacity)
    overcommit: Overcommit = Field(default_factory=Overcommit)

    _labels = field_validator("labels", mode="before")(check_labels)


class ImageSpec(Model):
    """A base image: a local path, an http(s) URL with its sha256 (or with `checksums`, the
    URL of the publisher's checksum list that names it), or a `catalog` name (the URL from
    the catalog). A digest read from a checksum list is read at the first pull and pinned.
    `prepare` converts, extends or sets it up once, before any host gets it."""

    source: Line = ""
    sha256: str | None = None
    checksums: Line | None = None
    format: Literal["qcow2", "raw"] | None = None
    arch: Line = "x86_64"
    catalog: Line | None = None
    user: LoginUser | None = None
    prepare: ImagePrepare | None = None

    @field_validator("sha256", mode="before")
    @classmethod
    def _sha(cls, value: Any) -> str | None:
        if value is not None and not (
            isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value)
        ):
            raise ValueError(f"sha256 must be a text of 64 hex digits, got {value!r}")
        return value.lower() if value else value

    @model_validator(mode="before")
    @classmethod
    def _from_catalog(cls, data: Any) -> Any:
        """A catalog name gives the source URL and the login user (unless given)."""
        if not isinstance(data, dict) or not isinstance(data.get("catalog"), str):
            return data
        if data.get("source"):
            raise ValueError("give either catalog or source, not both")
        arch = data.get("arch", "x86_64")
        entry = catalog.find(data["catalog"], str(arch))
        if entry is None:
            raise ValueError(
                f"{data['catalog']!r} for {arch} is not in the catalog; known: "
                f"{', '.join(catalog.NAMES)} (`vmfleet image catalog` lists them)"
            )
        return {**data, "source": entry.url, "user": data.get("user", entry.user)}

    @model_validator(mode="after")
    def _url_needs_sha(self) -> ImageSpec:
        if not self.source:
            raise ValueError("an image needs a source (a path or URL) or a catalog name")
        url = self.source.startswith(("http://", "https://"))
        if self.checksums is not None and (
            self.catalog or not url or not self.checksums.startswith(("http://", "https://"))
        ):
            raise ValueError("checksums is the http(s) URL of the checksum list of an URL source")
        if self.catalog is None and url and not self.sha256 and not self.checksums:
            raise ValueError(
                "an image downloaded from a URL needs its sha256 "
                "(or `checksums:`, the URL of the publisher's checksum list that names it)"
            )
        return self

    @property
    def login_user(self) -> str | None:
        """The user VMs of this image log in as unless the file says otherwise: `user`, else
        the one `prepare.setup` gives the fleet's key to."""
        setup = self.prepare.setup if self.prepare else None
        return self.user or (setup.user if setup else None)


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
    reserved: list[Reserved] = Field(default_factory=list)
    bridge: str | None = None
    name: str | None = Field(default=None, description="libvirt network name for mode existing")
    mtu: Count | None = Field(default=None, ge=576, le=65535)
    domain: Line | None = None

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


class WriteFile(Model):
    path: Line
    content: Text = ""
    permissions: Line = "0644"
    owner: Line = "root:root"


class Secret(Model):
    """A secret given by reference, never inline in logs: `{env: NAME}` or `{file: path}`."""

    env: Line | None = None
    file: Line | None = None

    @model_validator(mode="after")
    def _one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


class CloudInit(Model):
    user: LoginUser | None = None
    password: Line | Secret | None = None
    ssh_keys: list[SshKey] | None = None
    packages: list[Line] | None = None
    apt_proxy: HttpUrl | None = None
    write_files: list[WriteFile] | None = None
    runcmd: list[Text | list[Text]] | None = None
    user_data: Line | None = Field(default=None, description="path to a Jinja2 user-data file")
    user_data_mode: Literal["merge", "replace"] | None = None
    install_docker: bool | None = None


class Ready(Model):
    wait_for: WaitFor = "none"
    timeout: Duration = 300.0
    command: Text | None = None


class LabelSelector(Model):
    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")

    _labels = field_validator("match_labels", mode="before")(check_labels)


class AffinityTerm(Model):
    label_selector: list[LabelSelector] = Field(alias="labelSelector")
    topology_key: Line = Field(default="kubernetes.io/hostname", alias="topologyKey")


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

    _one_address = field_validator("mac_addresses", "ips", mode="before")(one_or_list)


class VmFields(Model):
    """Everything a template, a profile or `defaults` may set. None means 'not set here'."""

    hostname: Name | None = None
    description: Text | None = None
    memory: MemorySize | None = None
    vcpus: Count | None = Field(default=None, gt=0, le=1024)
    disk: DiskSize | None = None
    image: ImageName | None = None
    clone: Literal["linked", "full"] | None = None
    data_disks: list[DataDisk] | None = None
    network: Name | None = None
    nics: list[NicSpec] | None = None
    arch: Line | None = None
    machine: Line | None = None
    cpu_model: Line | None = None
    firmware: Literal["bios", "uefi"] | None = None
    kernel: KernelBoot | None = None
    graphics: Literal["vnc", "none"] | None = None
    labels: Labels | None = None
    group: Name | None = None
    host: Name | None = None
    node_preference: list[Name] | None = None
    affinity: Affinity | None = None
    max_per_host: Count | None = Field(default=None, gt=0)
    cloud_init: CloudInit | None = None
    ready: Ready | None = None
    autostart: bool | None = None
    power: Power | None = None
    snapshot_type: Literal["auto", "internal", "external"] | None = None
    ha: HaSettings | None = None

    _labels = field_validator("labels", mode="before")(check_labels)

    @field_validator("ready", mode="before")
    @classmethod
    def _ready_shorthand(cls, value: Any) -> Any:
        """`ready: ssh` means `ready: {wait_for: ssh}`."""
        return {"wait_for": value} if isinstance(value, str) else value

    @field_validator("node_preference", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class VmOverride(VmFields):
    """Per-replica overrides: the template's fields for one index."""


class VmTemplate(VmFields):
    """A VM, or `replicas` identical VMs named `{name}-{i}`."""

    replicas: Count = Field(default=1, gt=0, le=10000)
    extends: list[Name] = Field(default_factory=list)
    mac_addresses: list[Mac] | None = None
    ips: list[IPv4] | None = None
    overrides: dict[int, VmOverride] = Field(default_factory=dict)

    _one_address = field_validator("mac_addresses", "ips", mode="before")(one_or_list)

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
    command: Text | None = None


class Retention(Model):
    keep: Count = Field(gt=0)


class GroupSpec(Model):
    members: list[Name] = Field(default_factory=list)
    group: Name | None = None
    power_state: Literal["PoweredOn", "PoweredOff", "Suspended"] | None = None
    boot_order: list[BootTier] = Field(default_factory=list)
    shutdown_timeout: Duration = 60.0
    snapshots: Retention | None = None
    labels: Labels = Field(default_factory=dict)

    _labels = field_validator("labels", mode="before")(check_labels)


class SshSettings(Model):
    """How vmfleet logs in: the user cloud-init creates, the key, and host-key policy.

    `host_keys: provided` (default) gives each VM a host key made by vmfleet and trusts only
    that; `accept-new` is for images that ignore provided keys (trust on first connection).
    """

    user: LoginUser = "vmfleet"
    private_key: Line | None = None
    host_keys: Literal["provided", "accept-new"] = "provided"


class PlacementSettings(Model):
    """How new VMs are spread over hosts: `spread` (least loaded first) or `pack`."""

    strategy: Literal["spread", "pack"] = "spread"


class FleetSpec(Model):
    """The whole fleet file."""

    fleet: Name | None = None
    hosts: dict[Name, HostSpec] = Field(default_factory=dict)
    images: dict[ImageName, ImageSpec] = Field(default_factory=dict)
    networks: dict[Name, NetworkSpec] = Field(default_factory=dict)
    defaults: VmFields = Field(default_factory=VmFields)
    profiles: dict[Name, VmFields] = Field(default_factory=dict)
    vms: dict[Name, VmTemplate] = Field(default_factory=dict)
    groups: dict[Name, GroupSpec] = Field(default_factory=dict)
    ssh: SshSettings = Field(default_factory=SshSettings)
    snapshots: Retention | None = None
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    farm: FarmSpec | None = None
    trusted_paths: list[Line] = Field(
        default_factory=list,
        description="folders outside the fleet file's that user-data and secret files may be in",
    )
    clusters: dict[Name, ClusterSpec] = Field(default_factory=dict)
