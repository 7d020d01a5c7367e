"""The ASGI app: Open Inference Protocol v2 REST endpoints over a :class:`ModelRepository`.

``create_app(source, config)`` returns a Starlette app whose lifespan loads every version in
the store (or the one bundle), starts the store watcher, and on shutdown drains the batch
queues. Cross-cutting behaviour (auth, overload, metrics) is in :mod:`labkit.serve.guard`.
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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labkit.serve.batching import Batcher
from labkit.serve.codec import encode_response, parse_request
from labkit.serve.config import ServeConfig
from labkit.serve.errors import Overloaded, PayloadTooLarge, ServeError
from labkit.serve.guard import Guard
from labkit.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from labkit.serve.reload import Reloader
from labkit.serve.repository import ModelRepository
from labkit.serve.validation import bind_inputs, select_outputs

__all__ = ["ServerState", "create_app"]

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
            found = Batcher(self.repo.get(name, version), self.executor, self.metrics,
                            max_batch_size=c.max_batch_size,
                            max_delay_s=c.max_batch_delay_ms / 1000,
                            max_queue=c.max_queue, queue_timeout_s=c.queue_timeout_ms / 1000,
                            retry_after=c.retry_after_s, concurrency=c.workers)
            self.batchers[(name, version)] = found
        return found

    async def prune(self) -> None:
        """Stop the batchers of versions no longer served (after their queues drain)."""
        live = set(self.repo.served())
        for key in [k for k in self.batchers if k not in live]:
            await self.batchers.pop(key).close()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _error_from(exc: ServeError) -> JSONResponse:
    headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return error(exc.status, str(exc), headers)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.labkit
    return state


async def server_metadata(request: Request) -> Response:
    return JSONResponse({"name": "labkit", "version": _server_version(),
                         "extensions": ["binary_tensor_data"]})


async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    ok = _state(request).ready and bool(_state(request).repo.served())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def model_metadata(request: Request) -> Response:
    state, p = _state(request), request.path_params
    try:
        served = state.repo.get(p["name"], p.get("version"))
    except ServeError as exc:
        return _error_from(exc)
    return JSONResponse(served.metadata(state.repo.versions(served.name)))


async def model_ready(request: Request) -> Response:
    state, p = _state(request), request.path_params
    try:
        served = state.repo.get(p["name"], p.get("version"))
    except ServeError as exc:
        return _error_from(exc)
    return JSONResponse({"name": served.name, "ready": state.ready},
                        status_code=200 if state.ready else 503)


async def _read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the cap of {cap}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"request body exceeds the cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def infer(request: Request) -> Response:
    state, p = _state(request), request.path_params
    config = state.config
    try:
        served = state.repo.get(p["name"], p.get("version"))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _MEDIA_TYPES:
            return error(415, f"unsupported Content-Type {media!r}; send application/json, "
                         "application/octet-stream (binary tensors) or no Content-Type")
        header_len = request.headers.get("inference-header-content-length")
        batcher = state.batcher(served.name, served.version)
        batcher.begin_arrival()
        try:
            body = await _read_body(request, config.max_body_bytes)

            def decode() -> tuple[Any, Any, Any]:
                req = parse_request(body, header_len, max_depth=config.max_json_depth)
                feeds = bind_inputs(req, served, max_elements=config.max_body_bytes)
                return req, feeds, select_outputs(req, served)

            big = len(body) > _OFFLOAD_BYTES
            req, feeds, wanted = await asyncio.to_thread(decode) if big else decode()
        finally:
            batcher.end_arrival()
        result = await batcher.infer(feeds)
        outputs = [(name, result[name], binary) for name, binary in wanted]

        def encode() -> tuple[bytes, dict[str, str]]:
            return encode_response(served.name, served.version, outputs, request_id=req.id)

        payload, headers = await asyncio.to_thread(encode) if big else encode()
    except ServeError as exc:
        return _error_from(exc)
    state.metrics.inferences.labels(served.name, served.version).inc()
    return Response(payload, headers=headers)


async def metrics_endpoint(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return error(exc.status_code, exc.detail or "error", dict(exc.headers or {}))
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal server error")


def create_app(source: str | os.PathLike[str], config: ServeConfig | None = None) -> Any:
    """Build the app for a bundle store (every version served) or a single bundle directory."""
    config = config or ServeConfig()
    metrics = Metrics()

    def on_event(name: str, version: str, ok: bool, reason: str) -> None:
        if reason != "removed":
            metrics.loads.labels(name, version, "ok" if ok else "refused").inc()

    repo = ModelRepository(source, threads=config.threads, self_test=config.self_test,
                           on_event=on_event, trusted_keys=config.trusted_keys)
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
        state.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="labkit-ort")
        if not repo.single and config.reload_interval_s > 0:
            state.reloader = Reloader(repo, config.reload_interval_s,
                                      after=lambda: _after_reload(state, count_served))
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

    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _http_error})
    app.state.labkit = state
    return Guard(app, state)


async def _after_reload(state: ServerState, count_served: Any) -> None:
    count_served()
    await state.prune()
