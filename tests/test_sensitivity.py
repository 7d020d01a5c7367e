"""Quantization sensitivity: a model whose plain int8 candidate misses its budget (one layer
with an outlier weight) is rescued by keeping that layer in fp32, and the bundle says so."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch

import labkit
from labkit.bundle import verify
from labkit.pipeline.export import export
from labkit.pipeline.freeze import freeze
from labkit.pipeline.optimize import quantize
from labkit.pipeline.options import HandoffOptions, Quantize
from labkit.pipeline.parity import check_parity, fp32_tolerance, session_predictor
from labkit.pipeline.scopes import lookup, module_of, module_paths
from labkit.pipeline.sensitivity import blocks


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(32, 64)
        self.fc2 = torch.nn.Linear(64, 64)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def outlier_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        # One weight 300x the others: a per-tensor int8 scale of 60/127 rounds every other
        # weight of the head to zero.
        net.head.weight[0, 0] = 60.0
    return net.eval()


def test_plain_int8_misses_the_budget_and_sensitivity_rescues_it(tmp_path: Path) -> None:
    spec = labkit.register(
        outlier_net(), (torch.randn(1, 32),), name="outlier", task="classification"
    )
    # The premise: quantizing everything is outside the default budget.
    ref = freeze(spec, batch_sizes=(1, 3, 16), seed=0)
    info = export(spec, tmp_path / "e.onnx", opset=18)
    q = Quantize.dynamic_int8()
    quantize(info.path, tmp_path / "plain.onnx", q, [], tmp_path)
    budget = HandoffOptions().budget.tolerance(fp32_tolerance(ref).metric or "top1_agreement")
    plain = check_parity(
        ref,
        session_predictor((tmp_path / "plain.onnx").read_bytes(), list(spec.output_names)),
        budget,
        variant="q",
    )
    assert not plain.passed and plain.summary()["metric_value"] < 0.9

    result = labkit.handoff(spec, store=tmp_path / "store", options=HandoffOptions(benchmark=False))
    assert [v.name for v in result.variants] == ["fp32", "int8-dynamic"]
    assert result.rejected == []
    bundle = verify(result.path)  # the sha256 is of the rescued file, not the plain one
    manifest = json.loads((Path(result.path) / "manifest.json").read_text())
    qinfo = next(v for v in manifest["variants"] if v["name"] == "int8-dynamic")["quantization"]
    assert [e["block"] for e in qinfo["excluded"]] == ["head"]
    assert "top1_agreement" in qinfo["excluded"][0]["reason"]
    assert "kept 1 of 3 blocks in fp32: head" in qinfo["rescued"]
    by_block = {r["block"]: r for r in qinfo["sensitivity"]}
    assert set(by_block) == {"fc1", "fc2", "head"}
    assert not by_block["head"]["passed"] and by_block["fc1"]["passed"]
    assert by_block["head"]["metric_value"] < by_block["fc2"]["metric_value"]
    assert qinfo["ops"]["MatMulInteger"] == 2  # fc1, fc2 still int8; head fp32
    variant = next(v for v in result.variants if v.name == "int8-dynamic")
    assert variant.parity is not None
    assert variant.parity["passed"] and variant.parity["metric_value"] >= 0.99
    assert variant.quantization is not None
    assert variant.quantization.to_dict() == qinfo  # the result and the manifest say the same
    head = variant.quantization.excluded[0]  # typed, with what it measured quantized alone
    assert head.block == "head" and head.metric == "top1_agreement"
    assert head.metric_value == by_block["head"]["metric_value"] < 0.99
    assert variant.quantization.judged_on == qinfo["judged_on"] == "generated"
    report = (Path(result.path) / "report.md").read_text()
    assert "kept in fp32" in report and "`head`" in report
    assert bundle is not None


def test_blocks_group_by_module_and_coarsen() -> None:
    from onnx import helper

    nodes = [
        helper.make_node("MatMul", ["a", "b"], [f"o{i}"], name=f"/enc/layer.{i}/q/MatMul")
        for i in range(30)
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    model = helper.make_model(graph)
    paths = module_paths(model)
    assert paths["/enc/layer.3/q/MatMul"] == "enc.layer.3.q"
    grouped = blocks(model, ["MatMul"], paths)
    assert list(grouped) == ["enc.layer"]  # 30 layers > MAX_BLOCKS: coarsened to the list
    assert lookup({"node_linear": "fc1"}, "node_linear__matmul") == "fc1"
    node = helper.make_node("Gemm", ["a"], ["b"], name="node_linear")
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'fc1', 'linear']")
    assert module_of(node) == "fc1"


def test_unknown_nodes_are_their_own_block() -> None:
    from onnx import helper

    model = helper.make_model(
        helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"], name="mm0")], "g", [], [])
    )
    assert blocks(model, ["MatMul"], {}) == {"mm0": ["mm0"]}
    assert isinstance(model, onnx.ModelProto)
