"""Issue 16 case 4: the batching probe is run at the sizes serving really uses.

The attack: a model that is row-independent in batches of up to 4 rows (the old probe's
size) and mixes rows from 5 on. The old probe passed it, the server batched it and 431 of 480
answers to 16 clients held other clients' data. A second model mixes only in batches of odd
size, which a probe at even sizes never sees. The probe (``labkit.runtime.batching``) now runs
at the server's own ``--max-batch-size`` and at the largest prime below it, with distinct rows
at every position; the same probe decides ``export-triton``'s batching (tests/serve/test_triton.py).
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
from hostile_helpers import build_mlp, with_model  # noqa: E402
from serve_helpers import running  # noqa: E402

from labkit.runtime import load  # noqa: E402
from labkit.runtime.batching import probe_batching, probe_sizes  # noqa: E402
from labkit.serve.repository import ModelRepository  # noqa: E402

W = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)


def mixing_model(kind: str) -> bytes:
    """``input_0`` [batch, 8] -> ``output`` = x @ W, minus the batch mean of x @ W when the
    batch has 5 rows or more (``from5``) or an odd number of rows above one (``odd``)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: int) -> object:
        return numpy_helper.from_array(np.array(value, np.int64), name)

    nodes = [
        helper.make_node("MatMul", ["input_0", "W"], ["p"]),
        helper.make_node("Shape", ["input_0"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
    ]
    if kind == "from5":
        nodes.append(helper.make_node("Greater", ["n", "four"], ["mixes"]))
    else:
        nodes += [
            helper.make_node("Mod", ["n", "two"], ["rem"]),
            helper.make_node("Equal", ["rem", "one"], ["is_odd"]),
            helper.make_node("Greater", ["n", "one"], ["several"]),
            helper.make_node("And", ["is_odd", "several"], ["mixes"]),
        ]
    nodes += [
        helper.make_node("Cast", ["mixes"], ["factor"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["p"], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Mul", ["factor", "mean"], ["mix"]),
        helper.make_node("Sub", ["p", "mix"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("input_0", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(W, "W"),
            const("zero", 0),
            const("one", 1),
            const("two", 2),
            const("four", 4),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = build_mlp(tmp_path_factory.mktemp("built"))
    golden = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    out = {}
    for kind in ("from5", "odd"):
        store = tmp_path_factory.mktemp(kind)
        bundle = store / "mlp" / "1.0.0"
        shutil.copytree(built, bundle)
        with_model(bundle, mixing_model(kind), golden)
        out[kind] = store
    return out


def test_the_sizes_probed_are_the_servers_and_a_prime_below() -> None:
    assert probe_sizes(32) == (32, 31)
    assert probe_sizes(4) == (4, 3)
    assert probe_sizes(3) == (3, 2)
    assert probe_sizes(2) == (2,)
    assert probe_sizes(1) == ()


def test_the_attack_is_real_a_probe_of_four_rows_cannot_see_it(
    stores: dict[str, Path],
) -> None:
    import onnxruntime as ort

    model = (stores["from5"] / "mlp" / "1.0.0" / "models" / "fp32.onnx").read_bytes()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)
    alone = np.concatenate([session.run(None, {"input_0": rows[i : i + 1]})[0] for i in range(5)])
    four = session.run(None, {"input_0": rows[:4]})[0]
    five = session.run(None, {"input_0": rows})[0]
    np.testing.assert_allclose(four, alone[:4], rtol=1e-5, atol=1e-6)  # 4 rows: "independent"
    assert np.abs(five - alone).max() > 0.1  # 5 rows: every answer moved by the others
    # ... and the batch of 4 the old probe ran is exactly what the new one runs at size 4
    assert probe_batching(load(stores["from5"] / "mlp" / "1.0.0"), 4).ok


@pytest.mark.parametrize("kind", ["from5", "odd"])
def test_the_probe_at_the_servers_size_turns_batching_off(
    stores: dict[str, Path], kind: str
) -> None:
    model = load(stores[kind] / "mlp" / "1.0.0")
    probe = probe_batching(model, 32)
    assert not probe.ok and probe.sizes == (32, 31)
    assert "not independent" in probe.reason, probe.reason
    repo = ModelRepository(stores[kind], tuning=False, max_batch_size=32)
    repo.refresh()
    assert repo.get("mlp").batch_dim is None
    # a server that never batches more than 4 rows may batch it: proven at 4 and 3
    small = ModelRepository(stores[kind], tuning=False, max_batch_size=4)
    small.refresh()
    assert small.get("mlp").batch_dim == ("batch" if kind == "from5" else None)


def test_sixteen_clients_never_receive_each_others_data(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    rows = np.random.default_rng(3).normal(size=(96, 8)).astype(np.float32) * 10
    with running(
        stores["from5"],
        tmp_path,
        "--reload-interval",
        "0",
        "--no-tuning",
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

        with ThreadPoolExecutor(16) as pool:
            answers = np.array(list(pool.map(ask, range(len(rows)))), np.float32)
    np.testing.assert_allclose(answers, rows @ W, rtol=1e-4, atol=1e-4)  # each row alone
