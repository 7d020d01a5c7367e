"""Bounded overload test on loopback: ~4x capacity, open loop.

The model is compute-bound (~10 ms a request on one thread) so that capacity is set by
inference, as in production, not by Python's HTTP handling. The server admits one request at
a time (``--max-inflight 1``); everything beyond is answered 503 + Retry-After at once.

Checked: every request gets exactly one response; every 200 carries the right numbers for
its own input; every refusal is 503/429 with Retry-After; and the accepted requests' p99
stays within MAX_P99_RATIO of the unloaded p99. The machine is shared and noisy, so unloaded
and overloaded phases are interleaved in rounds and the median of the per-round ratios is
judged (as the field notes recommend for benchmarks on this kind of machine).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import REPO, Bundles, running

from labkit.runtime import load

sys.path.insert(0, str(REPO / "benchmarks"))
from serve_bench import closed_loop, open_loop  # noqa: E402

ROUNDS = 5
OVERLOAD = 4.0
OVERLOAD_SECONDS = 2.0
UNLOADED_REQUESTS = 60
# What separates admission control from a queue, not a speed target: a server that queued
# the excess of 4x its capacity for 2 s would answer its last accepted requests ~6 s late
# (a ratio of several hundred). Run alone, the median ratio measured 1.0-1.35; beside the
# other xdist worker on 2 cores, up to 2.06 (docs/serving.md "Sizing for latency").
MAX_P99_RATIO = 5.0


def _binary_request(x: np.ndarray, rid: int) -> bytes:
    header = json.dumps(
        {
            "id": str(rid),
            "inputs": [
                {
                    "name": "input_0",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
        }
    ).encode()
    body = header + x.tobytes()
    return (
        f"POST /v2/models/seq/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.slow
def test_overload_is_refused_fast_and_accepted_stay_fast(bundles: Bundles, tmp_path: Path) -> None:
    store = bundles.store_with(tmp_path / "store", "seq")
    model = load(bundles.paths["seq"])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 128, 64)).astype(np.float32) for _ in range(32)]
    expected = [model.predict(x)["output"] for x in xs]
    payloads = [_binary_request(x, i) for i, x in enumerate(xs)]

    with running(
        store,
        tmp_path,
        "--max-inflight",
        "1",
        "--threads",
        "1",
        "--max-batch-size",
        "8",
        "--reload-interval",
        "0",
    ) as server:
        host, port = "127.0.0.1", server.port
        closed_loop(host, port, payloads, concurrency=1, per_connection=20, duration=5)  # warm
        capacity = closed_loop(
            host, port, payloads, concurrency=1, per_connection=10**6, duration=1.0
        ).throughput()
        rate = OVERLOAD * capacity
        ratios, rounds = [], []
        for _ in range(ROUNDS):
            calm = closed_loop(
                host, port, payloads, concurrency=1, per_connection=UNLOADED_REQUESTS, duration=30
            )
            count = int(rate * OVERLOAD_SECONDS)
            storm = open_loop(host, port, payloads, rate=rate, count=count)

            assert not calm.errors and not storm.errors, (calm.errors, storm.errors)
            assert len(storm.replies) == count  # nothing lost
            assert {r.status for r in calm.replies} == {200}
            statuses = [r.status for r in storm.replies]
            assert set(statuses) <= {200, 429, 503}, set(statuses)
            refused = [r for r in storm.replies if r.status != 200]
            assert refused and len(refused) < count  # really overloaded, still serving
            assert all("retry-after" in r.headers for r in refused)
            for reply in [*calm.replies, *storm.ok()]:
                doc = json.loads(reply.body)
                assert doc["id"] == str(reply.index)
                out = doc["outputs"][0]
                got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
                np.testing.assert_allclose(got, expected[reply.index], rtol=1e-5, atol=1e-6)
            unloaded_p99 = calm.percentile(99)
            accepted_p99 = storm.percentile(99)
            ratios.append(accepted_p99 / unloaded_p99)
            rounds.append(
                {
                    "unloaded_p99_ms": round(unloaded_p99 * 1e3, 2),
                    "accepted_p99_ms": round(accepted_p99 * 1e3, 2),
                    "accepted_p50_ms": round(storm.percentile(50) * 1e3, 2),
                    "offered_rps": round(rate),
                    "accepted": len(storm.ok()),
                    "refused": len(refused),
                    "sent": count,
                }
            )
        print(f"\ncapacity {capacity:.0f} req/s; rounds: {json.dumps(rounds)}")
        metrics = server.metrics()
    assert 'labkit_rejected_total{reason="inflight"}' in metrics
    assert statistics.median(ratios) <= MAX_P99_RATIO, rounds
