"""The REST front end: Open Inference Protocol v2 endpoints over a :class:`DataPlane`.

``create_app(source, config)`` returns a Starlette app whose lifespan starts the data plane
(load every version, start the store watcher) and on shutdown drains it. The endpoints only
translate HTTP to data-plane calls and back; cross-cutting HTTP behaviour (token, admission,
bodies, metrics) is the front door, :mod:`labkit.serve.frontdoor`, which shares this module's
route table. Endpoints raise :class:`ServeError`; the one handler registered for it writes
every refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labkit.errors import MissingDependencyError
from labkit.serve.codec import InferRequest, encode_response, parse_request
from labkit.serve.config import ServeConfig
from labkit.serve.core import DataPlane
from labkit.serve.errors import ClientGone, Overloaded, ServeError
from labkit.serve.frontdoor import FrontDoor, error_response
from labkit.serve.metrics import CONTENT_TYPE_LATEST

__all__ = ["ROUTES", "create_app", "plane_of"]

log = logging.getLogger("labkit.serve")
_OFFLOAD_BYTES = 256 * 1024  # parse/encode bigger bodies on a thread, not on the event loop
_MEDIA_TYPES = {"", "application/json", "application/octet-stream"}


def plane_of(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.labkit
    return plane


async def server_metadata(request: Request) -> Response:
    return JSONResponse(plane_of(request).server_metadata().to_json())


async def live(request: Request) -> Response:
    return JSONResponse({"live": plane_of(request).is_live()})


async def ready(request: Request) -> Response:
    ok = plane_of(request).is_ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def model_metadata(request: Request) -> Response:
    p = request.path_params
    return JSONResponse(plane_of(request).model_metadata(p["name"], p.get("version")).to_json())


async def model_ready(request: Request) -> Response:
    p = request.path_params
    name = p["name"]
    ok = plane_of(request).model_ready(name, p.get("version"))
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


async def _read_body(request: Request) -> bytearray:
    # cap, timeout and memory budget are enforced by the front door as the chunks arrive.
    # Not preallocated from Content-Length: a declared size costs nothing until it arrives
    # (a bytearray grows by realloc, which moves large buffers without copying them)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return body


async def infer(request: Request) -> Response:
    plane, p = plane_of(request), request.path_params
    served = plane.resolve(p["name"], p.get("version"))
    request.scope["labkit.served"] = (served.name, served.version)  # for the access log
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise ServeError(
            f"unsupported Content-Type {media!r}; send application/json, "
            "application/octet-stream (binary tensors) or no Content-Type",
            status=415,
        )
    header_len = request.headers.get("inference-header-content-length")
    plane.batcher(served)  # 503 now if the server is starting: before the body is read
    body = await _read_body(request)
    big = len(body) > _OFFLOAD_BYTES

    def decode() -> InferRequest:
        return parse_request(body, header_len, max_depth=plane.config.max_json_depth)

    result = await plane.infer(served, decode, offload=big, carrier=request.headers)
    body = bytearray()  # the decoded tensors do not refer to it: free it before encoding
    outputs = [(o.name, o.array, o.binary) for o in result.outputs]

    def encode() -> tuple[bytes, dict[str, str]]:
        return encode_response(
            result.model_name, result.model_version, outputs, request_id=result.id
        )

    payload, headers = await asyncio.to_thread(encode) if big else encode()
    return Response(payload, headers=headers)


async def metrics_endpoint(request: Request) -> Response:
    return Response(plane_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)  # registered for ServeError only
    if isinstance(exc, ClientGone):
        log.debug("%s %s: %s", request.method, request.url.path, exc)
    elif exc.status >= 500 and not isinstance(exc, Overloaded):
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return error_response(ServeError(exc.detail or "error", status=exc.status_code))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(ServeError("internal server error"))


# The one route table: Starlette routes by it, the front door labels metrics by its names.
ROUTES = [
    Route("/v2", server_metadata, methods=["GET"], name="/v2"),
    Route("/v2/health/live", live, methods=["GET"], name="/v2/health/live"),
    Route("/v2/health/ready", ready, methods=["GET"], name="/v2/health/ready"),
    Route("/v2/models/{name}", model_metadata, methods=["GET"], name="model_metadata"),
    Route(
        "/v2/models/{name}/versions/{version}",
        model_metadata,
        methods=["GET"],
        name="model_metadata",
    ),
    Route("/v2/models/{name}/ready", model_ready, methods=["GET"], name="model_ready"),
    Route(
        "/v2/models/{name}/versions/{version}/ready",
        model_ready,
        methods=["GET"],
        name="model_ready",
    ),
    Route("/v2/models/{name}/infer", infer, methods=["POST"], name="infer"),
    Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"], name="infer"),
    Route("/metrics", metrics_endpoint, methods=["GET"], name="/metrics"),
]


async def _start_grpc(plane: DataPlane) -> Any:
    """The gRPC front end beside REST when ``grpc_port`` is set (``labkit[grpc]``)."""
    config = plane.config
    if config.grpc_port is None:
        return None
    try:
        from labkit.serve.grpc_front import GrpcFront
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "grpcio", "grpc") from exc
    front = GrpcFront(plane)
    await front.start(config.grpc_host, config.grpc_port)
    plane.on_stop_accepting(lambda: front.stop_accepting(config.graceful_timeout_s))
    return front


def create_app(
    source: str | os.PathLike[str] | DataPlane,
    config: ServeConfig | None = None,
    *,
    tracer_provider: Any = None,
) -> Starlette:
    """The app for a bundle store (every version served), a single bundle directory, or a
    data plane built by the caller (which then owns its config). ``tracer_provider``: an
    OpenTelemetry provider for inference spans (default: the global one, if configured)."""
    if isinstance(source, DataPlane):
        plane = source
    else:
        plane = DataPlane(source, config, tracer_provider=tracer_provider)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await plane.start()
        grpc_front = await _start_grpc(plane)
        try:
            yield
        finally:
            if grpc_front is not None:
                await grpc_front.stop(plane.config.graceful_timeout_s)
            await plane.stop()

    door = Middleware(
        FrontDoor,
        token=plane.config.token,
        admission=plane.admission,
        metrics=plane.metrics,
        routes=ROUTES,
        access_log=plane.config.access_log,
    )
    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[door],
        exception_handlers={
            ServeError: _serve_error,
            HTTPException: _http_error,
            Exception: _http_error,
        },
    )
    app.router.redirect_slashes = False  # the front door redirects, without trusting Host
    app.state.labkit = plane
    return app
