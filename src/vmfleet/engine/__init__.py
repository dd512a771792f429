"""Executing plans on hosts: the functions each CLI command calls.

Loaded on first use (PEP 562): importing `vmfleet.engine` costs nothing, so `vmfleet --help`
and `validate` never load libvirt, asyncssh, pycdlib or Jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfleet.engine import images
    from vmfleet.engine.apply import Observation, Outcome, down, make_plan, observe, up
    from vmfleet.engine.operations import listing, power
    from vmfleet.engine.preflight import PreflightError
    from vmfleet.engine.preflight import check as preflight
    from vmfleet.engine.provision import recover

# name -> (module, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Observation": ("vmfleet.engine.apply", "Observation"),
    "Outcome": ("vmfleet.engine.apply", "Outcome"),
    "PreflightError": ("vmfleet.engine.preflight", "PreflightError"),
    "down": ("vmfleet.engine.apply", "down"),
    "images": ("vmfleet.engine.images", None),
    "listing": ("vmfleet.engine.operations", "listing"),
    "make_plan": ("vmfleet.engine.apply", "make_plan"),
    "observe": ("vmfleet.engine.apply", "observe"),
    "power": ("vmfleet.engine.operations", "power"),
    "preflight": ("vmfleet.engine.preflight", "check"),
    "recover": ("vmfleet.engine.provision", "recover"),
    "up": ("vmfleet.engine.apply", "up"),
}

__all__ = [
    "Observation",
    "Outcome",
    "PreflightError",
    "down",
    "images",
    "listing",
    "make_plan",
    "observe",
    "power",
    "preflight",
    "recover",
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
