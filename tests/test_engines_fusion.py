"""Transformer fusion of dynamo-exported graphs: counted by op type, judged by parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402

import labkit  # noqa: E402
from labkit.bundle import Tolerance  # noqa: E402
from labkit.pipeline import HandoffOptions, recipes  # noqa: E402
from labkit.pipeline.export import export  # noqa: E402
from labkit.pipeline.freeze import freeze  # noqa: E402
from labkit.pipeline.graph import nonstandard_ops, op_counts  # noqa: E402
from labkit.runtime import engines  # noqa: E402
from labkit.runtime.engines import Candidate  # noqa: E402


class TinyEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(
            32, 4, dim_feedforward=64, batch_first=True, dropout=0.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _run(path: Path, x: np.ndarray, engine: str = "onnxruntime") -> np.ndarray:
    session = engines.make_session(path.read_bytes(), Candidate("fp32", engine))
    return session.run(None, {"input_0": x})[0]


def test_encoder_layer_attention_is_fused_and_matches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    x = torch.randn(3, 8, 32)
    # A dynamic sequence axis, as for real text models: with a static one the exporter's
    # attention pattern differs and optimize_for_ort does not match it (measured).
    spec = labkit.register(
        model, x[:2], name="tiny-encoder", dynamic_axes={"input_0": {1: "sequence"}}
    )
    exported = tmp_path / "raw.onnx"
    export(spec, exported)
    assert "MultiHeadAttention" not in op_counts(onnx.load(str(exported)))

    ctx = _context(spec, exported, tmp_path)
    fused_built = recipes.get("fp32-fused").build(ctx, tmp_path / "fused.onnx")
    plain_built = recipes.get("fp32").build(ctx, tmp_path / "plain.onnx")
    assert fused_built is not None and fused_built.optimization is not None
    assert plain_built.optimization is not None
    fused, plain = fused_built.optimization["ops"], plain_built.optimization["ops"]
    assert fused.get("MultiHeadAttention") == 1 and "MultiHeadAttention" not in plain
    assert fused.get("SkipLayerNormalization", 0) >= 1
    assert fused.get("Softmax", 0) == 0 and plain.get("Softmax") == 1
    assert fused_built.optimization["fusion"]["fusions"].get("sdpa") == 1
    # The fused graph is ONNX Runtime's (contrib ops); the portable one has standard ops only.
    assert recipes.get("fp32-fused").runs_on == ("onnxruntime",)
    assert "com.microsoft.MultiHeadAttention" in nonstandard_ops(onnx.load(tmp_path / "fused.onnx"))
    assert nonstandard_ops(onnx.load(tmp_path / "plain.onnx")) == []
    assert plain_built.optimization["domains"] == {"ai.onnx": sum(plain.values())}

    xs = x.numpy()
    with torch.no_grad():
        ref = model(x).numpy()
    got = _run(tmp_path / "fused.onnx", xs)
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5
    if "openvino" in engines.versions():  # any engine runs the portable graph
        ov = _run(tmp_path / "plain.onnx", xs, "openvino")
        assert np.abs(ov - ref).max() / np.abs(ref).max() < 1e-4


def _context(spec: labkit.ModelSpec, exported: Path, tmp: Path) -> recipes.Context:
    ref = freeze(spec, batch_sizes=(1,))
    return recipes.Context(ref, exported, tmp, HandoffOptions(), Tolerance(1e-4), Tolerance(0.25))


def test_graph_without_attention_is_left_alone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
    ).eval()
    spec = labkit.register(mlp, torch.randn(2, 8), name="mlp")
    export(spec, tmp_path / "raw.onnx")
    ctx = _context(spec, tmp_path / "raw.onnx", tmp_path)
    fused = recipes.get("fp32-fused")
    graph = recipes.Graph.load(tmp_path / "raw.onnx")
    assert not fused.applies(graph, ctx.options)  # no Softmax: no attention to fuse
    assert fused.build(ctx, tmp_path / "out.onnx") is None  # and none matched anyway
    assert not (tmp_path / "out.onnx").exists()
