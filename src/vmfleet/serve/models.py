"""The JSON shapes of the REST API (pydantic, so the OpenAPI document describes them).

Group conditions have the shape of seed 004's status and of `vmfleet status -o json`:
`type`, `status` ("True"/"False"), `reason`, `message`, `lastTransitionTime`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vmfleet.core import groups as core
from vmfleet.engine.monitor import FleetView, HostView, VmView
from vmfleet.state.events import Event, iso_time


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class ConditionModel(_Model):
    type: str
    status: Literal["True", "False"]
    reason: str
    message: str
    lastTransitionTime: str | None = None  # noqa: N815 - seed 004's field name


class MemberModel(_Model):
    name: str
    kind: str
    conditions: list[ConditionModel]


class GroupModel(_Model):
    name: str
    parent: str | None
    powerState: str | None  # noqa: N815
    lastUpdatedPowerStateTime: str | None  # noqa: N815
    ready: bool
    conditions: list[ConditionModel]
    members: list[MemberModel]


class VmModel(_Model):
    name: str
    template: str
    host: str | None
    state: str
    groups: list[str]
    ips: list[str]
    vcpus: int | None = None
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    max_memory_bytes: int | None = None
    rss_bytes: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    uptime_seconds: float | None = None
    ready_seconds: float | None = None


class FleetModel(_Model):
    fleet: str
    time: str
    gather_seconds: float
    vms: int
    running: int
    hosts: list[HostView]
    groups_ready: dict[str, bool]


class EventModel(_Model):
    id: int
    time: str
    fleet: str
    object: str | None
    reason: str
    message: str


class SnapshotModel(_Model):
    vm: str
    name: str
    time: str | None = None
    type: str | None = None
    vm_state: str | None = None
    parent: str | None = None
    size_bytes: int | None = None
    consistency: str | None = None


class GroupPowerRequest(_Model):
    action: Literal["on", "off", "suspend", "resume"]


class SnapshotRequest(_Model):
    name: str = Field(description="The snapshot's name.")
    vms: list[str] = Field(default_factory=list, description="These VMs, or:")
    group: str | None = Field(default=None, description="every VM of this group, or:")
    all: bool = Field(default=False, description="every VM of the fleet.")


class ActionResultModel(_Model):
    vm: str
    ok: bool
    detail: str


class ActionModel(_Model):
    ok: bool
    results: list[ActionResultModel]
    pause_window_seconds: float | None = None


class ErrorModel(_Model):
    error: str


def condition(c: core.Condition) -> ConditionModel:
    return ConditionModel(
        type=c.type,
        status="True" if c.status == "True" else "False",
        reason=c.reason,
        message=c.message,
        lastTransitionTime=None if c.time is None else iso_time(c.time),
    )


def group(g: core.GroupStatus) -> GroupModel:
    return GroupModel(
        name=g.name,
        parent=g.parent,
        powerState=g.power_state,
        lastUpdatedPowerStateTime=None
        if g.last_updated_power_state_time is None
        else iso_time(g.last_updated_power_state_time),
        ready=all(c.status == "True" for c in g.conditions),
        conditions=[condition(c) for c in g.conditions],
        members=[
            MemberModel(name=m.name, kind=m.kind, conditions=[condition(c) for c in m.conditions])
            for m in g.members
        ],
    )


def vm(v: VmView) -> VmModel:
    s = v.stats
    counters = (
        {}
        if s is None
        else {
            "vcpus": s.vcpus,
            "cpu_seconds": s.cpu_seconds,
            "memory_bytes": s.memory_bytes,
            "max_memory_bytes": s.max_memory_bytes,
            "rss_bytes": s.rss_bytes,
            "disk_read_bytes": s.disk_read_bytes,
            "disk_write_bytes": s.disk_write_bytes,
            "net_rx_bytes": s.net_rx_bytes,
            "net_tx_bytes": s.net_tx_bytes,
            "uptime_seconds": s.uptime_seconds,
        }
    )
    return VmModel(
        name=v.name,
        template=v.template,
        host=v.host,
        state=v.state,
        groups=list(v.groups),
        ips=list(v.ips),
        ready_seconds=v.ready_seconds,
        **counters,
    )


def fleet(view: FleetView) -> FleetModel:
    return FleetModel(
        fleet=view.fleet,
        time=iso_time(view.at),
        gather_seconds=round(view.seconds, 4),
        vms=len(view.vms),
        running=sum(1 for v in view.vms if v.state == "running"),
        hosts=list(view.hosts),
        groups_ready={g.name: all(c.status == "True" for c in g.conditions) for g in view.groups},
    )


def event(e: Event) -> EventModel:
    return EventModel.model_validate(e.to_json())
