"""Lifecycle of a real server process: graceful SIGTERM, and hot reload from the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from serve_helpers import Bundles, running, start_server, stop_server

from labkit.runtime import load


def _infer_body(x: np.ndarray, binary_output: bool = False) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input_0",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ],
        "parameters": {"binary_data_output": binary_output},
    }


def test_sigterm_unready_first_then_drains_in_flight(bundles: Bundles, tmp_path: Path) -> None:
    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0")
    drain = 1.5  # room for three requests on a loaded machine before it stops accepting
    server = start_server(
        store,
        tmp_path,
        "--drain-delay",
        str(drain),
        "--reload-interval",
        "0",
        "--graceful-timeout",
        "120",
    )
    try:
        # A slow request: 1M rows as binary in, JSON out (encoding takes a while).
        big = np.random.default_rng(0).standard_normal((1_000_000, 8)).astype(np.float32)
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input_0",
                        "shape": list(big.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": big.nbytes},
                    }
                ]
            }
        )
        body = header.encode() + big.tobytes()
        slow: dict[str, object] = {}

        def upload() -> Iterator[bytes]:
            # in flight by construction: the rest of the body comes after the drain delay,
            # when the server no longer accepts connections but must finish this request
            yield body[: len(body) // 2]
            time.sleep(drain + 0.5)
            yield body[len(body) // 2 :]

        def send_slow() -> None:
            with httpx.Client(timeout=120) as c:
                r = c.post(
                    f"{server.url}/v2/models/mlp/infer",
                    content=upload(),
                    headers={
                        "Inference-Header-Content-Length": str(len(header)),
                        "Content-Length": str(len(body)),
                    },
                )
                slow["done_at"] = time.monotonic()
                slow["status"] = r.status_code
                slow["doc"] = r.json() if r.status_code == 200 else r.text

        t = threading.Thread(target=send_slow)
        t.start()
        time.sleep(0.3)  # let it get in
        server.proc.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=10) as c:
            r = c.get("/v2/health/ready")
            assert r.status_code == 503 and r.json() == {"ready": False}
            assert c.get("/v2/health/live").status_code == 200
            x = np.ones((1, 8), np.float32)
            r = c.post("/v2/models/mlp/infer", json=_infer_body(x))  # still served while draining
            assert r.status_code == 200, r.text
        t.join(120)
        assert slow.get("status") == 200, slow
        # it finished after the drain delay, i.e. after the server stopped accepting
        assert slow["done_at"] > signalled_at + drain  # type: ignore[operator]
        out = slow["doc"]["outputs"][0]  # type: ignore[index]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        expected = load(store / "mlp" / "1.0.0").predict(big)["output"]
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        assert server.proc.wait(60) == 0
        assert "draining" in server.logs()
        try:
            httpx.get(f"{server.url}/v2/health/live", timeout=2)
            raise AssertionError("server still listening after exit")
        except httpx.ConnectError:
            pass
    finally:
        stop_server(server)


class _Hammer(threading.Thread):
    """Requests without a version, back to back, recording every outcome."""

    def __init__(self, url: str, x: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.url, self.x = url, x
        self.results: list[tuple[int, str, np.ndarray | None]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v2/models/mlp/infer", json=_infer_body(self.x))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                    continue
                doc = r.json()
                out = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(-1, 3)
                self.results.append((200, doc["model_version"], out))

    def versions(self) -> set[str]:
        return {v for _, v, _ in self.results}


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _land(src: Path, store: Path, version: str, tamper: str | None = None) -> None:
    """Put a bundle into the store the way a writer does: build aside, then one rename."""
    staging = store / "mlp" / f".incoming-{version}"
    shutil.copytree(src, staging)
    if tamper == "weights":
        model = staging / "models" / "fp32.onnx"
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, different bytes
        model.write_bytes(bytes(data))
    elif tamper == "manifest":
        (staging / "manifest.json").write_text("{not json")
    os.rename(staging, store / "mlp" / version)


def test_hot_reload_good_version_then_refuses_tampered(bundles: Bundles, tmp_path: Path) -> None:
    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0")
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    expected = {v: load(bundles.paths[f"mlp-{v}"]).predict(x)["output"] for v in ("1.0.0", "1.1.0")}
    with running(store, tmp_path, "--reload-interval", "0.3") as server:
        hammer = _Hammer(server.url, x)
        hammer.start()
        try:
            _wait_for(lambda: "1.0.0" in hammer.versions(), 20, "first answers")
            _land(bundles.paths["mlp-1.1.0"], store, "1.1.0")
            _wait_for(lambda: "1.1.0" in hammer.versions(), 30, "1.1.0 to be served")
            _land(bundles.paths["mlp-1.2.0"], store, "1.2.0", tamper="weights")
            _land(bundles.paths["mlp-1.2.0"], store, "2.0.0", tamper="manifest")
            _wait_for(
                lambda: server.metrics().count('result="refused"') >= 2,
                30,
                "the tampered versions to be refused",
            )
            n = len(hammer.results)
            _wait_for(lambda: len(hammer.results) > n + 20, 20, "more answers after refusal")
        finally:
            hammer.stop.set()
            hammer.join(30)
        assert not hammer.failures, hammer.failures[:5]
        assert hammer.versions() == {"1.0.0", "1.1.0"}
        for _, version, out in hammer.results:
            np.testing.assert_array_equal(out, expected[version])
        # after 1.1.0 appeared, nothing went back to 1.0.0
        seq = [v for _, v, _ in hammer.results]
        assert "1.0.0" not in seq[seq.index("1.1.0") :]
        with server.client() as c:
            assert c.get("/v2/models/mlp").json()["versions"] == ["1.0.0", "1.1.0"]
            assert c.get("/v2/models/mlp/versions/1.2.0").status_code == 404
            assert c.get("/v2/models/mlp/versions/2.0.0").status_code == 404
        metrics = server.metrics()
        assert re.search(
            r'labkit_model_loads_total\{model="mlp",result="refused",'
            r'version="1.2.0"\} 1\.0',
            metrics,
        ), metrics
        assert re.search(
            r'labkit_model_loads_total\{model="mlp",result="ok",'
            r'version="1.1.0"\} 1\.0',
            metrics,
        )
        logs = server.logs()
        assert "refused mlp 1.2.0" in logs and "digest" in logs.lower()
        assert "refused mlp 2.0.0" in logs
