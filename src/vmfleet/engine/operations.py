"""Day-to-day operations on running fleets: the listing and power verbs."""

from __future__ import annotations

from collections.abc import Callable

from vmfleet.core.drift import pin_drift
from vmfleet.core.expand import Instance
from vmfleet.core.plan import Observed
from vmfleet.engine import inflight, provision
from vmfleet.engine.apply import Outcome, observe
from vmfleet.engine.context import FleetContext
from vmfleet.errors import FleetError, UsageError
from vmfleet.spec.units import format_duration, format_size


def listing(ctx: FleetContext) -> list[dict[str, object]]:
    """A row per VM of the fleet, replicas together under their template; VMs the spec wants
    that no host has are listed as `absent`, hosts that did not answer as `unreachable`. A VM
    being moved is listed on its source with the move (`migration`, see `engine.inflight`);
    one that runs elsewhere than its `host:` pin with its `drift`."""
    observation = observe(ctx)
    # a VM being moved shows on its source, with where it goes (both hosts hold it then)
    moving = inflight.journaled(ctx.store)
    have = {o.name: o for o in observation.vms}
    have |= {
        o.name: o for o in observation.vms if o.name in moving and moving[o.name].source == o.host
    }
    rows: list[dict[str, object]] = []
    wanted = ctx.instances()
    for instance in wanted:
        seen = have.pop(instance.name, None)
        host = seen.host if seen else ctx.place(instance)
        state = (
            seen.state if seen else ("unreachable" if host in observation.unreachable else "absent")
        )
        move = moving.get(instance.name)
        row = _row(
            ctx,
            instance.name,
            instance.template,
            host,
            state,
            seen,
            ips=discover_ips(ctx, instance, seen),
            user_mode=any(n.mode == "user" for n in instance.nics),
        )
        rows.append(
            {
                **row,
                "user": instance.fields.cloud_init.user or ctx.loaded.spec.ssh.user,
                "migration": None if move is None else inflight.with_transfer(ctx, move),
                "drift": pin_drift(instance, seen.host) if seen and not move else None,
            }
        )
    for name, seen in sorted(have.items()):
        template = str(observation.details.get(name, {}).get("template", "?"))
        rows.append(
            _row(
                ctx,
                name,
                template,
                seen.host,
                seen.state + " (not in spec)",
                seen,
                ips=[],
                user_mode=False,
            )
        )
    return rows


def discover_ips(ctx: FleetContext, instance: Instance, seen: Observed | None) -> list[str]:
    """Each NIC's address: the static one from the spec, else the network's DHCP lease, else
    what the guest agent reports. User-mode NICs have none (they are reached by forward)."""
    static = [n.ip for n in instance.nics if n.ip]
    dynamic = [n for n in instance.nics if not n.ip and n.mode != "user"]
    if not dynamic or seen is None or seen.state != "running":
        return static
    host = ctx.host(seen.host)
    leases = _quietly(lambda: host.interface_addresses(instance.name, source="lease"))
    found = list(static)
    agent: dict[str, list[str]] | None = None
    for nic in dynamic:
        addresses = leases.get(nic.mac, [])
        if not addresses:
            if agent is None:
                agent = _quietly(lambda: host.interface_addresses(instance.name, source="agent"))
            addresses = agent.get(nic.mac, [])
        found += [a for a in addresses if ":" not in a][:1]
    return found


def _quietly(read: Callable[[], dict[str, list[str]]]) -> dict[str, list[str]]:
    """An address source that cannot answer (no agent yet) simply has nothing to say."""
    try:
        return read()
    except FleetError:
        return {}


def _row(
    ctx: FleetContext,
    name: str,
    template: str,
    host: str,
    state: str,
    seen: Observed | None,
    *,
    ips: list[str],
    user_mode: bool,
) -> dict[str, object]:
    address: list[str] = list(ips)
    if user_mode and seen is not None:
        # the lease, else read back from the domain (after the state dir was lost)
        port = provision.existing_forward(ctx, host=host, vm=name)
        if port:
            address.append(f"127.0.0.1:{port}")
    uptime = None
    if seen is not None and seen.state == "running":
        info = ctx.host(host).get_domain(name)
        uptime = info.uptime_seconds if info else None
    return {
        "name": name,
        "template": template,
        "host": host,
        "state": state,
        "vcpus": seen.vcpus if seen else None,
        "memory": format_size(seen.memory_bytes) if seen else None,
        "disk": format_size(seen.disk_bytes) if seen and seen.disk_bytes else None,
        "ip": address or None,
        "uptime": format_duration(uptime) if uptime is not None else None,
        "uptime_seconds": uptime,
        # a definition staged for the next boot that the running VM does not run yet
        "pending": bool(seen and seen.running and seen.spec_hash != seen.defined_hash),
    }


def power(ctx: FleetContext, vms: list[str], verb: str) -> list[Outcome]:
    """start, stop (graceful, then forced) or reboot the named VMs of this fleet."""
    observation = observe(ctx)
    have = {o.name: o for o in observation.vms}
    unknown = [vm for vm in vms if vm not in have]
    if unknown:
        raise UsageError(f"no VM {', '.join(unknown)} in fleet {ctx.fleet} on any host")
    results = []
    for vm in vms:
        seen = have[vm]
        host = ctx.host(seen.host)
        if verb == "start":
            if seen.state == "running":
                results.append(Outcome(vm, verb, True, "already running"))
                continue
            host.start(vm)
            results.append(Outcome(vm, verb, True, "started"))
        elif verb == "stop":
            outcome = host.shutdown(vm, timeout=60.0)
            results.append(Outcome(vm, verb, True, f"stopped ({outcome})"))
        elif verb == "reboot":
            host.reboot(vm)
            results.append(Outcome(vm, verb, True, "rebooting"))
        else:
            raise UsageError(f"unknown power verb {verb!r}")
        ctx.store.event(kind="power", vm=vm, message=f"{results[-1].detail} (vmfleet {verb})")
    return results
