"""Reading a domain's serial console through a libvirt stream (works on remote hosts)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import libvirt


class ConsoleReader:
    """Reads a domain's serial console in a thread until a marker shows up or it ends."""

    def __init__(self, conn: Any, dom: Any, *, marker: str) -> None:
        self._conn = conn
        self._dom = dom
        self._marker = marker
        self._stream: Any = None
        self._chunks: list[bytes] = []
        self._thread: threading.Thread | None = None
        self.found = threading.Event()

    def start(self) -> None:
        self._stream = self._conn.newStream(0)
        self._dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._thread = threading.Thread(target=self._read, name="vmf-console", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._stream.recv(4096)
                if not isinstance(data, bytes) or not data:
                    return
                self._chunks.append(data)
                if self._marker in self.text():
                    self.found.set()
        except libvirt.libvirtError:
            # The console ends with an error when the domain is destroyed. Should it end any
            # earlier, the marker was not seen: the probe's answer is then "no", with whatever
            # the console showed until then.
            return

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Call after destroying the domain: its end closes the console and the thread."""
        if self._thread is not None:
            self._thread.join(5.0)
        if self._stream is not None:
            # Frees the stream (and wakes a reader still waiting); on a stream that the
            # domain's end already closed it fails, which changes nothing.
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.abort()
        if self._thread is not None:
            self._thread.join(5.0)
