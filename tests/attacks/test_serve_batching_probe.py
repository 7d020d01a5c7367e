"""Issue 8 section 2, "batching needs proof": a model is batched only after a probe shows on
at least two distinct rows that rows are independent.

The hostile model subtracts the batch mean (built with ``onnx.helper``): alone, every row
answers zeros; batched with other clients' rows, it would answer with their data mixed in.
Its golden set has one row, which used to skip the probe.
"""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from hostile_helpers import build_mlp, onnx_model, with_model  # noqa: E402
from serve_helpers import running  # noqa: E402

from labkit.serve.repository import ModelRepository  # noqa: E402


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = build_mlp(tmp_path_factory.mktemp("built"))
    one_row = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    out = {}
    for kind, model in (("dependent", onnx_model("batch_mean")), ("independent", None)):
        store = tmp_path_factory.mktemp(kind)
        bundle = store / "mlp" / "1.0.0"
        shutil.copytree(built, bundle)
        if model is None:  # the real MLP, with its golden set cut to one row
            import onnxruntime  # noqa: F401 - with_model runs the model to make the golden set

            model = (bundle / "models" / "fp32.onnx").read_bytes()
        with_model(bundle, model, one_row)
        out[kind] = store
    return out


def test_one_row_golden_set_batch_dependent_model_is_not_batched(stores: dict[str, Path]) -> None:
    repo = ModelRepository(stores["dependent"])
    repo.refresh()
    assert repo.get("mlp").batch_dim is None


def test_one_row_golden_set_row_independent_model_is_still_batched(stores: dict[str, Path]) -> None:
    repo = ModelRepository(stores["independent"])
    repo.refresh()
    assert repo.get("mlp").batch_dim == "batch"  # proven on the row and a perturbed copy


def test_no_client_ever_receives_another_clients_data(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(240, 8)).astype(np.float32) * 10
    with running(
        stores["dependent"],
        tmp_path,
        "--reload-interval",
        "0",
        "--max-batch-size",
        "32",
        "--max-batch-delay-ms",
        "20",
    ) as server:
        assert "batching off" in server.logs()

        def ask(i: int) -> list[float]:
            body = {
                "inputs": [
                    {
                        "name": "input_0",
                        "shape": [1, 8],
                        "datatype": "FP32",
                        "data": rows[i].tolist(),
                    }
                ]
            }
            with httpx.Client(timeout=30) as c:
                r = c.post(f"{server.url}/v2/models/mlp/infer", json=body)
            assert r.status_code == 200, r.text
            data: list[float] = r.json()["outputs"][0]["data"]
            return data

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(ask, range(len(rows))))
        sizes = [
            ln
            for ln in server.metrics().splitlines()
            if ln.startswith("labkit_batch_size_bucket") and 'le="1.0"' in ln
        ]
    # alone, a row minus the mean of itself is exactly zero: anything else is mixing
    assert all(a == [0.0, 0.0, 0.0] for a in answers), [a for a in answers if any(a)][:3]
    assert sizes and all(ln.endswith(f" {float(len(rows))}") for ln in sizes), sizes
