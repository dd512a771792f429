"""Templates become instances: the replicas doc's naming, generated MACs and IPs, layering
of defaults, profiles and per-replica overrides, and the properties that must always hold."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vmfleet.core.expand import Instance, Leases, expand, generated_mac
from vmfleet.spec.load import load
from vmfleet.spec.models import FleetSpec
from vmfleet.spec.units import GIB, MIB

FIXTURES = Path(__file__).parent / "fixtures"


def names(instances: list[Instance]) -> list[str]:
    return [i.name for i in instances]


def test_replicas_are_named_from_zero_as_in_the_replicas_doc() -> None:
    loaded = load(FIXTURES / "replicas-inventory.yml")
    instances = expand(loaded.spec, fleet=loaded.name)
    assert names(instances) == ["ubuntu-dev-0", "ubuntu-dev-1", "ubuntu-dev-2"]
    assert [i.nics[0].ip for i in instances] == ["192.168.88.10", "192.168.88.11", "192.168.88.12"]
    assert [i.nics[0].mac for i in instances] == [
        "52:54:00:12:34:10",
        "52:54:00:12:34:11",
        "52:54:00:12:34:12",
    ]
    assert {i.fields.memory for i in instances} == {4096 * MIB}
    assert {i.fields.disk for i in instances} == {40 * GIB}


def spec_of(vms: dict[str, object], **extra: object) -> FleetSpec:
    return FleetSpec.model_validate(
        {
            "networks": {
                "lab": {
                    "mode": "nat",
                    "cidr": "192.168.88.0/24",
                    "reserved": ["192.168.88.2-192.168.88.9"],
                }
            },
            "images": {"deb": {"source": "/x"}},
            "defaults": {"image": "deb", "network": "lab"},
            "vms": vms,
            **extra,
        }
    )


def test_one_replica_or_none_keeps_the_bare_name() -> None:
    spec = spec_of({"solo": {}, "one": {"replicas": 1}, "two": {"replicas": 2}})
    assert names(expand(spec, fleet="f")) == ["solo", "one", "two-0", "two-1"]


def test_ips_are_allocated_skipping_gateway_reserved_and_taken() -> None:
    spec = spec_of(
        {"a": {"replicas": 2, "ips": ["192.168.88.10", "192.168.88.12"]}, "b": {"replicas": 3}}
    )
    ips = [i.nics[0].ip for i in expand(spec, fleet="f")]
    # .0 network, .1 gateway, .2-.9 reserved, .10/.12 written for a
    assert ips == [
        "192.168.88.10",
        "192.168.88.12",
        "192.168.88.11",
        "192.168.88.13",
        "192.168.88.14",
    ]


def test_generated_macs_have_the_qemu_prefix_and_are_deterministic() -> None:
    spec = spec_of({"web": {"replicas": 4}})
    first = [i.nics[0].mac for i in expand(spec, fleet="f")]
    again = [i.nics[0].mac for i in expand(spec, fleet="f")]
    assert first == again
    assert all(m.startswith("52:54:00:") for m in first)
    assert len(set(first)) == 4
    assert first[0] == generated_mac("f", "web-0", 0)
    other_fleet = [i.nics[0].mac for i in expand(spec, fleet="g")]
    assert set(first).isdisjoint(other_fleet)


def test_generated_mac_avoids_a_written_one() -> None:
    clash = generated_mac("f", "b", 0)
    spec = spec_of({"a": {"mac_addresses": [clash]}, "b": {}})
    a, b = expand(spec, fleet="f")
    assert a.nics[0].mac == clash
    assert b.nics[0].mac != clash
    assert b.nics[0].mac == generated_mac("f", "b", 0, 1)


def test_layers_stack_defaults_profiles_template_and_overrides() -> None:
    spec = spec_of(
        {
            "web": {
                "replicas": 3,
                "extends": ["big"],
                "vcpus": 4,
                "labels": {"tier": "web"},
                "overrides": {2: {"memory": "8GiB", "labels": {"canary": "yes"}}},
            }
        },
        profiles={"big": {"memory": "4GiB", "disk": "40G", "labels": {"size": "big"}}},
    )
    web0, _web1, web2 = expand(spec, fleet="f")
    assert (web0.fields.vcpus, web0.fields.memory, web0.fields.disk) == (4, 4 * GIB, 40 * GIB)
    assert web2.fields.memory == 8 * GIB
    assert web0.fields.labels == {"size": "big", "tier": "web"}
    assert web2.fields.labels == {"size": "big", "tier": "web", "canary": "yes"}


def test_cloud_init_merges_field_by_field() -> None:
    spec = spec_of(
        {"gw": {"cloud_init": {"packages": ["nginx", "keepalived"]}}},
        defaults={
            "image": "deb",
            "network": "lab",
            "cloud_init": {"apt_proxy": "http://10.10.0.148:3142", "packages": ["curl"]},
        },
    )
    (gw,) = expand(spec, fleet="f")
    assert gw.fields.cloud_init.apt_proxy == "http://10.10.0.148:3142"
    assert gw.fields.cloud_init.packages == ["nginx", "keepalived"]


def test_dual_homed_gateways_get_two_nics() -> None:
    spec = FleetSpec.model_validate(
        {
            "networks": {
                "lan": {"mode": "nat", "cidr": "192.168.68.0/24"},
                "internal": {"mode": "isolated", "cidr": "10.10.0.0/24"},
            },
            "images": {"noble": {"source": "/x"}},
            "vms": {
                "gateway": {
                    "replicas": 2,
                    "image": "noble",
                    "nics": [
                        {"network": "lan"},
                        {"network": "internal", "ips": ["10.10.0.11", "10.10.0.12"]},
                    ],
                }
            },
        }
    )
    g0, g1 = expand(spec, fleet="k8s")
    assert [n.network for n in g0.nics] == ["lan", "internal"]
    assert g0.nics[1].ip == "10.10.0.11" and g1.nics[1].ip == "10.10.0.12"
    assert g0.nics[0].gateway == "192.168.68.1"
    assert g0.nics[1].gateway is None  # isolated: no default route there


def test_user_mode_nics_have_no_static_ip() -> None:
    spec = FleetSpec.model_validate(
        {"images": {"d": {"source": "/x"}}, "vms": {"v": {"image": "d"}}}
    )
    (v,) = expand(spec, fleet="f")
    assert (v.nics[0].network, v.nics[0].mode, v.nics[0].ip) == ("user", "user", None)


# --- properties -----------------------------------------------------------------------------

templates = st.dictionaries(
    keys=st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
    values=st.integers(min_value=1, max_value=12),
    min_size=1,
    max_size=6,
)


def spec_from(counts: dict[str, int]) -> FleetSpec:
    return spec_of({name: {"replicas": n} for name, n in counts.items()})


@settings(max_examples=150, deadline=None)
@given(templates)
def test_expansion_never_yields_duplicate_names_macs_or_ips(counts: dict[str, int]) -> None:
    instances = expand(spec_from(counts), fleet="prop")
    all_names = names(instances)
    macs = [n.mac for i in instances for n in i.nics]
    ips = [n.ip for i in instances for n in i.nics]
    # Names can clash only through templates like "a" (3 replicas) and "a-1"; the regex
    # above produces no '-', so every name must be unique.
    assert len(set(all_names)) == len(all_names)
    assert len(set(macs)) == len(macs)
    assert len(set(ips)) == len(ips)
    net = ipaddress.IPv4Network("192.168.88.0/24")
    assert all(ipaddress.IPv4Address(ip) in net for ip in ips if ip)


@settings(max_examples=150, deadline=None)
@given(templates)
def test_expansion_is_the_same_on_every_run(counts: dict[str, int]) -> None:
    spec = spec_from(counts)
    assert expand(spec, fleet="prop") == expand(spec, fleet="prop")


@settings(max_examples=150, deadline=None)
@given(templates, st.data())
def test_growing_a_template_keeps_existing_addresses(
    counts: dict[str, int], data: st.DataObject
) -> None:
    before = expand(spec_from(counts), fleet="prop")
    leases = Leases(
        macs={(i.name, n): nic.mac for i in before for n, nic in enumerate(i.nics)},
        ips={(i.name, n): nic.ip for i in before for n, nic in enumerate(i.nics) if nic.ip},
    )
    grown_name = data.draw(st.sampled_from(sorted(counts)))
    grown = dict(counts)
    grown[grown_name] += data.draw(st.integers(min_value=1, max_value=5))
    after = {i.name: i for i in expand(spec_from(grown), fleet="prop", leases=leases)}
    for inst in before:
        # A template going from 1 to more replicas renames its VM (bare -> -0): skip it.
        if inst.name in after:
            assert after[inst.name].nics == inst.nics


def test_macs_do_not_depend_on_other_templates(fleet_file: Callable[[str], Path]) -> None:
    one = expand(spec_of({"web": {"replicas": 2}}), fleet="f")
    two = expand(spec_of({"db": {"replicas": 5}, "web": {"replicas": 2}}), fleet="f")
    assert [i.nics[0].mac for i in one] == [i.nics[0].mac for i in two if i.template == "web"]


# --- large networks and leases ---------------------------------------------------------------


def test_allocation_on_a_huge_network_walks_past_reserved_ranges_without_listing_it() -> None:
    spec = FleetSpec.model_validate(
        {
            "networks": {
                "big": {
                    "mode": "nat",
                    "cidr": "10.0.0.0/8",
                    "reserved": ["10.0.0.2-10.127.255.255", "10.128.0.0/16", "10.129.0.1"],
                },
                "all": {"mode": "isolated", "cidr": "0.0.0.0/0"},
            },
            "images": {"d": {"source": "/x"}},
            "vms": {
                "a": {"image": "d", "replicas": 3, "network": "big"},
                "b": {"image": "d", "replicas": 2, "network": "all"},
            },
        }
    )
    ips = [i.nics[0].ip for i in expand(spec, fleet="f")]
    # 10.0.0.1 is the gateway, then the ranges; 10.129.0.0 is free, .1 reserved.
    assert ips == ["10.129.0.0", "10.129.0.2", "10.129.0.3", "0.0.0.2", "0.0.0.3"]


def test_an_address_leased_to_a_vm_no_longer_in_the_file_stays_taken() -> None:
    spec = spec_of({"web": {"replicas": 2}})
    leases = Leases(
        ips={("old", 0): "192.168.88.10"}, macs={("old", 0): generated_mac("f", "web-0", 0)}
    )
    web0, web1 = expand(spec, fleet="f", leases=leases)
    assert (web0.nics[0].ip, web1.nics[0].ip) == ("192.168.88.11", "192.168.88.12")
    assert web0.nics[0].mac != generated_mac("f", "web-0", 0)


def test_a_leased_address_now_written_for_another_vm_goes_to_the_written_one() -> None:
    spec = spec_of({"a": {"ips": ["192.168.88.10"]}, "b": {}})
    _a, b = expand(spec, fleet="f", leases=Leases(ips={("b", 0): "192.168.88.10"}))
    assert b.nics[0].ip == "192.168.88.11"


def test_a_command_expands_once_until_the_leases_change_under_it(
    fleet_file: Callable[[str], Path], tmp_path: Path
) -> None:
    from vmfleet.engine.context import FleetContext
    from vmfleet.state.store import Store

    path = fleet_file(
        """
        networks: {lab: {mode: nat, cidr: 192.168.88.0/24}}
        images: {d: {source: /x}}
        vms: {web: {image: d, network: lab, replicas: 2}}
        """
    )
    ctx = FleetContext(loaded=load(path), store=Store(tmp_path / "s"), state_dir=tmp_path / "s")
    first = ctx.instances()
    # Recording the addresses it handed out (as provisioning does) keeps the expansion.
    web0 = first[0]
    ctx.store.lease(kind="ip", scope="lab", value=web0.nics[0].ip or "", vm=web0.name)
    ctx.store.lease(kind="mac", scope="f", value=web0.nics[0].mac, vm=web0.name)
    again = ctx.instances()
    assert all(a is b for a, b in zip(first, again, strict=True))
    # A lease it did not hand out (another run, another VM) expands again and is honoured.
    ctx.store.lease(kind="ip", scope="lab", value="192.168.88.50", vm="web-1")
    changed = ctx.instances()
    assert changed[1] is not first[1]
    assert changed[1].nics[0].ip == "192.168.88.50"
    assert changed[0].nics == first[0].nics
    ctx.close()


def test_install_docker_adds_the_package_and_starts_the_service_in_user_data() -> None:
    import yaml

    from vmfleet.drivers.cloudinit import SeedRequest, render_user_data

    spec = spec_of(
        {"box": {"cloud_init": {"packages": ["git"]}}, "plain": {}},
        defaults={"image": "deb", "network": "lab", "cloud_init": {"install_docker": True}},
    )
    box, plain = expand(spec, fleet="f")
    assert box.fields.cloud_init.packages == ["git", "docker.io"]
    assert plain.fields.cloud_init.packages == ["docker.io"]
    ci = box.fields.cloud_init
    request = SeedRequest(
        instance_id="i",
        hostname=box.hostname,
        user="vmfleet",
        packages=tuple(ci.packages or ()),
        runcmd=tuple(c if isinstance(c, str) else tuple(c) for c in ci.runcmd or ()),
    )
    data = yaml.safe_load(render_user_data(request))
    assert data["packages"] == ["git", "docker.io"]
    assert "systemctl enable --now docker" in data["runcmd"]
    off = spec_of({"box": {"cloud_init": {"install_docker": False}}})
    assert expand(off, fleet="f")[0].fields.cloud_init.packages is None
