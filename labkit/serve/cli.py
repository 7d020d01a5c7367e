"""``handoff serve`` and ``handoff export-triton``: argparse sub-commands.

``handoff`` wires these in with ``add_serve_parser(sub)`` / ``add_export_triton_parser(sub)``;
each sets ``func`` to a function of the parsed namespace that returns an exit code.
``python -m labkit.serve serve ...`` runs the same code without the ``handoff`` entry point.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError, MissingDependencyError
from labkit.runtime.tune import DEFAULT_BUDGET_S as DEFAULT_TUNE_BUDGET_S
from labkit.serve.config import MiB, ServeConfig

__all__ = ["add_export_triton_parser", "add_serve_parser", "config_from_args"]

TOKEN_ENV = "LABKIT_SERVE_TOKEN"  # noqa: S105 - the name of a variable, not a secret


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve a bundle store over the Open Inference Protocol (v2 REST)",
        description="Serve every version in STORE (or one bundle directory) over the Open "
        "Inference Protocol v2 REST API, with micro-batching, Prometheus /metrics, hot reload "
        "of new versions and a graceful SIGTERM.",
    )
    p.add_argument("source", metavar="STORE_OR_BUNDLE", help="bundle store root or bundle dir")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; use 0.0.0.0 deliberately)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' (prefer ${TOKEN_ENV} or "
        "--token-file: arguments are visible in ps)",
    )
    p.add_argument("--token-file", type=Path, default=None)
    d = ServeConfig()  # the defaults' one home
    p.add_argument(
        "--max-batch-size", type=int, default=d.max_batch_size, help="1 disables batching"
    )
    p.add_argument("--max-batch-delay-ms", type=float, default=d.max_batch_delay_ms)
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="per model version")
    p.add_argument("--max-inflight", type=int, default=d.max_inflight)
    p.add_argument("--queue-timeout-ms", type=float, default=d.queue_timeout_ms)
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / MiB)
    p.add_argument("--workers", type=int, default=d.workers, help="ONNX Runtime calls at once")
    p.add_argument("--threads", type=int, default=d.threads, help="intra-op threads per session")
    p.add_argument(
        "--reload-interval",
        type=float,
        default=d.reload_interval_s,
        help="seconds between store scans; 0 disables hot reload",
    )
    p.add_argument(
        "--drain-delay",
        type=float,
        default=d.drain_delay_s,
        help="after SIGTERM, seconds to stay up answering not-ready",
    )
    p.add_argument("--graceful-timeout", type=float, default=d.graceful_timeout_s)
    hostile = p.add_argument_group("limits for clients you do not control")
    hostile.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open connections at once (lowered to fit ulimit -n); at the cap "
        "the oldest idle connection is closed",
    )
    hostile.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout_s,
        help="seconds a connection has to send its request line and headers",
    )
    hostile.add_argument(
        "--max-header-kb",
        type=float,
        default=d.max_header_bytes / 1024,
        help="request line + headers, KiB (431 past it)",
    )
    hostile.add_argument(
        "--keepalive-timeout",
        type=float,
        default=d.keepalive_timeout_s,
        help="seconds an idle keep-alive connection stays open",
    )
    hostile.add_argument(
        "--body-timeout",
        type=float,
        default=d.body_timeout_s,
        help="seconds from the end of the headers to the end of the body (408)",
    )
    hostile.add_argument(
        "--max-body-budget-mb",
        type=float,
        default=d.max_body_budget_bytes / (1 << 20),
        help="request bodies held at once, MiB (503 + Retry-After past it)",
    )
    hostile.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn HTTP parser (the limits hold for both)",
    )
    p.add_argument(
        "--no-self-test",
        action="store_true",
        help="skip re-running golden vectors before serving a version",
    )
    p.add_argument(
        "--trusted-key",
        metavar="PUB.pem",
        action="append",
        default=None,
        help="serve only bundles signed by one of these public keys (repeatable); "
        "the others are refused and logged with the reason",
    )
    p.add_argument(
        "--allow-reduced-precision",
        action="store_true",
        help="with --trusted-key: also run an unsigned host profile's reduced-precision "
        "choice (bf16), judged by the bundle's accuracy budget instead of the signed "
        "variant's tolerance",
    )
    p.add_argument(
        "--no-tuning", action="store_true", help="ignore host profiles written by 'handoff tune'"
    )
    p.add_argument(
        "--profile-dir",
        metavar="DIR",
        default=None,
        help="where host profiles live (default: $LABKIT_PROFILE_DIR, else STORE/.tuning); "
        "for a read-only store",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune each version that has no profile for this host before serving it",
    )
    p.add_argument(
        "--tune-budget-s",
        type=float,
        default=DEFAULT_TUNE_BUDGET_S,
        metavar="S",
        help=f"time budget per version for --tune (default {DEFAULT_TUNE_BUDGET_S:g})",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    ray = p.add_argument_group("Ray Serve (pip install 'labkit[ray]')")
    ray.add_argument("--ray", action="store_true", help="run as a Ray Serve deployment")
    ray.add_argument("--replicas", type=int, default=1, help="initial/min replicas")
    ray.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help="enable autoscaling from --replicas up to this many",
    )
    ray.add_argument("--max-queued-requests", type=int, default=256)
    ray.add_argument("--ray-address", default=None, help="existing cluster (default: local)")
    p.set_defaults(func=run_serve)
    return p


def add_export_triton_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-triton",
        help="write a Triton model repository from a bundle",
        description="Write OUT/NAME/config.pbtxt (onnxruntime backend, CPU instances, "
        "dynamic batching) and OUT/NAME/1/model.onnx from a verified bundle.",
    )
    p.add_argument("bundle", metavar="BUNDLE", type=Path)
    p.add_argument("out", metavar="OUT", type=Path)
    p.add_argument("--variant", default=None, help="default: the bundle's default variant")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--instances", type=int, default=1, help="CPU instances")
    p.add_argument("--max-queue-delay-us", type=int, default=500)
    p.add_argument("--max-queue-size", type=int, default=128)
    p.add_argument("--triton-version", type=int, default=1, help="version folder number")
    p.add_argument("--force", action="store_true", help="replace OUT/NAME if it exists")
    p.set_defaults(func=run_export_triton)
    return p


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return args.token_file.read_text().strip() or None
    return args.token or os.environ.get(TOKEN_ENV) or None


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_batch_size=args.max_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        max_queue=args.max_queue,
        max_inflight=args.max_inflight,
        queue_timeout_ms=args.queue_timeout_ms,
        workers=args.workers,
        threads=args.threads,
        token=_token(args),
        reload_interval_s=args.reload_interval,
        drain_delay_s=args.drain_delay,
        graceful_timeout_s=args.graceful_timeout,
        self_test=not args.no_self_test,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout,
        max_header_bytes=int(args.max_header_kb * 1024),
        keepalive_timeout_s=args.keepalive_timeout,
        body_timeout_s=args.body_timeout,
        max_body_budget_bytes=int(args.max_body_budget_mb * (1 << 20)),
        tuning=not args.no_tuning,
        tune_budget_s=args.tune_budget_s if args.tune else None,
        trusted_keys=tuple(args.trusted_key) if args.trusted_key else None,
        profile_dir=args.profile_dir,
        allow_reduced_precision=args.allow_reduced_precision,
    )


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
        if config.trusted_keys is not None:  # a bad key file is a startup error
            from labkit.runtime.signing import load_trusted_keys

            load_trusted_keys(config.trusted_keys)
        if not Path(args.source).is_dir():
            raise LabkitError(f"{args.source} is not a directory (a bundle store or a bundle)")
        if args.ray:
            from labkit.serve.ray_app import run_ray

            return run_ray(
                args.source,
                config,
                host=args.host,
                port=args.port,
                replicas=args.replicas,
                max_replicas=args.max_replicas,
                max_queued_requests=args.max_queued_requests,
                address=args.ray_address,
            )
        from labkit.serve.server import serve

        return serve(
            args.source,
            config,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            http=args.http,
        )
    except ImportError as exc:
        missing = MissingDependencyError(exc.name or "starlette", "ray" if args.ray else "serve")
        print(f"handoff serve: {missing}", file=sys.stderr)
        return 2
    except (LabkitError, ValueError, OSError) as exc:
        print(f"handoff serve: {exc}", file=sys.stderr)
        return 2


def run_export_triton(args: argparse.Namespace) -> int:
    from labkit.serve.triton import export_triton

    try:
        path = export_triton(
            args.bundle,
            args.out,
            variant=args.variant,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            max_queue_delay_us=args.max_queue_delay_us,
            max_queue_size=args.max_queue_size,
            triton_version=args.triton_version,
            force=args.force,
        )
    except (LabkitError, ValueError, OSError) as exc:
        print(f"handoff export-triton: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.serve")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_export_triton_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
