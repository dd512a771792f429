"""Snapshots of one VM, a group or the whole fleet: consistent capture, revert, delete, retention.

A snapshot of several VMs captures them at one moment: every running member is first made
still — its filesystems frozen through the guest agent where the agent answers
(application-consistent), otherwise the VM paused (crash-consistent) — then all members are
snapshotted in parallel, then all are thawed or resumed. Thaw/resume runs on every path out
(errors included) and also from a safety timer, so no guest stays frozen or paused when a
snapshot hangs. The pause window is the time from the first freeze to the last thaw.

Everything here is read back from libvirt: a snapshot's kind, the VM's power state at the
time and its consistency are in the snapshot itself (vmfleet writes the last two into its
description), so nothing depends on `.vmfleet/`.
"""

from vmfleet.engine.snapshots.create import (
    Verb,
    create,
    snapshot_config,
)
from vmfleet.engine.snapshots.manage import (
    delete,
    listing,
    revert,
)
from vmfleet.engine.snapshots.members import (
    DEFAULT_TIMEOUT,
    NAME_RE,
    Consistency,
    CreateReport,
    Member,
    MemberResult,
    check_name,
    describe,
    group_vms,
    keep_for,
    members,
    note,
    snapshot_kind,
    to_prune,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "NAME_RE",
    "Consistency",
    "CreateReport",
    "Member",
    "MemberResult",
    "Verb",
    "check_name",
    "create",
    "delete",
    "describe",
    "group_vms",
    "keep_for",
    "listing",
    "members",
    "note",
    "revert",
    "snapshot_config",
    "snapshot_kind",
    "to_prune",
]
