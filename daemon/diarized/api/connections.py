"""How many connections a client can hold open, and for how long without a request.

uvicorn closes a keep-alive connection that stays idle after a response, but a
new connection that never sends its request (or sends its headers a byte at a
time) is kept forever: 1,100 such half-open connections used up the process's
descriptors and /healthz stopped answering. Here:

- a connection must finish its request's headers within api_header_timeout_seconds
  of connecting (or of sending the first byte of its next request), or it is closed;
- past api_max_connections, the connection that has waited longest for its
  headers is closed to make room, so a flood of idle connections cannot lock
  out a real request;
- the process's descriptor limit is raised to its hard limit at start (the
  unit sets LimitNOFILE), and api_max_connections is kept below it.
"""

from __future__ import annotations

import logging
import resource
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("diarized.api")
SPARE_DESCRIPTORS = 64  # files, the store, logs: kept free under the connection bound


def raise_descriptor_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_bound(configured: int, descriptors: int) -> int:
    return max(16, min(configured, descriptors - SPARE_DESCRIPTORS))


def guarded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """An H11Protocol class with a header deadline and a bound on open connections."""

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_timer = None
            self.waiting_since = time.monotonic()
            self._arm_header_timer()
            if len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if self.header_timer is None and (cycle is None or cycle.response_complete):
                self.waiting_since = time.monotonic()  # the first byte of the next request
                self._arm_header_timer()
            super().data_received(data)
            if self.cycle is not cycle:  # its headers are complete: a request began
                self._cancel_header_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self.header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _header_timeout(self) -> None:
            self.header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def _make_room(self) -> None:
            """Close the connection that has waited longest for its headers (never one mid-request)."""
            waiting = [c for c in self.connections if getattr(c, "header_timer", None) is not None and c is not self]
            if not waiting:
                return
            oldest = min(waiting, key=lambda c: c.waiting_since)
            oldest._cancel_header_timer()
            oldest.transport.close()

    return GuardedH11Protocol
