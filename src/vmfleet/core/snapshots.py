"""Snapshot defaults that the command line shows before any fleet is loaded.

Kept apart from `engine.snapshots` (which loads libvirt's side and the spec models) so that
`vmfleet snapshot create --help` can print its default without importing the engine.
"""

from __future__ import annotations

DEFAULT_TIMEOUT = 300.0  # seconds one VM's snapshot call may take
