"""The ASGI app: Open Inference Protocol v2 REST endpoints over a :class:`ModelRepository`.

``create_app(source, config)`` returns a Starlette app whose lifespan loads every version in
the store (or the one bundle), starts the store watcher, and on shutdown drains the batch
queues. Cross-cutting behaviour (token, admission, bodies, metrics) is the front door,
:mod:`labkit.serve.frontdoor`, which shares this module's route table. Endpoints raise
:class:`ServeError`; the one handler registered for it writes every refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labkit.serve.batching import Batcher
from labkit.serve.codec import encode_response, parse_request
from labkit.serve.config import ServeConfig
from labkit.serve.errors import ClientGone, Overloaded, ServeError
from labkit.serve.frontdoor import FrontDoor, Limits, error_response
from labkit.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from labkit.serve.reload import Reloader
from labkit.serve.repository import ModelRepository
from labkit.serve.validation import bind_inputs, select_outputs

__all__ = ["ROUTES", "ServerState", "create_app"]

log = logging.getLogger("labkit.serve")
_OFFLOAD_BYTES = 256 * 1024  # parse/encode bigger bodies on a thread, not on the event loop
_MEDIA_TYPES = {"", "application/json", "application/octet-stream"}


def _server_version() -> str:
    try:
        return importlib_metadata.version("labkit")
    except importlib_metadata.PackageNotFoundError:
        import labkit

        return str(getattr(labkit, "__version__", "0+unknown"))


@dataclass
class ServerState:
    config: ServeConfig
    repo: ModelRepository
    metrics: Metrics
    ready: bool = False
    executor: ThreadPoolExecutor | None = None
    batchers: dict[tuple[str, str], Batcher] = field(default_factory=dict)
    reloader: Reloader | None = None

    def set_ready(self, value: bool) -> None:
        self.ready = value
        self.metrics.ready.set(1 if value else 0)

    def batcher(self, name: str, version: str) -> Batcher:
        found = self.batchers.get((name, version))
        if found is None:
            if self.executor is None:
                raise Overloaded("server is starting; retry")
            c = self.config
            found = Batcher(
                self.repo.get(name, version),
                self.executor,
                self.metrics,
                max_batch_size=c.max_batch_size,
                max_delay_s=c.max_batch_delay_ms / 1000,
                max_queue=c.max_queue,
                queue_timeout_s=c.queue_timeout_ms / 1000,
                retry_after=c.retry_after_s,
                concurrency=max(c.workers, self.repo.get(name, version).model.streams),
            )
            self.batchers[(name, version)] = found
        return found

    async def prune(self) -> None:
        """Stop the batchers of versions no longer served (after their queues drain)."""
        live = set(self.repo.served())
        for key in [k for k in self.batchers if k not in live]:
            await self.batchers.pop(key).close()


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.labkit
    return state


async def server_metadata(request: Request) -> Response:
    return JSONResponse(
        {"name": "labkit", "version": _server_version(), "extensions": ["binary_tensor_data"]}
    )


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


def _ready(state: ServerState) -> bool:
    reloader_ok = state.reloader is None or state.reloader.alive
    return state.ready and reloader_ok and bool(state.repo.served())


async def ready(request: Request) -> Response:
    ok = _ready(_state(request))
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def model_metadata(request: Request) -> Response:
    state, p = _state(request), request.path_params
    served = state.repo.get(p["name"], p.get("version"))
    return JSONResponse(served.metadata(state.repo.versions(served.name)))


async def model_ready(request: Request) -> Response:
    state, p = _state(request), request.path_params
    name, version = p["name"], p.get("version")
    if version is not None and (name, version) in state.repo.refused():
        return JSONResponse({"name": name, "ready": False}, status_code=503)
    served = state.repo.get(name, version)
    ok = _ready(state)
    return JSONResponse({"name": served.name, "ready": ok}, status_code=200 if ok else 503)


async def _read_body(request: Request) -> bytearray:
    # cap, timeout and memory budget are enforced by the front door as the chunks arrive.
    # Not preallocated from Content-Length: a declared size costs nothing until it arrives
    # (a bytearray grows by realloc, which moves large buffers without copying them)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return body


async def infer(request: Request) -> Response:
    state, p = _state(request), request.path_params
    config = state.config
    served = state.repo.get(p["name"], p.get("version"))
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise ServeError(
            f"unsupported Content-Type {media!r}; send application/json, "
            "application/octet-stream (binary tensors) or no Content-Type",
            status=415,
        )
    header_len = request.headers.get("inference-header-content-length")
    batcher = state.batcher(served.name, served.version)
    body = await _read_body(request)
    batcher.begin_arrival()  # only now: a slow upload is not company worth waiting for
    try:

        def decode() -> tuple[Any, Any, Any]:
            req = parse_request(body, header_len, max_depth=config.max_json_depth)
            feeds = bind_inputs(req, served, max_elements=config.max_body_bytes)
            return req, feeds, select_outputs(req, served)

        big = len(body) > _OFFLOAD_BYTES
        req, feeds, wanted = await asyncio.to_thread(decode) if big else decode()
    finally:
        batcher.end_arrival()
    body = bytearray()  # the decoded tensors do not refer to it: free it before inference
    result = await batcher.infer(feeds)
    outputs = [(name, result[name], binary) for name, binary in wanted]

    def encode() -> tuple[bytes, dict[str, str]]:
        return encode_response(served.name, served.version, outputs, request_id=req.id)

    payload, headers = await asyncio.to_thread(encode) if big else encode()
    state.metrics.inferences.labels(served.name, served.version).inc()
    return Response(payload, headers=headers)


async def metrics_endpoint(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


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


def limits_of(config: ServeConfig) -> Limits:
    return Limits(
        max_inflight=config.max_inflight,
        max_body_bytes=config.max_body_bytes,
        max_body_budget=config.max_body_budget_bytes,
        body_timeout_s=config.body_timeout_s,
        retry_after_s=config.retry_after_s,
    )


def create_app(source: str | os.PathLike[str], config: ServeConfig | None = None) -> Starlette:
    """Build the app for a bundle store (every version served) or a single bundle directory."""
    config = config or ServeConfig()
    metrics = Metrics()

    def on_event(name: str, version: str, ok: bool, reason: str) -> None:
        if reason != "removed":
            metrics.loads.labels(name, version, "ok" if ok else "refused").inc()
        if not ok:
            metrics.refused.labels(name, version, reason).inc()

    repo = ModelRepository(
        source,
        threads=config.threads,
        self_test=config.self_test,
        on_event=on_event,
        tuning=config.tuning,
        tune_budget_s=config.tune_budget_s,
        trusted_keys=config.trusted_keys,
        profile_dir=config.profile_dir,
        allow_reduced_precision=config.allow_reduced_precision,
    )
    state = ServerState(config, repo, metrics)

    def count_served() -> None:
        for name in {n for n, _ in repo.served()} | {n for n, _ in repo.refused()}:
            metrics.served.labels(name).set(len(repo.versions(name)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(repo.refresh)
        if not repo.served():
            refused = "; ".join(f"{n} {v}: {r}" for (n, v), r in repo.refused().items())
            message = f"nothing to serve in {repo.source}" + (f" ({refused})" if refused else "")
            log.error("%s", message)
            raise RuntimeError(message)
        count_served()
        # A tuned model runs its chosen number of parallel sessions (streams).
        streams = max(repo.get(n, v).model.streams for n, v in repo.served())
        state.executor = ThreadPoolExecutor(
            max(config.workers, streams), thread_name_prefix="labkit-ort"
        )
        if not repo.single and config.reload_interval_s > 0:
            state.reloader = Reloader(
                repo,
                config.reload_interval_s,
                after=lambda: _after_reload(state, count_served),
                on_death=lambda: state.set_ready(False),
            )
        state.set_ready(True)
        try:
            yield
        finally:
            state.set_ready(False)
            if state.reloader is not None:
                await state.reloader.stop()
            for batcher in list(state.batchers.values()):
                await batcher.close()
            state.executor.shutdown(wait=True)

    door = Middleware(
        FrontDoor, token=config.token, limits=limits_of(config), metrics=metrics, routes=ROUTES
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
    app.state.labkit = state
    return app


async def _after_reload(state: ServerState, count_served: Any) -> None:
    count_served()
    await state.prune()
