"""Sizes and durations as users write them (the replicas doc's `4096` MiB and `40G`)."""

import pytest

from vmfleet.spec.units import GIB, MIB, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "bare", "expected"),
    [
        (4096, MIB, 4096 * MIB),  # vm_memory: 4096 is MiB
        ("40G", GIB, 40 * GIB),  # vm_disk_size: "40G" is qemu-img's binary G
        ("4GiB", MIB, 4 * GIB),
        ("4Gi", MIB, 4 * GIB),  # Kubernetes quantity
        ("512MB", MIB, 512 * 1000**2),  # decimal
        ("1.5GiB", MIB, int(1.5 * GIB)),
        (300, GIB, 300 * GIB),  # cluster doc disk size: 300 is GB
        ("2048", MIB, 2048 * MIB),
        ("1T", GIB, 1024 * GIB),
    ],
)
def test_sizes_parse(value: object, bare: int, expected: int) -> None:
    assert parse_size(value, bare_unit=bare) == expected


@pytest.mark.parametrize("value", ["12 parsecs", "", "-1G", 0, -5, True, None, "G", [1]])
def test_bad_sizes_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value, bare_unit=MIB)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("1m", 60), ("90s", 90), ("1m30s", 90), ("250ms", 0.25), (5, 5), ("2h", 7200)],
)
def test_durations_parse(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1x", "-3", "30s later", True])
def test_bad_durations_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_sizes_format_for_people() -> None:
    assert format_size(4 * GIB) == "4GiB"
    assert format_size(512 * MIB) == "512MiB"
    assert format_size(int(1.5 * GIB)) == "1.5GiB"
