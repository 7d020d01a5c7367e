"""Serve bundles over the Open Inference Protocol v2 (REST and gRPC), on Ray Serve, or via
Triton.

Needs ``pip install 'labkit[serve]'`` (starlette, uvicorn, prometheus-client); gRPC needs
``labkit[grpc]``, tracing ``labkit[otel]``, Ray Serve ``labkit[ray]``. Imports the runtime,
never torch or onnx. See ``docs/serving.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labkit.errors import MissingDependencyError
from labkit.serve.config import ServeConfig

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ServeConfig", "create_app", "deployment", "export_triton", "serve"]


def create_app(source: Any, config: ServeConfig | None = None, **kwargs: Any) -> Starlette:
    """The ASGI app serving a store or a bundle (see :func:`labkit.serve.app.create_app`)."""
    try:
        from labkit.serve.app import create_app as _create_app
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "starlette", "serve") from exc
    return _create_app(source, config, **kwargs)


def serve(source: Any, config: ServeConfig | None = None, **kwargs: Any) -> int:
    """Run the server in this process until SIGTERM; returns the exit code."""
    try:
        from labkit.serve.server import serve as _serve
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "uvicorn", "serve") from exc
    return _serve(source, config or ServeConfig(), **kwargs)


def deployment(source: Any, config: ServeConfig | None = None, **kwargs: Any) -> Any:
    """A Ray Serve application of the same app (see :func:`labkit.serve.ray_app.deployment`)."""
    from labkit.serve.ray_app import deployment as _deployment

    return _deployment(source, config, **kwargs)


def export_triton(bundle: Any, out: Any, **kwargs: Any) -> Any:
    """Write a Triton model repository (see :func:`labkit.serve.triton.export_triton`)."""
    from labkit.serve.triton import export_triton as _export

    return _export(bundle, out, **kwargs)
