"""The pipeline's stages on tiny models and tiny ONNX graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import labkit
from labkit.pipeline import BenchOptions, HandoffOptions, Quantize, recipes, run
from labkit.pipeline.export import export
from labkit.pipeline.freeze import freeze
from labkit.pipeline.graph import fingerprint, op_counts, signature
from labkit.pipeline.optimize import quantize
from labkit.pipeline.parity import check_parity, fp32_tolerance, session_predictor
from labkit.pipeline.rewrite import gemm_to_matmul
from labkit.runtime.session import make_session


def _gemm_graph(trans_b: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5) if trans_b else (5, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=trans_b)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_rewrite_keeps_the_numbers(trans_b: int) -> None:
    model = _gemm_graph(trans_b)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    before = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    assert gemm_to_matmul(model) == 1
    onnx.checker.check_model(model)
    assert op_counts(model) == {"Add": 1, "MatMul": 1}
    after = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def _mlp(seed: int, hidden: int = 16) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4)
    )


def test_fingerprints_separate_architecture_from_weights(tmp_path: Path) -> None:
    def fp(model: torch.nn.Module, name: str) -> dict[str, str]:
        spec = labkit.register(model, torch.randn(2, 8), name="fp")
        info = export(spec, tmp_path / f"{name}.onnx")
        return fingerprint(onnx.load(str(info.path)), {"task": None})

    a, a_again = fp(_mlp(0), "a"), fp(_mlp(0), "a2")
    b, c = fp(_mlp(1), "b"), fp(_mlp(0, hidden=32), "c")
    assert a == a_again
    assert a["architecture"] == b["architecture"] and a["weights"] != b["weights"]
    assert a["architecture"] != c["architecture"]
    assert a["signature"] == c["signature"]


def test_export_signature_has_named_dynamic_dims(tmp_path: Path) -> None:
    class Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(50, 8)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.emb(tokens).mean(1)

    spec = labkit.register(
        Seq(), torch.randint(0, 50, (2, 7)), name="seq", dynamic_axes={"input_0": {1: "sequence"}}
    )
    info = export(spec, tmp_path / "seq.onnx")
    sig = signature(onnx.load(str(info.path)))
    assert sig["inputs"] == [{"name": "input_0", "dtype": "int64", "shape": ["batch", "sequence"]}]
    assert sig["outputs"][0]["shape"] == ["batch", 8]
    assert info.exporter in ("dynamo", "torchscript") and info.opset >= 17


def test_parity_collects_every_failure(tmp_path: Path) -> None:
    spec = labkit.register(_mlp(0), torch.randn(2, 8), name="p", task="classification")
    ref = freeze(spec, batch_sizes=(1, 5))
    info = export(spec, tmp_path / "p.onnx")
    good = session_predictor(info.path.read_bytes(), ["output"])
    report = check_parity(ref, good, fp32_tolerance(ref), variant="fp32")
    assert report.passed and report.outputs["output"]["max_rel"] < 1e-5
    assert [s["label"] for s in report.sets] == ["example", "generated b=1", "generated b=5"]

    def off(batch):
        return {"output": good(batch)["output"] + 0.5}

    bad = check_parity(ref, off, fp32_tolerance(ref), variant="fp32")
    assert not bad.passed
    assert bad.failures[0].startswith("output: max |Δ| = 0.5")
    assert "variant fp32" in bad.failures[0]


def test_candidates_follow_the_ops(tmp_path: Path) -> None:
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
    )
    spec_c = labkit.register(conv, torch.rand(2, 3, 8, 8), name="c")
    spec_m = labkit.register(_mlp(0), torch.randn(2, 8), name="m")
    c = recipes.Graph.load(export(spec_c, tmp_path / "c.onnx").path)
    m = recipes.Graph.load(export(spec_m, tmp_path / "m.onnx").path)
    opts = HandoffOptions()

    def applying(g: recipes.Graph, options: HandoffOptions = opts) -> list[str]:
        return [r.name for r in recipes.selected(options) if r.applies(g, options)]

    # The portable fp32 graph always; fusions need attention; int8 follows the ops.
    assert applying(c) == ["fp32", "int8-static"]
    assert applying(m) == ["fp32", "int8-dynamic"]
    assert applying(m, HandoffOptions(quantize=False)) == ["fp32"]
    only = HandoffOptions(candidates=(Quantize.static_int8(),))
    assert applying(m, only) == ["fp32", "int8-static"]


def test_quantized_graphs_have_the_expected_ops(tmp_path: Path) -> None:
    spec = labkit.register(_mlp(0, hidden=64), torch.randn(2, 8), name="q")
    ref = freeze(spec)
    src = export(spec, tmp_path / "q.onnx").path
    info = quantize(
        src, tmp_path / "dyn.onnx", Quantize.dynamic_int8(), [s.inputs for s in ref.sets], tmp_path
    )
    assert info["ops"].get("MatMulInteger", 0) == 2 and "Gemm" not in info["ops"]
    assert info["gemm_rewritten"] == 2
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    spec_c = labkit.register(conv, torch.rand(2, 3, 8, 8), name="qc")
    ref_c = freeze(spec_c)
    src_c = export(spec_c, tmp_path / "qc.onnx").path
    info_c = quantize(
        src_c,
        tmp_path / "st.onnx",
        Quantize.static_int8(),
        [s.inputs for s in ref_c.sets],
        tmp_path,
    )
    assert info_c["ops"]["Conv"] == 1
    assert info_c["ops"]["QuantizeLinear"] >= 2 and info_c["ops"]["DequantizeLinear"] >= 3
    assert info_c["calibration_batches"] == len(ref_c.sets)


def test_options_are_recorded_in_the_manifest(tmp_path: Path) -> None:
    opts = HandoffOptions(
        candidates=(Quantize.dynamic_int8(),),
        benchmark=True,
        bench=BenchOptions.quick(),
        parity_batch_sizes=(1, 2),
    )
    spec = labkit.register(_mlp(0), torch.randn(2, 8), name="opts", task="classification")
    events = []
    result = run(spec, store=tmp_path, options=opts, progress=events.append)
    stages = [(e.stage, e.status) for e in events if e.status in ("start", "done")]
    assert stages == [(s, st) for s in labkit.pipeline.STAGES for st in ("start", "done")]
    rounds = [
        (e.message, e.fraction) for e in events if e.stage == "benchmark" and e.status == "info"
    ]
    # three rounds, and three more when eager's measurement was inconsistent the first time
    assert rounds[:3] == [(f"round {i}/3", pytest.approx(i / 3)) for i in (1, 2, 3)]
    assert result.manifest.baseline is not None
    assert len(rounds) == 3 * result.manifest.baseline.attempts
    # every stage but the bundle (still running when the manifest is made) is timed, and
    # the report shows each
    seconds = result.manifest.provenance.stage_seconds
    assert seconds is not None and set(seconds) == set(labkit.pipeline.STAGES[:-1])
    assert all(s >= 0 for s in seconds.values()) and seconds["export"] > 0
    report = (result.path / "report.md").read_text()
    assert "## Handoff time" in report
    rows = [line for line in report.split("## Handoff time")[1].splitlines() if line[:2] == "| "]
    assert rows[1:-1] == [f"| {s} | {seconds[s]:.1f} |" for s in labkit.pipeline.STAGES[:-1]]
    manifest = json.loads((result.path / "manifest.json").read_text())
    recorded = manifest["provenance"]["options"]
    assert recorded == json.loads(json.dumps(opts.to_dict()))
    assert (
        Quantize(
            **{
                **recorded["candidates"][0],
                "op_types": tuple(recorded["candidates"][0]["op_types"]),
            }
        )
        == Quantize.dynamic_int8()
    )
    variant = next(v for v in manifest["variants"] if v["name"] == "int8-dynamic")
    assert variant["quantization"]["options"] == Quantize.dynamic_int8().to_dict()
    bench = json.loads((result.path / "reports" / "benchmark.json").read_text())
    assert set(bench["variants"]) == {"fp32", "int8-dynamic"}
    assert bench["environment"]["threads"] >= 1 and bench["environment"]["cpu"]["model"]
    assert "onnxruntime" in bench["environment"]["libraries"]
    for stats in [bench["pytorch-eager"], *bench["variants"].values()]:
        assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]


def test_calibration_file_is_used_for_static_quantization(tmp_path: Path) -> None:
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    )
    spec = labkit.register(conv, torch.rand(2, 3, 8, 8), name="calib", task="classification")
    calib = tmp_path / "calib.npz"
    np.savez(calib, input_0=np.random.default_rng(0).random((40, 3, 8, 8), dtype=np.float32))
    result = run(
        spec,
        store=tmp_path / "s",
        options=HandoffOptions(
            calibration=calib,
            benchmark=False,
            budget=labkit.pipeline.Budget(min_top1_agreement=0.0, max_rel=1.0),
        ),
    )
    static = next(
        v
        for v in json.loads((result.path / "manifest.json").read_text())["variants"]
        if v["name"] == "int8-static"
    )
    assert static["quantization"]["calibration_batches"] == 3  # 40 rows in batches of 16


def test_variant_outside_budget_is_left_out_with_reason(tmp_path: Path) -> None:
    from labkit.pipeline import Budget

    spec = labkit.register(
        _mlp(0),
        torch.randn(2, 8),
        name="strict",
        task="classification",
        parity_inputs=[torch.randn(32, 8)],
    )
    result = run(
        spec, store=tmp_path, options=HandoffOptions(benchmark=False, budget=Budget(max_rel=1e-9))
    )
    assert [v.name for v in result.variants] == ["fp32"]
    assert result.rejected[0]["name"] == "int8-dynamic"
    assert "outside its accuracy budget" in result.rejected[0]["reason"]
    report = (result.path / "report.md").read_text()
    assert "Left out" in report and "int8-dynamic" in report


def test_declared_dynamic_dims_are_exercised(tmp_path: Path) -> None:
    class Pool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).mean(1)

    spec = labkit.register(
        Pool(), torch.randn(2, 10, 6), name="dyn", dynamic_axes={"input_0": {1: "sequence"}}
    )
    ref = freeze(spec, batch_sizes=(1,))
    assert [s.label for s in ref.sets] == ["example", "generated b=1", "generated b=2 sequence=5"]
    assert ref.sets[-1].inputs["input_0"].shape == (2, 5, 6)
    result = run(spec, store=tmp_path, options=HandoffOptions(quantize=False, benchmark=False))
    parity = json.loads((result.path / "reports" / "parity.json").read_text())
    labels = [s["label"] for s in parity["variants"]["fp32"]["sets"]]
    assert "generated b=2 sequence=5" in labels
    assert (result.variants[0].parity or {})["passed"]


def test_calibration_method_is_honoured(tmp_path: Path) -> None:
    from dataclasses import replace

    from labkit.errors import LabkitError

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    spec = labkit.register(conv, torch.rand(2, 3, 8, 8), name="cal")
    src = export(spec, tmp_path / "cal.onnx").path
    # 700 rows of [0, 1) and one outlier: min-max must cover it, a 99.999th percentile of
    # 134,400 values must not
    rng = np.random.default_rng(0)
    batches = [{"input_0": rng.random((100, 3, 8, 8), dtype=np.float32)} for _ in range(7)]
    batches[3]["input_0"][5, 1, 2, 2] = 50.0

    def input_scale(method: str) -> float:
        q = replace(Quantize.static_int8(), calibration_method=method)
        out = tmp_path / f"{method}.onnx"
        quantize(src, out, q, batches, tmp_path)
        model = onnx.load(str(out))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        (node,) = [
            n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input_0"
        ]
        return float(inits[node.input[1]])

    data = np.concatenate([b["input_0"].ravel() for b in batches])
    lo, hi = min(0.0, float(data.min())), max(0.0, float(data.max()))
    minmax = input_scale("minmax")
    assert minmax == pytest.approx((hi - lo) / 255, rel=1e-5)  # uint8 over the full range
    assert minmax == pytest.approx(50 / 255, rel=1e-5)
    assert input_scale("percentile") < minmax / 10  # the outlier was clipped
    with pytest.raises(LabkitError, match="calibration_method 'median' is not one of"):
        replace(Quantize.static_int8(), calibration_method="median")
