"""Connection limits for uvicorn that hold whichever HTTP parser it uses (httptools or h11).

uvicorn has no header-read timeout, arms its keep-alive timer only after a first response
(a connection that never sends a byte stays open forever), and its httptools parser ignores
``h11_max_incomplete_event_size`` (20 unfinished 32 MiB headers took a server from 108 MB to
812 MB). This wraps uvicorn's own protocol class with:

- a header deadline: a connection must complete its request line and headers within
  ``header_timeout_s`` of opening (or of its keep-alive wait ending), else it is closed;
- a header-size cap: bytes received while no request is in progress are counted before the
  parser buffers them; past ``max_header_bytes`` the answer is 431 and the connection closes;
- a connection cap: at ``max_connections``, a new connection closes the oldest one that has
  no request in progress (idle first, then unfinished headers); if every connection is busy
  the newcomer gets 503. The cap is kept under the process's open-file limit, so the server
  never runs out of descriptors and ``accept`` never stalls.

Body-read timeouts and memory are the front door's (:mod:`labkit.serve.frontdoor`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionLimits", "effective_max_connections", "guarded_protocol"]

log = logging.getLogger("labkit.serve")
_FD_RESERVE = 64  # descriptors kept for the listening socket, model files, logs, threads


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_s: float
    max_header_bytes: int
    keepalive_timeout_s: float


def effective_max_connections(wanted: int, listeners: int = 1) -> int:
    """``wanted``, lowered to stay under the open-file limit (``ulimit -n``); with several
    listeners (REST and gRPC) each gets its share of that limit, so together they fit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (int(soft) - _FD_RESERVE) // max(1, listeners)))


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def guarded_protocol(
    base: type[asyncio.Protocol], limits: ConnectionLimits
) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's protocol class ``base`` enforcing ``limits``."""

    class Guarded(base):  # type: ignore[valid-type, misc]
        _limits = limits

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._lk_active = False  # headers complete, response not yet complete
            self._lk_bytes = 0  # received since the last request started or ended
            self._lk_since = self.loop.time()
            self._lk_timer: asyncio.TimerHandle | None = None
            self._lk_arm(self._limits.header_timeout_s)
            if len(self.connections) > self._limits.max_connections:
                self._lk_make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._lk_disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._lk_active:
                self._lk_bytes += len(data)
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before and self.cycle is not None:
                self._lk_active = True  # a request's headers are complete
                self._lk_bytes = 0
                self._lk_disarm()
            elif not self._lk_active and self._lk_bytes > self._limits.max_header_bytes:
                self._lk_close(
                    431,
                    "Request Header Fields Too Large",
                    f"request line and headers exceed {self._limits.max_header_bytes}"
                    " bytes (--max-header-kb)",
                )

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._lk_active = False
            self._lk_bytes = 0
            self._lk_since = self.loop.time()
            # uvicorn's keep-alive timer closes an idle connection; this bounds one that
            # starts a request and never finishes its headers
            self._lk_arm(self._limits.keepalive_timeout_s + self._limits.header_timeout_s)

        def _lk_arm(self, delay: float) -> None:
            self._lk_disarm()
            self._lk_timer = self.loop.call_later(delay, self._lk_timeout)

        def _lk_disarm(self) -> None:
            if self._lk_timer is not None:
                self._lk_timer.cancel()
                self._lk_timer = None

        def _lk_timeout(self) -> None:
            self._lk_timer = None
            if self._lk_active or self.transport is None or self.transport.is_closing():
                return
            if self._lk_bytes:
                self._lk_close(
                    408,
                    "Request Timeout",
                    "request headers did not arrive within "
                    f"{self._limits.header_timeout_s:g}s (--header-timeout)",
                )
            else:
                self.transport.close()

        def _lk_close(self, status: int, reason: str, message: str) -> None:
            self._lk_disarm()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_raw_response(status, reason, message))
                self.transport.close()

        def _lk_make_room(self) -> None:
            idle = [
                c
                for c in self.connections
                if c is not self
                and isinstance(c, Guarded)
                and not c._lk_active
                and not c.transport.is_closing()
            ]
            if not idle:
                log.warning(
                    "connection cap (%d) reached with every connection busy; refusing a new one",
                    self._limits.max_connections,
                )
                self._lk_close(
                    503,
                    "Service Unavailable",
                    f"more than {self._limits.max_connections} connections; retry",
                )
                return
            oldest = min(idle, key=lambda c: (c._lk_bytes > 0, c._lk_since))
            oldest._lk_disarm()
            oldest.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
