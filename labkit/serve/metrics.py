"""Prometheus metrics of one server, in its own registry (several apps may share a process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "labkit_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "labkit_request_duration_seconds",
            "Time from request start to response, by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.grpc_requests = Counter(
            "labkit_grpc_requests",
            "gRPC calls answered, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.grpc_latency = Histogram(
            "labkit_grpc_request_duration_seconds",
            "Time from a gRPC call's arrival to its answer, by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inferences = Counter(
            "labkit_inferences",
            "Successful inferences, by model and version",
            ["model", "version"],
            registry=r,
        )
        self.batch_size = Histogram(
            "labkit_batch_size",
            "Requests run together in one ONNX Runtime call",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "labkit_queue_duration_seconds",
            "Time a request waited in its model's batch queue before it ran",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "labkit_queue_depth",
            "Requests waiting in a model's batch queue",
            ["model", "version"],
            registry=r,
        )
        self.inflight = Gauge(
            "labkit_inflight_requests", "Requests inside the server right now", registry=r
        )
        self.rejected = Counter(
            "labkit_rejected", "Requests refused for overload, by reason", ["reason"], registry=r
        )
        self.loads = Counter(
            "labkit_model_loads",
            "Model versions loaded (ok) or refused (refused) by the store watcher",
            ["model", "version", "result"],
            registry=r,
        )
        self.refused = Counter(
            "labkit_versions_refused",
            "Versions refused at startup or hot reload, by the rule "
            "they broke (or the error's type)",
            ["model", "version", "rule"],
            registry=r,
        )
        self.served = Gauge(
            "labkit_model_versions_served",
            "Versions currently served, by model",
            ["model"],
            registry=r,
        )
        self.alias_switches = Counter(
            "labkit_alias_switches",
            "An alias's target put into service (unversioned requests follow it from then)",
            ["model", "alias", "version"],
            registry=r,
        )
        self.alias_held = Counter(
            "labkit_alias_held",
            "An alias's target not put into service on this host (refused here, or not in "
            "the store): the alias keeps answering with an earlier target",
            ["model", "alias", "version"],
            registry=r,
        )
        self.ready = Gauge("labkit_ready", "1 when the server reports ready", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
