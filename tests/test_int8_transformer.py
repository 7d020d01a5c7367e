"""int8 for transformers: static QDQ on the weight MatMuls, S8S8, calibrated on the parity
inputs, offered to ONNX Runtime and OpenVINO and judged on each by the accuracy budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import labkit
from labkit.bundle import verify
from labkit.pipeline import HandoffOptions, Quantize, recipes, run
from labkit.pipeline.export import export
from labkit.pipeline.freeze import freeze
from labkit.pipeline.optimize import activation_matmuls, prepared_path, quantize
from labkit.runtime import engines
from labkit.runtime.engines.openvino import cpu_has_bf16
from labkit.runtime.machine import cpu_info


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(
            32, 4, dim_feedforward=64, batch_first=True, dropout=0.0
        )
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(1))


def _spec(real: bool = False) -> labkit.ModelSpec:
    torch.manual_seed(0)
    x = torch.randn(24, 8, 32)
    return labkit.register(
        Encoder().eval(),
        x[:2],
        name="enc",
        task="classification",
        dynamic_axes={"input_0": {1: "sequence"}},
        parity_inputs=[x] if real else None,
    )


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def test_weights_only_s8s8_quantizes_the_weight_matmuls_only(tmp_path: Path) -> None:
    spec = _spec()
    src = export(spec, tmp_path / "e.onnx").path
    q = Quantize.static_int8_transformer()
    assert q.name == "int8-static" and q.weights_only and q.activation_symmetric
    ref = freeze(spec, batch_sizes=(1,))
    quantize(src, tmp_path / "q.onnx", q, [s.inputs for s in ref.sets], tmp_path)
    pre = onnx.load(str(prepared_path(q, tmp_path)))
    attention = set(activation_matmuls(pre))
    assert len(attention) == 2  # Q·Kᵀ and softmax·V
    model = onnx.load(str(tmp_path / "q.onnx"))
    made = _producers(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    dequantized = [
        n
        for n in matmuls
        if all(made.get(i) and made[i].op_type == "DequantizeLinear" for i in n.input)
    ]
    assert {n.name for n in matmuls} - {n.name for n in dequantized} == attention
    assert len(dequantized) >= 3  # attention projections, feed-forward, head
    # S8S8: every activation QuantizeLinear is int8 with a zero point of 0 (symmetric).
    for n in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        zero = inits[n.input[2]]
        assert zero.dtype == np.int8 and not zero.any()


def test_static_int8_applies_to_transformers_with_their_options(tmp_path: Path) -> None:
    spec = _spec()
    graph = recipes.Graph.load(export(spec, tmp_path / "e.onnx").path)
    static = recipes.get("int8-static")
    assert static.applies(graph, HandoffOptions())
    ctx = recipes.Context(
        freeze(spec, batch_sizes=(1,)),
        tmp_path / "e.onnx",
        tmp_path,
        HandoffOptions(),
        HandoffOptions().budget.tolerance("top1_agreement"),
        HandoffOptions().budget.tolerance("top1_agreement"),
    )
    assert static.options(ctx) == Quantize.static_int8_transformer()  # type: ignore[attr-defined]


def test_int8_static_is_judged_on_every_engine_on_real_data(tmp_path: Path) -> None:
    spec = _spec(real=True)
    opts = HandoffOptions(
        candidates=(Quantize.static_int8_transformer(),),
        benchmark=False,
        parity_batch_sizes=(1,),
    )
    m = verify(run(spec, store=tmp_path, options=opts).path).manifest
    v = m.variant("int8-static")
    assert v.runs_on is None and v.quantization is not None
    assert v.quantization.judged_on == "real"
    assert v.quantization.options["weights_only"] is True
    assert v.quantization.extra["calibration_batches"] == 1  # the real data, one batch
    configs = {c.config: c for c in v.checks or ()}
    expected = {"onnxruntime-fp32"}
    if "openvino" in engines.versions():
        expected |= {"openvino-fp32"} | ({"openvino-bf16"} if cpu_has_bf16(cpu_info()) else set())
    assert set(configs) == expected
    budget = HandoffOptions().budget.tolerance("top1_agreement")
    for c in configs.values():  # int8 is judged by the budget, on the real data, everywhere
        assert c.tolerance == budget and c.judged_on == "real"
        assert c.passed or (c.reason and "(variant int8-static/" in c.reason)
    assert configs["onnxruntime-fp32"].passed  # kept on its default-engine parity
    # Its self-test tolerance covers every configuration that passed running it as stored.
    worst = max(c.max_rel or 0.0 for c in v.passed() if c.precision == "fp32")
    assert v.tolerance.rel >= worst


def test_sensitivity_calibrates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Excluding nodes does not change activation ranges: later calls load them."""
    from labkit.pipeline import optimize

    spec = _spec()
    src = export(spec, tmp_path / "e.onnx").path
    q = Quantize.static_int8_transformer()
    batches = [s.inputs for s in freeze(spec, batch_sizes=(1, 3)).sets]
    read: list[int] = []

    class Counting(optimize._Reader):
        def get_next(self):  # type: ignore[no-untyped-def]
            read.append(1)
            return super().get_next()

    monkeypatch.setattr(optimize, "_Reader", Counting)
    cache = tmp_path / "calibration.json"
    quantize(src, tmp_path / "a.onnx", q, batches, tmp_path, calibration_cache=cache)
    assert len(read) > len(batches)  # every batch, then the end
    saved, read[:] = cache.read_bytes(), []
    pre = onnx.load(str(prepared_path(q, tmp_path)))
    head = [n.name for n in pre.graph.node if n.op_type in ("MatMul", "Gemm")][-1]
    info = quantize(
        src, tmp_path / "b.onnx", q, batches, tmp_path, exclude=[head], calibration_cache=cache
    )
    assert read == [] and cache.read_bytes() == saved  # no second calibration
    a, b = (onnx.load(str(tmp_path / f"{x}.onnx")) for x in "ab")
    count = lambda m: sum(n.op_type == "DequantizeLinear" for n in m.graph.node)  # noqa: E731
    assert count(b) < count(a) and info["ops"]["QuantizeLinear"] >= 1
