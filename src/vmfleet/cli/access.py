"""Reaching the VMs: ssh, ssh-config, inventory, ips, exec, console."""

from __future__ import annotations
