"""What `vmfleet` exports is its stable API: this list changes only on purpose."""

import vmfleet

PINNED = {
    "Confirm",
    "Event",
    "ExpandedVm",
    "Fleet",
    "FleetError",
    "FleetSpec",
    "GuestError",
    "HostUnreachableError",
    "HypervisorError",
    "ImageError",
    "ImageProgress",
    "ImageRow",
    "Instance",
    "Leases",
    "LoadedFleet",
    "LockedError",
    "NotOwnedError",
    "Outcomes",
    "PlacementError",
    "Plan",
    "Planned",
    "Position",
    "Problem",
    "Notice",
    "ImagePrepared",
    "Recovered",
    "SnapshotRow",
    "SpecError",
    "Stage",
    "StateError",
    "TemplateSummary",
    "UpResult",
    "UsageError",
    "Validation",
    "VmInfo",
    "VmOutcome",
    "VmProgress",
    "__version__",
    "diff",
    "expand",
    "load",
}


def test_public_api_is_pinned() -> None:
    assert set(vmfleet.__all__) == PINNED
    for name in vmfleet.__all__:
        assert hasattr(vmfleet, name), name


def test_the_library_loads_a_fleet_without_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f.yaml"
    path.write_text("images: {d: {source: /x}}\nvms: {web: {replicas: 2, image: d}}\n")
    loaded = vmfleet.load(path)
    assert [i.name for i in vmfleet.expand(loaded.spec, fleet=loaded.name)] == ["web-0", "web-1"]


def test_import_vmfleet_does_not_load_the_engine() -> None:
    import subprocess
    import sys

    code = "import sys, vmfleet; print('vmfleet.api' in sys.modules, 'libvirt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
