"""Pure-ASGI front door: bearer token, overload admission, and request metrics.

It runs before Starlette touches the request, so a refusal costs no body read and no parse.
Health probes and ``/metrics`` are admitted even under overload (a probe that times out
under load gets a healthy pod killed); health probes are also exempt from the token.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.serve.app import ServerState

__all__ = ["Guard", "route_of"]

Scope = dict[str, Any]
_INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
_MODEL_READY = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/ready$")
_MODEL = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?$")
_OPEN = frozenset({"/v2/health/live", "/v2/health/ready"})


def route_of(path: str) -> str:
    """A bounded label for metrics (never the raw path: clients choose paths)."""
    if _INFER.match(path):
        return "infer"
    if _MODEL_READY.match(path):
        return "model_ready"
    if _MODEL.match(path):
        return "model_metadata"
    if path in ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics"):
        return path
    return "other"


async def _reply(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self._inflight = 0
        token = state.config.token
        self._expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics, config = self.state.metrics, self.state.config
        path: str = scope.get("path", "")
        route = route_of(path)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self._inflight += 1
        metrics.inflight.set(self._inflight)
        try:
            if self._expected is not None and path not in _OPEN:
                got = dict(scope.get("headers") or []).get(b"authorization", b"")
                if not hmac.compare_digest(got, self._expected):
                    await _reply(send_wrapper, 401, "missing or wrong bearer token",
                                 [(b"www-authenticate", b"Bearer")])
                    return
            if route == "infer" and self._inflight > config.max_inflight:
                metrics.rejected.labels("inflight").inc()
                await _reply(send_wrapper, 503,
                             f"server overloaded: more than {config.max_inflight} requests in "
                             "flight; retry later",
                             [(b"retry-after", str(config.retry_after_s).encode())])
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self._inflight -= 1
            metrics.inflight.set(self._inflight)
            metrics.requests.labels(route, str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - start)
