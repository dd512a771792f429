"""What every `Fleet` method shares: the loaded file, one engine context opened on first
use, the fleet lock, target resolution and turning engine callbacks into events."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from vmfleet.api.events import (
    EventCallback,
    ImagePrepared,
    ImageProgress,
    Notice,
    Stage,
    VmProgress,
    ignore,
)
from vmfleet.core import targets as core_targets
from vmfleet.drivers.commands import CommandRunner, SubprocessRunner
from vmfleet.engine.context import FleetContext, HostFactory, default_uri, state_dir_for
from vmfleet.errors import UsageError

# The engine loads where a method first needs it: `Fleet.open` and `validate` stay light
# (tests/test_startup.py checks what `validate` imports).
if TYPE_CHECKING:
    from vmfleet.core.expand import Instance
    from vmfleet.drivers.libvirt import LibvirtHost
    from vmfleet.engine.apply import Observation, Progress
    from vmfleet.spec.load import LoadedFleet
    from vmfleet.spec.models import FleetSpec


class FleetBase:
    """The plumbing under `Fleet`; see `Fleet.open`."""

    def __init__(
        self,
        loaded: LoadedFleet,
        *,
        state: Path | None = None,
        hosts: HostFactory | None = None,
        runner: CommandRunner | None = None,
        on_event: EventCallback | None = None,
        lock_wait: float = 0.0,
    ) -> None:
        self.loaded = loaded
        self.state_dir = state_dir_for(loaded, state)
        self._runner = runner or SubprocessRunner()
        self._host_factory = hosts or self._connect
        self._on_event = on_event or ignore
        self._lock_wait = lock_wait
        self._ctx: FleetContext | None = None

    def _connect(self, uri: str, name: str) -> LibvirtHost:
        from vmfleet.drivers.libvirt import LibvirtHost  # libvirt loads on first connection

        return LibvirtHost(uri, name=name, runner=self._runner)

    @property
    def name(self) -> str:
        """The fleet's name (its `fleet:` key, else the file's stem)."""
        return self.loaded.name

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def spec(self) -> FleetSpec:
        return self.loaded.spec

    @property
    def warnings(self) -> tuple[str, ...]:
        """What loading noticed but accepted (e.g. an importer's documented renames)."""
        return tuple(str(w) for w in self.loaded.document.warnings)

    def host_uri(self, host: str) -> str:
        """The libvirt URI of one of the fleet's hosts."""
        return self._context(readonly=True).host_specs()[host].uri or default_uri()

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close host connections and the state store (the object is unusable after)."""
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def __enter__(self) -> FleetBase:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _context(self, *, readonly: bool = False) -> FleetContext:
        """The engine context, opened on first use (so `validate` creates no state folder);
        each operation starts with placement decided afresh. `readonly` operations (plan,
        list, status, endpoints, inventory...) get a store that creates and writes nothing;
        the first operation that writes reopens it writable."""
        from vmfleet.engine import catalog
        from vmfleet.state.store import Store

        if self._ctx is None:
            self._ctx = FleetContext(
                loaded=catalog.pinned(self.loaded, self.state_dir),
                store=Store(self.state_dir, readonly=readonly),
                state_dir=self.state_dir,
                runner=self._runner,
                host_factory=self._host_factory,
            )
        elif self._ctx.store.readonly and not readonly:
            self._ctx.store.close()
            self._ctx.store = Store(self.state_dir)
        self._ctx.placement = None
        return self._ctx

    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[FleetContext]:
        """The context with the fleet lock held (LockedError after `lock_wait` seconds)."""
        from vmfleet.engine import hostlocks
        from vmfleet.state.store import fleet_lock

        ctx = self._context()

        def notice(message: str) -> None:
            self._on_event(Notice(message))

        # The state dir's lock stops runs sharing .vmfleet/; the hosts' lock, other checkouts.
        with (
            fleet_lock(self.state_dir, wait=self._lock_wait, what=what),
            hostlocks.hold(ctx, what=what, wait=self._lock_wait, notice=notice),
        ):
            yield ctx

    def _timed(self, ctx: FleetContext, operation: str) -> contextlib.AbstractContextManager[None]:
        """Record how long `operation` takes in the fleet's state (serve's histograms)."""
        from vmfleet.state import durations

        return durations.timed(ctx.store, operation)

    # --- events -------------------------------------------------------------------------------

    def _stage(self, title: str, vms: Sequence[str]) -> Progress:
        """Announce a stage and return the engine callback that reports its VMs' phases."""
        self._on_event(Stage(title, tuple(vms)))

        def progress(vm: str, phase: str, detail: str) -> None:
            self._on_event(VmProgress(vm, phase, detail))

        return progress

    def _pull(
        self,
        ctx: FleetContext,
        names: list[str] | None,
        *,
        update: bool = False,
        check: bool = False,
    ) -> tuple[str, ...]:
        from vmfleet.engine import images

        def report(image: str, done: int, total: int | None) -> None:
            self._on_event(ImageProgress(image, done, total))

        return tuple(images.pull(ctx, names, progress=report, update=update, check=check))

    def _prepare(self, ctx: FleetContext, names: list[str] | None) -> tuple[str, ...]:
        """Build the prepared files of images with `prepare:` (or those named) not cached yet,
        with `ImagePrepared` events; returns the images built."""
        from vmfleet.engine import images

        def building(image: str, path: Path) -> None:
            self._on_event(ImagePrepared(image, "building", str(path)))

        made = images.prepare_all(ctx, names, building=building)
        for item in made:
            state: Literal["built", "cached"] = "built" if item.built else "cached"
            self._on_event(ImagePrepared(item.image, state, str(item.path), item.seconds))
        return tuple(m.image for m in made if m.built)

    # --- targets ------------------------------------------------------------------------------

    def resolve(self, targets: Sequence[str]) -> list[Instance]:
        """The spec's VMs that target words name: VM names, `NAME@i`, templates (all
        replicas), groups (nested ones included) or `all` (`core.targets`)."""
        ctx = self._context(readonly=True)
        return core_targets.resolve_all(self.spec, ctx.instances(), targets, fleet=self.name)

    def _existing(self, ctx: FleetContext, targets: Sequence[str], seen: Observation) -> list[str]:
        """Names of VMs targets name, also those the spec dropped but a host still has
        (named by their VM name); spec order, then the dropped ones."""
        have = {o.name for o in seen.vms}
        wanted = {i.name for i in ctx.instances()}
        dropped = [t for t in targets if t in have and t not in wanted]
        named = core_targets.resolve_all(
            self.spec, ctx.instances(), [t for t in targets if t not in dropped], fleet=self.name
        )
        return [i.name for i in named] + dropped

    @staticmethod
    def _require_present(names: Sequence[str], seen: Observation, *, fleet: str) -> None:
        missing = [vm for vm in names if vm not in {o.name for o in seen.vms}]
        if missing:
            raise UsageError(f"no VM {', '.join(missing)} of fleet {fleet} on any host")
