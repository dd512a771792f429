"""Executing plans on hosts: the functions each CLI command calls.

Loaded on first use (PEP 562): importing `vmfleet.engine` costs nothing, so `vmfleet --help`
and `validate` never load libvirt, asyncssh, pycdlib or Jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfleet.engine import (
        access,
        catalog,
        checks,
        evacuate,
        execute,
        farm,
        groups,
        ha,
        hostlocks,
        hosts,
        images,
        inflight,
        junit,
        migrate,
        moves,
        preflight,
        snapshots,
    )
    from vmfleet.engine.apply import Observation, Outcome, down, make_plan, observe, up
    from vmfleet.engine.operations import listing, power
    from vmfleet.engine.preflight import PreflightError
    from vmfleet.engine.provision import recover

# name -> (module, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Observation": ("vmfleet.engine.apply", "Observation"),
    "Outcome": ("vmfleet.engine.apply", "Outcome"),
    "PreflightError": ("vmfleet.engine.preflight", "PreflightError"),
    "down": ("vmfleet.engine.apply", "down"),
    "access": ("vmfleet.engine.access", None),
    "catalog": ("vmfleet.engine.catalog", None),
    "checks": ("vmfleet.engine.checks", None),
    "evacuate": ("vmfleet.engine.evacuate", None),
    "execute": ("vmfleet.engine.execute", None),
    "farm": ("vmfleet.engine.farm", None),
    "groups": ("vmfleet.engine.groups", None),
    "ha": ("vmfleet.engine.ha", None),
    "hostlocks": ("vmfleet.engine.hostlocks", None),
    "hosts": ("vmfleet.engine.hosts", None),
    "images": ("vmfleet.engine.images", None),
    "inflight": ("vmfleet.engine.inflight", None),
    "junit": ("vmfleet.engine.junit", None),
    "migrate": ("vmfleet.engine.migrate", None),
    "moves": ("vmfleet.engine.moves", None),
    "preflight": ("vmfleet.engine.preflight", None),
    "snapshots": ("vmfleet.engine.snapshots", None),
    "listing": ("vmfleet.engine.operations", "listing"),
    "make_plan": ("vmfleet.engine.apply", "make_plan"),
    "observe": ("vmfleet.engine.apply", "observe"),
    "power": ("vmfleet.engine.operations", "power"),
    "recover": ("vmfleet.engine.provision", "recover"),
    "up": ("vmfleet.engine.apply", "up"),
}

__all__ = [
    "Observation",
    "Outcome",
    "PreflightError",
    "access",
    "catalog",
    "checks",
    "down",
    "evacuate",
    "execute",
    "farm",
    "groups",
    "ha",
    "hostlocks",
    "hosts",
    "images",
    "inflight",
    "junit",
    "listing",
    "make_plan",
    "migrate",
    "moves",
    "observe",
    "power",
    "preflight",
    "recover",
    "snapshots",
    "up",
]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'vmfleet.engine' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
