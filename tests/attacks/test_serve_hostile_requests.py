"""Issue 8 section 3: hostile requests -- numbers JSON cannot hold, non-finite outputs, bodies
that stall or vanish, memory, shutdown, redirects and the bearer scheme.

Real servers on 127.0.0.1 (subprocesses), real sockets and real models: an MLP bundle made by
the pipeline and a ``log`` graph built with ``onnx.helper`` that answers NaN for some rows.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp, onnx_model, peak_rss_mib, with_model  # noqa: E402
from serve_helpers import Server, running, start_server  # noqa: E402

TOKEN = "s3cret-token-for-tests"  # noqa: S105 - a test fixture
AUTH = {"Authorization": f"Bearer {TOKEN}"}
X = {"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_mlp(root)
    logm = build_mlp(root, name="logm")
    positive = np.eye(8, dtype=np.float32)[7:8]  # x @ W > 0 for this row: a finite golden set
    with_model(logm, onnx_model("log"), positive)
    return root


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        store,
        tmp_path_factory.mktemp("logs"),
        "--reload-interval",
        "0",
        "--token",
        TOKEN,
        "--body-timeout",
        "3",
        "--max-body-mb",
        "1",
        "--max-body-budget-mb",
        "1",
    ) as s:
        yield s


def _post(
    server: Server,
    body: bytes,
    path: str = "/v2/models/mlp/infer",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.post(path, content=body, headers={**AUTH, **(headers or {})})


def _body(data: str, shape: str = "[1, 8]", datatype: str = "FP32") -> bytes:
    return (
        f'{{"inputs": [{{"name": "input_0", "shape": {shape}, "datatype": "{datatype}", '
        f'"data": {data}}}]}}'
    ).encode()


def _no_server_errors(server: Server) -> None:
    metrics = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text
    assert 'status="500"' not in metrics, metrics
    assert "Traceback" not in server.logs()


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("5000-digit integer in data", _body("[" + "7" * 5000 + ", 1, 2, 3, 4, 5, 6, 7]")),
        ("5000-digit integer as INT64", _body("[" + "7" * 5000 + "]", "[1]", "INT64")),
        ("5000-digit integer in shape", _body("[1]", "[1, " + "9" * 5000 + "]")),
        ("5000-digit integer as id", b'{"id": ' + b"1" * 5000 + b', "inputs": []}'),
        ("NaN literal", _body("[NaN, 1, 2, 3, 4, 5, 6, 7]")),
        ("Infinity literal", _body("[Infinity, 1, 2, 3, 4, 5, 6, 7]")),
        ("-Infinity literal", _body("[-Infinity, 1, 2, 3, 4, 5, 6, 7]")),
        ("NaN in a parameter", b'{"parameters": {"x": NaN}, "inputs": []}'),
        ("overflowing float literal", _body("[1e999, 1, 2, 3, 4, 5, 6, 7]")),
        ("overflows FP32", _body("[1e39, 1, 2, 3, 4, 5, 6, 7]")),
        ("overflowing literal in a parameter", b'{"parameters": {"x": 1e999}, "inputs": []}'),
    ],
)
def test_numbers_json_cannot_hold_are_400(server: Server, case: str, body: bytes) -> None:
    r = _post(server, body)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.json()["error"]
    _no_server_errors(server)


def test_non_finite_outputs_are_never_bare_nan(server: Server) -> None:
    negative = (-np.eye(8, dtype=np.float32)[7:8]).ravel().tolist()
    body = {"inputs": [{"name": "input_0", "shape": [1, 8], "datatype": "FP32", "data": negative}]}
    r = _post(server, json.dumps(body).encode(), "/v2/models/logm/infer")
    assert r.status_code == 422 and b"NaN" not in r.content.replace(b"NaN or", b"")
    assert "binary_data" in r.json()["error"]  # says how to get it
    body["parameters"] = {"binary_data_output": True}
    r = _post(server, json.dumps(body).encode(), "/v2/models/logm/infer")
    assert r.status_code == 200
    n = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:n])
    values = np.frombuffer(r.content[n:], "<f4")
    assert header["outputs"][0]["shape"] == [1, 3] and np.isnan(values).all()
    _no_server_errors(server)


def test_client_gone_mid_body_is_not_a_server_error(server: Server) -> None:
    head = (
        f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
        "\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head + b'{"inputs": [')
            time.sleep(0.1)
    time.sleep(0.5)
    metrics = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text
    assert 'labkit_requests_total{route="infer",status="499"}' in metrics
    _no_server_errors(server)


def test_trailing_slash_redirect_ignores_the_host_header(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.get("/v2/models/mlp/?x=1", headers={**AUTH, "Host": "evil.example"})
        assert r.status_code == 307
        assert r.headers["location"] == "/v2/models/mlp?x=1"
        r = c.get("//evil.example/", headers=AUTH)
        assert r.status_code == 404 and "location" not in r.headers


def test_bearer_scheme_is_case_insensitive(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            r = c.post(
                "/v2/models/mlp/infer", json=X, headers={"Authorization": f"{scheme} {TOKEN}"}
            )
            assert r.status_code == 200, scheme
        for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}"):
            r = c.post("/v2/models/mlp/infer", json=X, headers={"Authorization": wrong})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", wrong


def test_bodies_over_the_memory_budget_get_503_retry_after(server: Server) -> None:
    # the budget is 1 MiB: one stalled upload holds 0.7 MiB, so a second 0.7 MiB body waits
    head = (
        f"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
        "\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    padded = json.dumps(X).encode() + b" " * 700_000  # valid JSON: whitespace after the value
    with socket.create_connection(("127.0.0.1", server.port)) as holder:
        holder.sendall(head + b" " * 700_000)
        time.sleep(0.3)
        r = _post(server, padded)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "memory budget" in r.json()["error"]
    time.sleep(0.3)  # the holder went away: its bytes are released
    r = _post(server, padded)
    assert r.status_code == 200
    _no_server_errors(server)


def test_graceful_timeout_below_one_second_is_not_forever(store: Path, tmp_path: Path) -> None:
    server = start_server(
        store,
        tmp_path,
        "--reload-interval",
        "0",
        "--graceful-timeout",
        "0.5",
        "--body-timeout",
        "120",
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(
                b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
            )  # in flight, waiting for its body
            time.sleep(0.3)
            start = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(20)
            took = time.monotonic() - start
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    assert code == 0 and took < 5, (code, took)


@pytest.mark.slow
def test_four_concurrent_60_mib_json_bodies_stay_under_1_gb(store: Path, tmp_path: Path) -> None:
    block, repeats = 10_000, 78  # 780,000 rows of 8 floats, ~10 characters each: ~60 MiB
    rows = block * repeats
    x = np.random.default_rng(0).normal(size=(block, 8)).astype(np.float32)
    text = ",".join(np.char.mod("%.7g", x.ravel()).tolist())
    body = _body("[" + ",".join([text] * repeats) + "]", f"[{rows}, 8]")
    del text
    assert 58 << 20 < len(body) < 64 << 20, len(body)
    from labkit.runtime import load

    expected = load(next(store.glob("mlp/*"))).predict({"input_0": x[:2]})["output"]
    results: list[httpx.Response] = []
    with running(store, tmp_path, "--reload-interval", "0", "--body-timeout", "300") as server:

        def send() -> None:
            with httpx.Client(timeout=600) as c:
                results.append(c.post(f"{server.url}/v2/models/mlp/infer", content=body))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        peak = peak_rss_mib(server.proc.pid)
    print(
        f"\npeak server RSS, four concurrent {len(body) / 2**20:.1f} MiB JSON bodies: "
        f"{peak:.0f} MiB"
    )
    assert sorted(r.status_code for r in results) == [200] * 4, [r.text[:200] for r in results]
    out = results[0].json()["outputs"][0]
    assert out["shape"] == [rows, 3]
    np.testing.assert_allclose(np.array(out["data"][:6]).reshape(2, 3), expected, rtol=1e-5)
    assert peak < 1024, f"peak RSS {peak:.0f} MiB"
