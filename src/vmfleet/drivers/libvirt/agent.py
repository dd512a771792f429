"""The guest channel: QEMU guest agent commands, pings, interface addresses, fsfreeze."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import libvirt
import libvirt_qemu  # type: ignore[import-untyped]  # pyproject lists only libvirt.*

from vmfleet.drivers.libvirt.connection import libvirt_message
from vmfleet.drivers.libvirt.domains import _Domains
from vmfleet.errors import GuestError, HypervisorError


class _Agent(_Domains):
    """Talks to the QEMU guest agent inside a domain through libvirt."""

    def agent_command(
        self, name: str, command: Mapping[str, Any] | str, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send one QEMU guest agent command (e.g. `{"execute": "guest-info"}`) to our domain.

        Returns the agent's whole JSON reply (`{"return": ...}`). An agent that is not
        connected or does not answer within `timeout` s raises GuestError; a domain that is not
        ours NotOwnedError; anything else from libvirt HypervisorError.
        """
        self._owned(name, doing="guest agent command")
        return self._agent(name, command, timeout=timeout)

    def agent_ping(self, name: str, *, timeout: float = 5.0) -> bool:
        """True when the guest agent answers `guest-ping`; False when the domain is off, has
        no agent channel, or the agent does not answer. Other failures raise. Any domain: a
        ping changes nothing."""
        try:
            self._agent(name, {"execute": "guest-ping"}, timeout=timeout)
        except GuestError:
            return False
        except HypervisorError as err:
            cause = err.__cause__
            if isinstance(cause, libvirt.libvirtError) and cause.get_error_code() in (
                libvirt.VIR_ERR_OPERATION_INVALID,  # domain is not running
                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,  # no agent channel configured
                libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
            ):
                return False
            raise
        return True

    def _agent(
        self, name: str, command: Mapping[str, Any] | str, *, timeout: float
    ) -> dict[str, Any]:
        dom = self._require_domain(name, doing="guest agent command")
        text = command if isinstance(command, str) else json.dumps(dict(command))
        seconds = max(1, int(timeout + 0.999))
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, text, seconds, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() in (
                libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                libvirt.VIR_ERR_AGENT_UNSYNCED,
            ):
                raise GuestError(
                    f"guest agent did not answer within {seconds} s on host {self.name}: "
                    f"{libvirt_message(err)}",
                    vm=name,
                ) from err
            raise self._error(err, doing="guest agent command", vm=name) from err
        try:
            parsed = json.loads(reply) if reply else {}
        except ValueError as err:
            raise GuestError(f"guest agent replied with invalid JSON: {reply!r}", vm=name) from err
        if not isinstance(parsed, dict):
            raise GuestError(f"guest agent replied with non-object JSON: {reply!r}", vm=name)
        return parsed

    def interface_addresses(
        self, name: str, *, source: Literal["lease", "agent"] = "lease"
    ) -> dict[str, list[str]]:
        """IP addresses of a domain's NICs by MAC, from DHCP leases or the guest agent.

        Interfaces without a MAC (the agent's loopback) are left out. Any domain.
        """
        flag = {
            "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        }[source]
        dom = self._require_domain(name, doing="read interface addresses")
        with self._call(f"read interface addresses ({source})", vm=name):
            raw = dom.interfaceAddresses(flag, 0) or {}
        result: dict[str, list[str]] = {}
        for iface in raw.values():
            mac = iface.get("hwaddr")
            if not mac or mac == "00:00:00:00:00:00":
                continue
            addrs = [str(a["addr"]) for a in iface.get("addrs") or []]
            result.setdefault(str(mac).lower(), []).extend(addrs)
        return result

    def fsfreeze(self, name: str, *, timeout: float = 10.0) -> int:
        """Freeze the guest's filesystems through its agent; the number frozen."""
        reply = self.agent_command(name, {"execute": "guest-fsfreeze-freeze"}, timeout=timeout)
        return int(reply.get("return", 0))

    def fsthaw(self, name: str, *, timeout: float = 10.0) -> int:
        """Thaw the guest's filesystems through its agent; the number thawed."""
        reply = self.agent_command(name, {"execute": "guest-fsfreeze-thaw"}, timeout=timeout)
        return int(reply.get("return", 0))
