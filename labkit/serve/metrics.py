"""Prometheus metrics of one server, in its own registry (several apps may share a process).

Label sets are bounded: routes and gRPC methods come from fixed tables, never from a
client's path; model and version labels come only from the repository (versions the store
holds), and every series of a version is removed when the version leaves the store, served
or refused (:meth:`Metrics.forget`), so landing and deleting versions cannot grow ``/metrics``.
"""

from __future__ import annotations

import threading
from typing import Any

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
MODEL = ["model", "version"]  # the leading labels of every per-version metric


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lock = threading.Lock()
        self._children: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}
        self._cache: dict[tuple[int, str, str, tuple[str, ...]], Any] = {}

        # -- per front end (fixed label sets) --
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
        # -- per model version (forgotten with the version) --
        self.model_requests = Counter(
            "labkit_model_requests",
            "Inference requests that reached a model version, by protocol and outcome "
            "(ok, client_error, overloaded, cancelled, error)",
            [*MODEL, "protocol", "outcome"],
            registry=r,
        )
        self.model_latency = Histogram(
            "labkit_model_request_duration_seconds",
            "Time from a request's arrival at the data plane (decoded inputs pending) to its "
            "outputs, by model version and protocol",
            [*MODEL, "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inferences = Counter(
            "labkit_inferences",
            "Successful inferences, by model and version",
            MODEL,
            registry=r,
        )
        self.batch_size = Histogram(
            "labkit_batch_size",
            "Requests run together in one engine call",
            MODEL,
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "labkit_queue_duration_seconds",
            "Time a request waited in its model's batch queue before it ran",
            MODEL,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "labkit_queue_depth",
            "Requests waiting in a model's batch queue",
            MODEL,
            registry=r,
        )
        self.loads = Counter(
            "labkit_model_loads",
            "Model versions loaded (ok) or refused (refused) by the store watcher",
            [*MODEL, "result"],
            registry=r,
        )
        self.refused = Counter(
            "labkit_versions_refused",
            "Versions refused at startup or hot reload, by the rule "
            "they broke (or the error's type)",
            [*MODEL, "rule"],
            registry=r,
        )
        # -- the server --
        self.inflight = Gauge(
            "labkit_inflight_requests", "Requests inside the server right now", registry=r
        )
        self.rejected = Counter(
            "labkit_rejected", "Requests refused for overload, by reason", ["reason"], registry=r
        )
        self.served = Gauge(
            "labkit_model_versions_served",
            "Versions currently served, by model",
            ["model"],
            registry=r,
        )
        self.ready = Gauge("labkit_ready", "1 when the server reports ready", registry=r)
        self.watcher_stalls = Counter(
            "labkit_watcher_stalls",
            "Times the store watcher made no progress past --stall-timeout and was replaced",
            registry=r,
        )
        self.watcher_stuck = Gauge(
            "labkit_watcher_stuck_threads",
            "Abandoned watcher threads still blocked (in a read that never returns)",
            registry=r,
        )

    def of(self, metric: Any, model: str, version: str, *labels: str) -> Any:
        """``metric``'s child for one model version (and further labels), remembered so that
        :meth:`forget` can remove it. Per request: a dict lookup once the child exists."""
        key = (id(metric), model, version, labels)
        child = self._cache.get(key)
        if child is None:
            with self._lock:
                self._children.setdefault((model, version), set()).add((metric, labels))
                child = self._cache[key] = metric.labels(model, version, *labels)
        return child

    def forget(self, model: str, version: str) -> None:
        """Remove every series of a version that left the store."""
        with self._lock:
            children = self._children.pop((model, version), set())
            for key in [k for k in self._cache if k[1:3] == (model, version)]:
                del self._cache[key]
        for metric, labels in children:
            try:
                metric.remove(model, version, *labels)
            except KeyError:
                pass
        with self._lock:
            if not any(m == model for m, _ in self._children):
                try:
                    self.served.remove(model)
                except KeyError:
                    pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
