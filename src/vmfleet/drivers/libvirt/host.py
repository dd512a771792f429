"""The hypervisor seam: one libvirt host behind a typed, ownership-checking interface.

`LibvirtHost` is composed of one mixin per concern, each in its own module and each able to
call the ones below it: connection ← storage ← networks ← domains ← agent ← snapshots ←
probe ← capabilities ← stats ← watch ← `LibvirtHost`.

`LibvirtHost` wraps one libvirt connection (any URI: `qemu:///system`, `qemu+ssh://...`, and
`test:///default` in fast tests) and returns small frozen dataclasses, never libvirt objects.

Rules every method follows:

- Ownership first. A mutating call on a domain checks that it carries our metadata
  (`metadata.OwnerMetadata`); on a volume, that its name has our prefix (`vmf-`); on a
  network, that its `<metadata>` holds an element in our namespace. Otherwise
  `NotOwnedError`, before anything changes.
- No failure is swallowed. Every `libvirt.libvirtError` becomes a `HypervisorError` naming
  the host, the VM (when there is one) and what was being done; when the connection itself
  is gone it is a `HostUnreachableError`. The libvirt error stays chained as `__cause__`.
- Idempotent where the engine needs it: `start` on a running domain, `destroy` and
  `shutdown` on a stopped one do nothing; `undefine`, `delete_volume` and `remove_network`
  return False when there was nothing to remove.

Threads: one `LibvirtHost` may be shared by many worker threads. libvirt connections are
thread-safe for calls; this class only adds locks around the lazy connect and the KVM probe
cache. Check-then-act sequences (ownership check, then change) are not atomic across
threads or processes: two vmfleet workers must not operate on the same object at once,
which the engine's per-fleet lock guarantees.

Keepalive: for remote URIs (with a host name) the connection gets libvirt keepalive
messages, which need libvirt's event loop; `start_event_loop()` runs it in a daemon thread
and is called automatically for such URIs unless `keepalive=None`.
"""

from __future__ import annotations

from vmfleet.drivers.libvirt.watch import _Watch


class LibvirtHost(_Watch):
    """One libvirt host, connected lazily on first use (or eagerly with `LibvirtHost.open`).

    `name` is how errors name the host (default: the URI). See the module docstring for
    ownership, error and threading rules.
    """


__all__ = ["LibvirtHost"]
