"""The server's front door: pure-ASGI Starlette middleware for the bearer token, admission,
request bodies and request metrics.

It receives only what it uses -- the token, :class:`Limits`, the :class:`Metrics` and the
app's route table (for bounded metric labels, the open health routes and the trailing-slash
redirect) -- and runs before Starlette routes the request, so a refusal costs no body read
and no parse. Health probes and ``/metrics`` are admitted even under overload (a probe that
times out under load gets a healthy pod killed); health probes are also exempt from the token.

Request bodies are read through the door: the body cap (413), the body-read timeout (408, so
a stalled upload cannot hold anything for long), and the memory budget for bodies held at
once (503 + Retry-After). An inference takes an in-flight slot only once its body has
arrived, so slow uploads never lock out requests that are ready to run. A client that goes
away mid-body ends its request quietly (counted as 499, never as a server error).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from labkit.serve.admission import Admission, Ticket
from labkit.serve.auth import check_authorization
from labkit.serve.errors import (
    ClientGone,
    PayloadTooLarge,
    RequestTimeout,
    ServeError,
)
from labkit.serve.logs import access_log
from labkit.serve.metrics import Metrics

__all__ = ["FrontDoor", "error_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_ROUTES = frozenset({"/v2/health/live", "/v2/health/ready"})  # no token: probes
ADMITTED_ROUTES = frozenset({"infer"})  # routes that take an in-flight slot


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        admission: Admission,
        metrics: Metrics,
        routes: Sequence[BaseRoute],
        access_log: bool = False,
    ) -> None:
        self.app = app
        self._access_log = access_log
        self.admission = admission
        self.limits = admission.limits
        self.metrics = metrics
        self._routes = [r for r in routes if isinstance(r, Route)]
        self._token = token.encode() if token else None

    def route_of(self, path: str) -> str:
        """A bounded label for metrics (never the raw path: clients choose paths)."""
        for route in self._routes:
            if route.path_regex.match(path):
                return route.name
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        route = self.route_of(path)
        start = time.perf_counter()
        request = _Request(self, route, receive, start)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
            await send(message)

        try:
            headers = scope.get("headers") or []
            try:
                check_authorization(
                    [v for k, v in headers if k == b"authorization"],
                    self._token,
                    required=route not in OPEN_ROUTES,
                )
            except ServeError as refusal:
                await error_response(refusal)(scope, receive, send_wrapper)
                return
            if route == "other" and await self._redirect_slash(scope, send_wrapper):
                return
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
                too_large = PayloadTooLarge(
                    f"request body of {int(declared)} bytes exceeds "
                    f"the cap of {self.limits.max_body_bytes}"
                )
                await error_response(too_large)(scope, receive, send_wrapper)
                return
            await self.app(scope, request.receive, send_wrapper)
        finally:
            request.release()
            took = time.perf_counter() - start
            self.metrics.requests.labels(route, str(request.status)).inc()
            self.metrics.latency.labels(route).observe(took)
            if self._access_log:
                self._log(scope, request.status, took)

    def _log(self, scope: Scope, status: int, took: float) -> None:
        client = scope.get("client") or ("-", 0)
        raw: bytes = scope.get("raw_path") or scope.get("path", "").encode()
        served = scope.get("labkit.served") or (None, None)
        access_log(
            protocol="rest",
            client=str(client[0]),
            method=str(scope.get("method", "-")),
            path=raw.decode("latin-1"),
            status=status,
            duration_s=took,
            model=served[0],
            version=served[1],
        )

    async def _redirect_slash(self, scope: Scope, send: Send) -> bool:
        """``/v2/models/m/`` -> 307 to ``/v2/models/m``, with a relative Location (never
        built from the client's Host header)."""
        path: str = scope.get("path", "")
        if path == "/" or not path.endswith("/") or self.route_of(path.rstrip("/")) == "other":
            return False
        raw: bytes = scope.get("raw_path") or path.encode()
        location = raw.rstrip(b"/")
        if scope.get("query_string"):
            location += b"?" + scope["query_string"]
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", location), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True


class _Request:
    """One request's body accounting (bytes held, deadline, in-flight slot), against the
    data plane's shared :class:`Admission`."""

    def __init__(self, door: FrontDoor, route: str, receive: Receive, start: float) -> None:
        self.door = door
        self.route = route
        self._receive = receive
        self._deadline = start + door.limits.body_timeout_s
        self.status = 500
        self._ticket = Ticket()

    async def receive(self) -> Message:
        door, limits = self.door, self.door.limits
        left = max(self._deadline - time.perf_counter(), 0.001)
        try:
            if sys.version_info >= (3, 11):  # a deadline on this task, no extra task per call
                async with asyncio.timeout(left):
                    message = await self._receive()
            else:  # pragma: no cover - Python 3.10
                message = await asyncio.wait_for(self._receive(), left)
        except (asyncio.TimeoutError, TimeoutError):
            door.metrics.rejected.labels("body_timeout").inc()
            raise RequestTimeout(
                f"the request body did not arrive within "
                f"{limits.body_timeout_s:g}s (--body-timeout)"
            ) from None
        if message["type"] == "http.disconnect":
            self.status = ClientGone.status
            raise ClientGone("the client closed the connection")
        if message["type"] != "http.request":
            return message
        door.admission.hold(self._ticket, len(message.get("body", b"")))
        if not message.get("more_body", False) and self.route in ADMITTED_ROUTES:
            door.admission.admit(self._ticket)
        return message

    def release(self) -> None:
        self.door.admission.release(self._ticket)


def error_response(exc: ServeError) -> JSONResponse:
    """The one way a refusal is written: ``{"error": message}``, its status and headers."""
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers())
