"""Everything one command needs about a fleet: the loaded spec, hosts, state and keys."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vmfleet.drivers.commands import CommandRunner, SubprocessRunner
from vmfleet.errors import HostUnreachableError

if TYPE_CHECKING:
    # Types only: the CLI imports this module for every command, `--help` included.
    from vmfleet.core.expand import Instance
    from vmfleet.core.placement import PlacementResult
    from vmfleet.drivers.libvirt import LibvirtHost
    from vmfleet.spec.load import LoadedFleet
    from vmfleet.spec.models import HostSpec
    from vmfleet.state.store import Store

LOCAL_HOST = "local"

# (uri, host name) → the host's connection; the seam tests replace (see `vmfleet.Fleet.open`)
HostFactory = Callable[[str, str], "LibvirtHost"]


def connect_host(uri: str, name: str) -> LibvirtHost:
    """The default host factory: libvirt on the URI, connected on first use."""
    from vmfleet.drivers.libvirt import LibvirtHost  # libvirt loads on first connection

    return LibvirtHost(uri, name=name)


def runs_a_command(uri: str) -> bool:
    """Whether connecting to `uri` runs a local program the URI names (libvirt's `ext`
    transport, `driver+ext://...?command=...`)."""
    scheme = uri.split(":", 1)[0].lower()
    return scheme.endswith("+ext")


def default_uri() -> str:
    """qemu:///system as root, qemu:///session otherwise (or $LIBVIRT_DEFAULT_URI)."""
    return os.environ.get("LIBVIRT_DEFAULT_URI") or (
        "qemu:///system" if os.geteuid() == 0 else "qemu:///session"
    )


def state_dir_for(loaded: LoadedFleet, override: Path | None) -> Path:
    """`.vmfleet/` beside the fleet file, unless `--state` says otherwise."""
    return override if override is not None else loaded.path.parent / ".vmfleet"


@dataclass
class FleetContext:
    loaded: LoadedFleet
    store: Store
    state_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _hosts: dict[str, LibvirtHost] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    placement: PlacementResult | None = None
    # local programs (ssh-keygen, gate commands) run through this seam
    runner: CommandRunner = field(default_factory=SubprocessRunner)
    host_factory: HostFactory = connect_host
    # Base volumes one `up` found whole, (uri, pool, name) -> (path, format, size): the
    # run's other VMs use them without asking the host again. Set for the run's duration.
    base_memo: dict[tuple[str, str, str], tuple[str, str, int]] | None = None
    # (leases seen, addresses handed out, instances) of the last expansion; see `instances`.
    _expansion: (
        tuple[
            dict[tuple[str, str, int], str], dict[tuple[str, str, int], str], tuple[Instance, ...]
        ]
        | None
    ) = None

    @property
    def fleet(self) -> str:
        return self.loaded.name

    def host_specs(self) -> dict[str, HostSpec]:
        from vmfleet.spec.models import HostSpec

        return dict(self.loaded.spec.hosts) or {LOCAL_HOST: HostSpec()}

    def host(self, name: str) -> LibvirtHost:
        """The connection to a host, opened on first use (HostUnreachableError if it can't)."""

        with self._lock:
            if name not in self._hosts:
                uri = self.host_specs()[name].uri or default_uri()
                if self.store.readonly and runs_a_command(uri):
                    raise HostUnreachableError(
                        f"not contacted: {uri} runs a local command to connect (ext transport), "
                        "which read-only commands never do; `up`, `down` and `hosts --probe` do",
                        host=name,
                    )
                self._hosts[name] = self.host_factory(uri, name)
            host = self._hosts[name]
        host.connect()
        return host

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        self.store.close()

    def instances(self) -> list[Instance]:
        """The fleet's VMs that libvirt manages (HA VMs are their cluster's: `engine.ha`),
        with MACs and IPs kept from earlier runs.

        Expanded once per command: the answer is kept while the leases in the store are the
        ones it was computed from, or ones recorded from it (provisioning a VM leases the
        very addresses it was given). Any other lease change expands again.
        """
        from vmfleet.core.expand import Leases, expand
        from vmfleet.spec.resolve import is_ha

        leases = {
            (le.kind, le.vm, le.slot): le.value
            for kind in ("mac", "ip")
            for le in self.store.leases(kind)
        }
        cached = self._expansion
        if cached is not None:
            seen, known, kept = cached
            if all(
                seen.get(key) == value or known.get(key) == value for key, value in leases.items()
            ):
                return list(kept)
        instances = expand(
            self.loaded.spec,
            fleet=self.fleet,
            leases=Leases(
                macs={(vm, slot): v for (kind, vm, slot), v in leases.items() if kind == "mac"},
                ips={(vm, slot): v for (kind, vm, slot), v in leases.items() if kind == "ip"},
            ),
        )
        # HA VMs belong to their Pacemaker cluster (engine.ha), never to libvirt directly
        instances = [i for i in instances if not is_ha(self.loaded.spec, i.template, i.index)]
        known = {("mac", i.name, n): nic.mac for i in instances for n, nic in enumerate(i.nics)}
        known |= {
            ("ip", i.name, n): nic.ip for i in instances for n, nic in enumerate(i.nics) if nic.ip
        }
        self._expansion = (leases, known, tuple(instances))
        return instances

    def place(self, instance: Instance) -> str:
        """Where a VM no host has yet would go, for listings: its pin, else the host placement
        chose (all new VMs are placed together, once per context; see `engine.hosts`), else,
        when placement finds none, its first preference or the first schedulable host."""
        from vmfleet.engine import apply, hosts  # both import this module

        if instance.fields.host:
            return instance.fields.host
        if self.placement is None:
            observed = {o.name: o.host for o in apply.observe(self).vms}
            hosts.placement(self, observed, probe=False)
        assert self.placement is not None
        if instance.name in self.placement.hosts:
            return self.placement.hosts[instance.name]
        specs = self.host_specs()
        schedulable = [name for name, spec in specs.items() if spec.schedulable]
        return next(iter([*instance.fields.node_preference, *schedulable, *specs]))

    def generated_key_missing(self) -> Path | None:
        """The fleet's generated login key when the fleet logs in with it and it is gone
        (never kept in libvirt: VMs made with it accept nothing else)."""
        return self.state_dir / "id_ed25519" if self.existing_ssh_key() is None else None

    def ssh_public_key(self) -> str:
        """The user's default public key, else a fleet key generated in the state folder."""
        private = self.ssh_private_key()
        public = Path(str(private) + ".pub")
        if not public.exists():
            # A fleet key whose .pub was lost (an older vmfleet killed while making it, or a
            # user's rm): its public half is in the private key.
            found = self.runner.run(["ssh-keygen", "-y", "-f", str(private)])
            text = found.stdout_text().strip()
            if private.parent == self.state_dir and not self.store.readonly:
                made = self.store.tmp_dir() / f"id_ed25519.pub.{uuid.uuid4().hex[:8]}"
                made.write_text(text + "\n")
                os.replace(made, public)
            return text
        return public.read_text().strip()

    def existing_ssh_key(self) -> Path | None:
        """The private key VMs get: configured, the user's default, or the fleet key in the
        state folder; None when it is the fleet key and that was never generated (read-only
        commands show that rather than generate one)."""
        configured = self.loaded.spec.ssh.private_key
        if configured:
            return Path(configured).expanduser()
        for candidate in ("id_ed25519", "id_ecdsa", "id_rsa"):
            path = Path.home() / ".ssh" / candidate
            if path.exists() and Path(str(path) + ".pub").exists():
                return path
        key = self.state_dir / "id_ed25519"
        return key if key.exists() else None

    def ssh_private_key(self) -> Path:
        """`existing_ssh_key`, generating the fleet key in the state folder when there is none."""
        found = self.existing_ssh_key()
        if found is not None:
            return found
        key = self.state_dir / "id_ed25519"
        with self._lock:
            if not key.exists():
                self.state_dir.mkdir(parents=True, exist_ok=True)
                # Made aside in the state dir's tmp/ (swept after a kill) and moved in public
                # half first: whoever sees the private key (another VM's thread, without this
                # lock) finds its .pub beside it, and a kill leaves no half pair in place.
                made = self.store.tmp_dir() / f"id_ed25519.{uuid.uuid4().hex[:8]}"
                comment = f"vmfleet-{self.fleet}"
                self.runner.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(made)]
                )
                os.replace(f"{made}.pub", f"{key}.pub")
                os.replace(made, key)
        return key
