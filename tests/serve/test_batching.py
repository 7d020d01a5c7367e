"""Micro-batching with real ONNX Runtime sessions: same answers as unbatched, bounded queue,
queue timeout, and one bad request cannot fail the batch it shares."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve_helpers import Bundles

from labkit.runtime import load
from labkit.serve.batching import Batcher
from labkit.serve.errors import BadRequest, Overloaded
from labkit.serve.metrics import Metrics
from labkit.serve.repository import ServedModel, batch_dim


def _batch_count(metrics: Metrics, name: str) -> tuple[float, float]:
    """(number of runs, number of requests) seen by the batch-size histogram."""
    count = total = 0.0
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == "labkit_batch_size_count" and s.labels["model"] == name:
                count = s.value
            if s.name == "labkit_batch_size_sum" and s.labels["model"] == name:
                total = s.value
    return count, total


def test_batched_equals_unbatched(bundles: Bundles) -> None:
    model = load(bundles.paths["mlp-1.0.0"])
    served = ServedModel(model, batch_dim(model))
    assert served.batch_dim == "batch"
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1 + i % 4, 8)).astype(np.float32) for i in range(60)]
    metrics = Metrics()

    async def main() -> list[dict[str, np.ndarray]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(
                served,
                pool,
                metrics,
                max_batch_size=16,
                max_delay_s=0.002,
                max_queue=100,
                queue_timeout_s=10,
            )
            results = await asyncio.gather(*(batcher.infer({"input_0": x}) for x in inputs))
            await batcher.close()
            return results

    results = asyncio.run(main())
    for x, got in zip(inputs, results):
        alone = model.predict(x)["output"]
        assert got["output"].shape == alone.shape
        np.testing.assert_allclose(got["output"], alone, rtol=1e-6, atol=1e-6)
    runs, requests = _batch_count(metrics, "mlp")
    assert requests == 60 and runs < 30  # requests really were run together


def test_not_batchable_runs_alone(bundles: Bundles) -> None:
    model = load(bundles.paths["mlp-1.0.0"])
    served = ServedModel(model, None)
    metrics = Metrics()
    xs = [np.full((2, 8), i, np.float32) for i in range(8)]

    async def main() -> list[dict[str, np.ndarray]]:
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(
                served,
                pool,
                metrics,
                max_batch_size=16,
                max_delay_s=0.002,
                max_queue=100,
                queue_timeout_s=10,
            )
            out = await asyncio.gather(*(b.infer({"input_0": x}) for x in xs))
            await b.close()
            return out

    for x, got in zip(xs, asyncio.run(main())):
        np.testing.assert_array_equal(got["output"], model.predict(x)["output"])
    assert _batch_count(metrics, "mlp") == (8.0, 8.0)


def test_queue_full_and_queue_timeout(bundles: Bundles) -> None:
    model = load(bundles.paths["mlp-1.0.0"])
    served = ServedModel(model, batch_dim(model))
    x = np.ones((1, 8), np.float32)
    gate = threading.Event()

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(gate.wait)  # the only worker is busy until the gate opens
            b = Batcher(
                served,
                pool,
                Metrics(),
                max_batch_size=1,
                max_delay_s=0,
                max_queue=2,
                queue_timeout_s=0.2,
            )
            first = asyncio.ensure_future(b.infer({"input_0": x}))
            await asyncio.sleep(0.05)  # taken into a batch, waiting for the worker
            queued = [asyncio.ensure_future(b.infer({"input_0": x})) for _ in range(2)]
            await asyncio.sleep(0.01)
            with pytest.raises(Overloaded, match="maximum queue size"):
                await b.infer({"input_0": x})
            await asyncio.sleep(0.3)  # the queued ones outlive the queue timeout
            gate.set()
            out = await asyncio.gather(first, *queued, return_exceptions=True)
            await b.close()
            return out

    first, *queued = asyncio.run(main())
    assert isinstance(first, dict)
    np.testing.assert_array_equal(first["output"], model.predict(x)["output"])
    assert all(isinstance(q, Overloaded) and "waited" in str(q) for q in queued), queued


def test_bad_request_does_not_fail_its_batch(bundles: Bundles) -> None:
    model = load(bundles.paths["two"])
    served = ServedModel(model, batch_dim(model))
    assert served.batch_dim is not None
    rng = np.random.default_rng(1)
    feeds = [
        {
            "input_0": rng.integers(0, 10, (1, 5)).astype(np.int64),
            "input_1": rng.random((1, 1)).astype(np.float32),
        }
        for _ in range(6)
    ]
    feeds[3]["input_0"] = np.full((1, 5), 99, np.int64)  # out of the embedding's range

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(
                served,
                pool,
                Metrics(),
                max_batch_size=8,
                max_delay_s=0.01,
                max_queue=10,
                queue_timeout_s=10,
            )
            out = await asyncio.gather(*(b.infer(f) for f in feeds), return_exceptions=True)
            await b.close()
            return out

    results = asyncio.run(main())
    assert isinstance(results[3], BadRequest)
    for i, got in enumerate(results):
        if i != 3:
            assert isinstance(got, dict), got
            (name,) = got
            np.testing.assert_allclose(got[name], model.predict(feeds[i])[name], rtol=1e-6)
