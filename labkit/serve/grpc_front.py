"""The gRPC front end: ``inference.GRPCInferenceService`` over the same :class:`DataPlane`.

Needs ``pip install 'labkit[grpc]'`` (grpcio, protobuf). Runs on the same event loop as the
REST server, with the same token (metadata ``authorization: Bearer <token>``; ServerLive and
ServerReady stay open, as REST's probes), the same admission (in-flight slots and the body
memory budget are shared with REST), batching and error messages. A refusal's status maps to
gRPC's code as Triton maps its errors: 400 -> INVALID_ARGUMENT, 401 -> UNAUTHENTICATED,
404 -> NOT_FOUND, 503 -> UNAVAILABLE (with ``retry-after`` in the trailing metadata), 413 ->
RESOURCE_EXHAUSTED, anything else -> INTERNAL. Methods not served here (model control, shared
memory, streaming, statistics) answer UNIMPLEMENTED.

Transport limits come from the same settings as REST's: message size (``max_body_bytes``),
metadata size (``max_header_bytes``), connections (``max_connections``, the open-file limit
shared with REST; gRPC refuses past it before the handshake), handshake time
(``header_timeout_s``) and RPCs being handled at once (``max_inflight`` plus a margin).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from labkit.serve.admission import Ticket
from labkit.serve.auth import check_authorization
from labkit.serve.connections import effective_max_connections
from labkit.serve.core import DataPlane
from labkit.serve.errors import BadRequest, ClientGone, Overloaded, ServeError
from labkit.serve.grpc_proto import METHODS, SERVICE, messages
from labkit.serve.grpc_tensors import infer_request, infer_response
from labkit.serve.logs import access_log

__all__ = ["GrpcFront", "grpc_code"]

log = logging.getLogger("labkit.serve")
OPEN_METHODS = frozenset({"ServerLive", "ServerReady"})  # no token: probes
_OFFLOAD_BYTES = 256 * 1024
_PROBE_MARGIN = 64  # RPCs beyond max_inflight for probes and metadata
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_code(exc: ServeError) -> grpc.StatusCode:
    return _CODES.get(exc.status, grpc.StatusCode.INTERNAL)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class GrpcFront:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._m = messages()
        self._token = plane.config.token.encode() if plane.config.token else None
        self._access_log = plane.config.access_log
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port bound."""
        c = self.plane.config
        connections = effective_max_connections(c.max_connections, listeners=2)
        options = [
            ("grpc.max_receive_message_length", c.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_metadata_size", c.max_header_bytes),
            ("grpc.absolute_max_metadata_size", c.max_header_bytes),
            ("grpc.max_allowed_incoming_connections", connections),
            ("grpc.server_handshake_timeout_ms", int(c.header_timeout_s * 1000)),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(
            options=options, maximum_concurrent_rpcs=c.max_inflight + _PROBE_MARGIN
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        self.port = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        self._server = server
        log.info("gRPC (inference.GRPCInferenceService) on %s:%d", host, self.port)
        return self.port

    def stop_accepting(self, grace_s: float) -> asyncio.Task[None]:
        """Stop taking new RPCs; those in flight get ``grace_s`` to finish (idempotent)."""
        if self._stopping is None:
            server = self._server

            async def stop() -> None:
                if server is not None:
                    await server.stop(grace_s)

            self._stopping = asyncio.get_running_loop().create_task(stop())
        return self._stopping

    async def stop(self, grace_s: float) -> None:
        await self.stop_accepting(grace_s)

    # -- methods ---------------------------------------------------------------------------
    async def _server_live(self, request: Any, context: Any) -> Any:
        return self._m["ServerLiveResponse"](live=self.plane.is_live())

    async def _server_ready(self, request: Any, context: Any) -> Any:
        return self._m["ServerReadyResponse"](ready=self.plane.is_ready())

    async def _model_ready(self, request: Any, context: Any) -> Any:
        ok = self.plane.model_ready(request.name, request.version or None)
        return self._m["ModelReadyResponse"](ready=ok)

    async def _server_metadata(self, request: Any, context: Any) -> Any:
        meta = self.plane.server_metadata()
        return self._m["ServerMetadataResponse"](
            name=meta.name, version=meta.version, extensions=meta.extensions
        )

    async def _model_metadata(self, request: Any, context: Any) -> Any:
        meta = self.plane.model_metadata(request.name, request.version or None)
        tensor = self._m["ModelMetadataResponse.TensorMetadata"]

        def tensors(items: Any) -> list[Any]:
            return [tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in items]

        return self._m["ModelMetadataResponse"](
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=tensors(meta.inputs),
            outputs=tensors(meta.outputs),
        )

    async def _model_infer(
        self, message: Any, context: Any, size: int, note: list[str | None]
    ) -> bytes:
        plane = self.plane
        served = plane.resolve(message.model_name, message.model_version or None)
        note[:] = [served.name, served.version]
        ticket = Ticket()
        try:
            plane.admission.hold(ticket, size)
            plane.admission.admit(ticket)
            big = size > _OFFLOAD_BYTES
            metadata = context.invocation_metadata() or ()
            carrier = {k: v for k, v in metadata if k in ("traceparent", "tracestate")}
            result = await plane.infer(
                served,
                lambda: infer_request(message),
                offload=big,
                protocol="grpc",
                carrier=carrier,
            )
        finally:
            plane.admission.release(ticket)
        response = infer_response(self._m["ModelInferResponse"], result)
        out: bytes = (
            await asyncio.to_thread(response.SerializeToString)
            if big or len(result.outputs) and result.outputs[0].array.nbytes > _OFFLOAD_BYTES
            else response.SerializeToString()
        )
        return out

    # -- plumbing --------------------------------------------------------------------------
    def _authorize(self, method: str, context: Any) -> None:
        values = [
            v.encode() if isinstance(v, str) else bytes(v)
            for k, v in (context.invocation_metadata() or ())
            if k.lower() == "authorization"
        ]
        check_authorization(values, self._token, required=method not in OPEN_METHODS)

    def _wrap(self, method: str, handler: Handler) -> Handler:
        metrics = self.plane.metrics

        async def handle(received: tuple[int, Any], context: Any) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            refusal: ServeError | None = None
            size, request = received
            served: list[str | None] = [None, None]  # the model version that answered
            try:
                self._authorize(method, context)
                if isinstance(request, DecodeError):
                    raise BadRequest(f"the {method} request is not a valid message: {request}")
                if method == "ModelInfer":
                    return await self._model_infer(request, context, size, served)
                return await handler(request, context)
            except ServeError as exc:
                refusal, code = exc, grpc_code(exc)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:  # noqa: BLE001 - a bug must answer INTERNAL, not kill the call
                log.exception("unhandled error in gRPC %s", method)
                refusal, code = ServeError("internal server error"), grpc.StatusCode.INTERNAL
            finally:
                took = time.perf_counter() - start
                metrics.grpc_requests.labels(method, code.name).inc()
                metrics.grpc_latency.labels(method).observe(took)
                if self._access_log:
                    access_log(
                        protocol="grpc",
                        client=str(context.peer()),
                        method=method,
                        path=f"/{SERVICE}/{method}",
                        status=code.name,
                        duration_s=took,
                        model=served[0],
                        version=served[1],
                    )
            assert refusal is not None  # every path without a refusal returned or raised
            if isinstance(refusal, Overloaded):
                context.set_trailing_metadata((("retry-after", str(refusal.retry_after)),))
            if refusal.status >= 500 and not isinstance(refusal, (Overloaded, ClientGone)):
                log.error("gRPC %s: %s", method, refusal)
            await context.abort(code, str(refusal))

        return handle

    def _handlers(self) -> grpc.GenericRpcHandler:
        impl = {
            "ServerLive": self._server_live,
            "ServerReady": self._server_ready,
            "ModelReady": self._model_ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
        }
        handlers = {}
        for method, (req, resp) in METHODS.items():
            # the request's size is kept for admission; a malformed one becomes a 400 (not the
            # INTERNAL gRPC answers when a deserializer raises); ModelInfer is pre-serialized
            serialize = _identity if method == "ModelInfer" else self._m[resp].SerializeToString
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl.get(method, _unused)),
                request_deserializer=_sized(self._m[req]),
                response_serializer=serialize,
            )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _sized(cls: Any) -> Callable[[bytes], tuple[int, Any]]:
    def deserialize(data: bytes) -> tuple[int, Any]:
        try:
            return len(data), cls.FromString(data)
        except DecodeError as exc:
            return len(data), exc

    return deserialize


async def _unused(request: Any, context: Any) -> Any:  # pragma: no cover - never routed
    raise ServeError("not implemented")


def _identity(data: bytes) -> bytes:
    return data
