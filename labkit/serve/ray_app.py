"""The same ASGI app as a Ray Serve deployment: N CPU replicas, optional autoscaling.

Python entry point::

    import ray
    from ray import serve
    from labkit.serve import ServeConfig, deployment

    ray.init()
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(deployment("/srv/bundles", replicas=2, max_replicas=4), name="labkit",
              route_prefix="/")

Each replica builds its own app (the builder runs on the replica), so each verifies and loads
the bundles itself: the store path must be readable on every node. Ray's own queue is bounded
(``max_queued_requests``; Ray answers 503 past it) in front of each replica's bounded queue.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from labkit.errors import MissingDependencyError
from labkit.serve.config import ServeConfig

__all__ = ["deployment", "run_ray"]

APP_NAME = "labkit"


def _serve_module() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise MissingDependencyError("ray[serve]", "ray") from exc
    return serve


def deployment(
    source: str | os.PathLike[str],
    config: ServeConfig | None = None,
    *,
    replicas: int = 1,
    max_replicas: int | None = None,
    max_queued_requests: int = 256,
    max_ongoing_requests: int | None = None,
    num_cpus: float = 1.0,
    target_ongoing_requests: float = 4.0,
) -> Any:
    """A bound Ray Serve application serving ``source`` (pass it to ``serve.run``).

    ``replicas`` fixed replicas, or autoscaling from ``replicas`` to ``max_replicas``. Each
    replica reserves ``num_cpus`` and runs ONNX Runtime with that many intra-op threads
    unless ``config.threads`` says otherwise.
    """
    serve = _serve_module()
    if replicas < 1 or (max_replicas is not None and max_replicas < replicas):
        raise ValueError(f"need 1 <= replicas <= max_replicas, got {replicas}, {max_replicas}")
    config = config or ServeConfig()
    if config.threads is None:
        config = replace(config, threads=max(1, int(num_cpus)))
    root = str(Path(source).resolve())
    frozen = config

    def build_app() -> Any:  # runs on each replica
        from labkit.serve.app import create_app

        return create_app(root, frozen)

    options: dict[str, Any] = {
        "name": "LabkitServe",
        "ray_actor_options": {"num_cpus": num_cpus},
        "max_queued_requests": max_queued_requests,
        "max_ongoing_requests": max_ongoing_requests or config.max_inflight,
        "graceful_shutdown_timeout_s": config.graceful_timeout_s,
    }
    if max_replicas is not None and max_replicas > replicas:
        options["autoscaling_config"] = {
            "min_replicas": replicas,
            "initial_replicas": replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        }
    else:
        options["num_replicas"] = replicas

    @serve.deployment(**options)
    @serve.ingress(build_app)
    class LabkitServe:
        pass

    return LabkitServe.bind()  # type: ignore[attr-defined]


def run_ray(
    source: str | os.PathLike[str],
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    max_replicas: int | None = None,
    max_queued_requests: int = 256,
    address: str | None = None,
) -> int:
    """``handoff serve --ray``: start (or join) Ray, deploy, block until SIGTERM/SIGINT."""
    serve = _serve_module()
    import ray

    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own
        signal.signal(sig, lambda *_: done.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(
            deployment(
                source,
                config,
                replicas=replicas,
                max_replicas=max_replicas,
                max_queued_requests=max_queued_requests,
            ),
            name=APP_NAME,
            route_prefix="/",
        )
        print(f"labkit on Ray Serve: http://{host}:{port}/v2 ({replicas} replica(s))", flush=True)
        done.wait()
        serve.delete(APP_NAME)  # replicas drain their in-flight requests
        serve.shutdown()
    finally:
        ray.shutdown()
    return 0
