"""Server options, one frozen dataclass; the CLI and the Ray entry point fill it in."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServeConfig"]

MiB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    """How ``handoff serve`` behaves. Defaults follow Triton where Triton has one.

    Overload is answered early and cheaply: ``max_inflight`` bounds requests inside the app
    (reading, queued, running, answering), ``max_queue`` bounds each model's batch queue, and
    ``queue_timeout_ms`` drops a request that waited too long before it ran. All three answer
    503 with ``Retry-After``; none of them ever changes an answer.

    Hostile clients are bounded per connection (``max_connections``: at the cap the oldest
    idle connection is closed to admit a new one; ``header_timeout_s``, ``max_header_bytes``,
    ``keepalive_timeout_s``) and per body (``max_body_bytes``, ``body_timeout_s``, and
    ``max_body_budget_bytes`` for all bodies held at once, 503 + ``Retry-After`` past it).
    """

    max_body_bytes: int = 64 * MiB
    max_json_depth: int = 100
    max_batch_size: int = 32  # 1 disables micro-batching
    max_batch_delay_ms: float = 1.0  # waited only while the model is busy (adaptive)
    max_queue: int = 128  # requests waiting per model version
    max_inflight: int = 256  # requests inside the app at once
    queue_timeout_ms: float = 2000.0
    workers: int = 1  # ONNX Runtime runs at once (each uses `threads` intra-op threads)
    threads: int | None = None
    token: str | None = None  # bearer token; health probes stay open
    reload_interval_s: float = 2.0  # 0 disables watching the store
    drain_delay_s: float = 0.0  # after SIGTERM: not-ready but still serving, for load balancers
    graceful_timeout_s: float = 30.0
    retry_after_s: int = 1
    self_test: bool = True  # re-run the golden vectors before a version is served
    max_connections: int = 4096  # lowered to the open-file limit minus a reserve at startup
    header_timeout_s: float = 10.0  # a connection must send complete headers this fast
    max_header_bytes: int = 64 * 1024  # request line + headers, whatever the HTTP parser
    keepalive_timeout_s: float = 5.0  # idle keep-alive connections are closed after this
    body_timeout_s: float = 60.0  # from the end of the headers to the end of the body
    max_body_budget_bytes: int = 256 * MiB  # request bodies held at once (>= max_body_bytes)
    tuning: bool = True  # use this host's `handoff tune` profile when one matches
    tune_budget_s: float | None = None  # tune untuned versions before serving them
    trusted_keys: tuple[str, ...] | None = None  # PEM public keys; None: signatures not required
    profile_dir: str | None = (
        None  # host profiles (default: $LABKIT_PROFILE_DIR, else STORE/.tuning)
    )
    allow_reduced_precision: bool = False  # with trusted keys: run unsigned bf16 profiles too

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_json_depth",
            "max_batch_size",
            "max_queue",
            "max_inflight",
            "workers",
            "max_connections",
            "max_header_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "max_batch_delay_ms",
            "queue_timeout_ms",
            "reload_interval_s",
            "drain_delay_s",
            "graceful_timeout_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("header_timeout_s", "keepalive_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_body_budget_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_body_budget_bytes ({self.max_body_budget_bytes}) must be at "
                f"least max_body_bytes ({self.max_body_bytes})"
            )
        if self.token is not None and len(self.token) < 8:
            raise ValueError("the bearer token must be at least 8 characters")
