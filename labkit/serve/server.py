"""Run the app on uvicorn with a graceful SIGTERM: not ready first, then drain, then exit.

On SIGTERM (or SIGINT) readiness turns false at once; the server keeps answering for
``drain_delay_s`` so load balancers stop routing to it, then stops accepting connections,
lets in-flight requests finish (up to ``graceful_timeout_s``), drains the batch queues and
exits 0. A second signal during the drain exits immediately.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from labkit.errors import LabkitError, MissingDependencyError
from labkit.serve.app import create_app
from labkit.serve.config import ServeConfig
from labkit.serve.connections import (
    ConnectionLimits,
    effective_max_connections,
    guarded_protocol,
)
from labkit.serve.core import DataPlane, NothingToServe
from labkit.serve.logs import configure as configure_logging

__all__ = ["DrainingServer", "serve"]

log = logging.getLogger("labkit.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any, drain_delay_s: float) -> None:
        super().__init__(config)
        self._labkit_app = app
        self._drain_delay = drain_delay_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self._labkit_app.state.labkit.begin_drain()
        log.info(
            "signal %s: not ready; draining for %.1fs, then finishing in-flight requests",
            signal.Signals(sig).name,
            self._drain_delay,
        )
        if self._drain_delay > 0:
            timer = threading.Timer(self._drain_delay, self._stop)
            timer.daemon = True
            timer.start()
        else:
            self._stop()

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def _stop(self) -> None:
        self.should_exit = True
        # the other listeners (gRPC) stop taking new calls when HTTP does
        plane = self._labkit_app.state.labkit
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(plane.stop_accepting)


def protocol_class(config: ServeConfig, http: str = "auto") -> type[Any]:
    """uvicorn's HTTP protocol (``auto``: httptools if installed, else h11), guarded by the
    connection limits of ``config`` (:mod:`labkit.serve.connections`)."""
    base = import_from_string(HTTP_PROTOCOLS[http])
    listeners = 1 if config.grpc_port is None else 2
    cap = effective_max_connections(config.max_connections, listeners)
    if cap < config.max_connections:
        log.info("connection cap %d (the open-file limit allows no more)", cap)
    return guarded_protocol(
        base,
        ConnectionLimits(
            max_connections=cap,
            header_timeout_s=config.header_timeout_s,
            max_header_bytes=config.max_header_bytes,
            keepalive_timeout_s=config.keepalive_timeout_s,
        ),
    )


def serve(
    source: str | os.PathLike[str],
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    log_format: str = "text",
    http: str = "auto",
) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code. Raises
    :class:`NothingToServe` when the store holds nothing to serve and ``require_models`` is
    set (or nothing can ever be added: one bundle, or hot reload off); otherwise an empty store
    is said in one line and the server waits, not ready, for versions."""
    configure_logging(log_level, log_format)
    if config.grpc_port is not None:
        _check_grpc(config)
    plane = DataPlane(source, config)
    plane.scan()  # before uvicorn: an empty store is one line, not a startup traceback
    empty = plane.nothing_to_serve()
    if empty is not None and (config.require_models or not plane.watching):
        why = "--require-models" if config.require_models else "nothing can be added to it"
        raise NothingToServe(f"{empty} ({why})")
    app = create_app(plane)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through our handler, in our format
        lifespan="on",
        http=protocol_class(config, http),
        # a float: 0.5 s means half a second (int() made it 0, and 0 meant "wait forever")
        timeout_graceful_shutdown=config.graceful_timeout_s,  # type: ignore[arg-type]
        timeout_keep_alive=config.keepalive_timeout_s,  # type: ignore[arg-type]
        access_log=False,
        server_header=False,
        limit_concurrency=None,
        # the header cap is enforced by the guarded protocol (431) for either parser; h11's own
        # check stays as a backstop above it (one read chunk is at most 256 KiB)
        h11_max_incomplete_event_size=config.max_header_bytes + (512 << 10),
    )
    server = DrainingServer(uv_config, app, config.drain_delay_s)
    server.run()
    if not server.started:
        return 1
    return 0


def _check_grpc(config: ServeConfig) -> None:
    """Before anything loads: gRPC's extra is installed and its port is free (else one line
    and exit 2, not a traceback from the ASGI lifespan)."""
    try:
        import labkit.serve.grpc_front  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "grpcio", "grpc") from exc
    if config.grpc_port:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind((config.grpc_host, config.grpc_port))
            except OSError as exc:
                raise LabkitError(
                    f"cannot listen for gRPC on {config.grpc_host}:{config.grpc_port}: "
                    f"{exc.strerror or exc}; choose another --grpc-port"
                ) from None
