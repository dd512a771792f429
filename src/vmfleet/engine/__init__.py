"""Executing plans on hosts: the functions each CLI command calls."""

from vmfleet.engine import images
from vmfleet.engine.apply import Observation, Outcome, down, make_plan, observe, up
from vmfleet.engine.operations import listing, power
from vmfleet.engine.preflight import PreflightError
from vmfleet.engine.preflight import check as preflight
from vmfleet.engine.provision import recover

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
