"""Observability: per-model-version metrics, OpenTelemetry spans (in memory, and through the
standard OTLP exporter to a collector the test runs), JSON logs in one format for labkit's and
uvicorn's lines, and the access log over REST and gRPC."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import Bundles, free_port, running

from labkit.serve import ServeConfig, create_app

X = {"inputs": [{"name": "input_0", "shape": [2, 8], "datatype": "FP32", "data": [0.5] * 16}]}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def store(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundles.store_with(tmp_path_factory.mktemp("observe"), "mlp-1.0.0", "mlp-1.1.0")


def test_spans_per_request_and_per_version_metrics(store: Path) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode
    from starlette.testclient import TestClient

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(store, ServeConfig(reload_interval_s=0), tracer_provider=provider)
    with TestClient(app) as c:
        ok = c.post(
            "/v2/models/mlp/versions/1.0.0/infer", json=X, headers={"traceparent": TRACEPARENT}
        )
        assert ok.status_code == 200
        latest = c.post("/v2/models/mlp/infer", json=X)
        assert latest.json()["model_version"] == "1.1.0"
        bad = c.post(
            "/v2/models/mlp/infer", json={"inputs": [{**X["inputs"][0], "datatype": "FP64"}]}
        )
        assert bad.status_code == 400
        metrics = c.get("/metrics").text
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["labkit.infer"] * 3
    first, second, third = spans
    assert dict(first.attributes) | {"labkit.queue_ms": 0} == {
        "labkit.model": "mlp",
        "labkit.version": "1.0.0",
        "labkit.protocol": "rest",
        "labkit.batch.requests": 1,
        "labkit.batch.rows": 2,
        "labkit.queue_ms": 0,
    }
    assert f"{first.context.trace_id:032x}" == TRACE_ID  # the caller's trace continues
    assert first.parent is not None and f"{first.parent.span_id:016x}" == "b7ad6b7169203331"
    assert second.attributes["labkit.version"] == "1.1.0" and second.parent is None
    assert third.status.status_code == StatusCode.ERROR and "FP64" in third.status.description

    def sample(name: str, **labels: str) -> float:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        found = re.search(rf"^{name}\{{{re.escape(inner)}\}} (\S+)$", metrics, re.M)
        assert found, f"{name}{{{inner}}} not in /metrics"
        return float(found.group(1))

    mlp = {"model": "mlp", "protocol": "rest"}
    assert sample("labkit_model_requests_total", **mlp, version="1.0.0", outcome="ok") == 1
    assert sample("labkit_model_requests_total", **mlp, version="1.1.0", outcome="ok") == 1
    assert (
        sample("labkit_model_requests_total", **mlp, version="1.1.0", outcome="client_error") == 1
    )
    assert sample("labkit_model_request_duration_seconds_count", **mlp, version="1.1.0") == 2
    assert sample("labkit_queue_duration_seconds_count", model="mlp", version="1.0.0") == 1
    assert sample("labkit_batch_size_count", model="mlp", version="1.0.0") == 1


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps every body posted to /v1/traces."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    handler = type("Collector", (_Collector,), {"bodies": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.bodies
    finally:
        server.shutdown()


def test_json_logs_access_log_and_otlp_export(
    store: Path, tmp_path: Path, collector: tuple[str, list[bytes]]
) -> None:
    """One real server: --log-format json --access-log --otel --grpc-port. Every line it
    writes is one JSON object (uvicorn's too); REST and gRPC requests get access lines; the
    spans reach an OTLP collector through the standard exporter."""
    tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    endpoint, bodies = collector
    grpc_port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "labkit-test",
    }
    args = ("--reload-interval", "0", "--log-format", "json", "--access-log", "--otel")
    with running(store, tmp_path, *args, "--grpc-port", str(grpc_port), env=env) as server:
        with server.client() as c:
            assert c.post("/v2/models/mlp/infer", json=X).status_code == 200
            assert c.get("/v2/models/nope").status_code == 404
        client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        x = np.ones((1, 8), np.float32)
        inp = tritonclient_grpc.InferInput("input_0", [1, 8], "FP32")
        inp.set_data_from_numpy(x)
        client.infer("mlp", [inp], model_version="1.0.0")
        client.close()
        deadline = time.monotonic() + 20
        while len(bodies) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the gRPC span may come in a second export
        logs = server.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]  # all JSON
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    loggers = {doc["logger"] for doc in lines}
    assert {"labkit.serve", "labkit.access"} <= loggers
    assert any(name.startswith("uvicorn") for name in loggers), loggers
    access = [doc for doc in lines if doc["logger"] == "labkit.access"]
    rest = [a for a in access if a["protocol"] == "rest" and a["method"] == "POST"]
    assert rest[0]["path"] == "/v2/models/mlp/infer" and rest[0]["status"] == 200
    assert (rest[0]["model"], rest[0]["version"]) == ("mlp", "1.1.0")
    assert any(a["path"] == "/v2/models/nope" and a["status"] == 404 for a in access)
    grpc_lines = [a for a in access if a["protocol"] == "grpc" and a["method"] == "ModelInfer"]
    assert grpc_lines and grpc_lines[0]["status"] == "OK" and grpc_lines[0]["version"] == "1.0.0"

    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert service["service.name"] == "labkit-test"
            for scope in resource.scope_spans:
                spans += scope.spans
    found = {
        (
            {a.key: a.value.string_value for a in s.attributes}["labkit.protocol"],
            {a.key: a.value.string_value for a in s.attributes}["labkit.version"],
        )
        for s in spans
        if s.name == "labkit.infer"
    }
    assert found == {("rest", "1.1.0"), ("grpc", "1.0.0")}, found


def test_text_log_lines_escape_what_clients_chose() -> None:
    from labkit.serve.logs import printable

    assert printable("/v2/models/a\nb\x1b[31m") == "/v2/models/a\\nb\\x1b[31m"
    assert printable("/x" * 1000).endswith("…") and len(printable("/x" * 1000)) == 513


def test_metrics_endpoint_is_plain_text(store: Path) -> None:
    from starlette.testclient import TestClient

    with TestClient(create_app(store, ServeConfig(reload_interval_s=0))) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert httpx.Response(200, text=r.text).text.count("labkit_ready 1.0") == 1
