"""What a handoff decided is shown, with its numbers, wherever a result or a bundle is read:
``str(result)`` / ``handoff export``, the notebook HTML, ``handoff inspect``; ``handoff diff``
of two classifiers gives the top-1 agreement on the golden inputs."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from bundle_factory import small_manifest
from onnx import TensorProto, helper

from labkit.bundle import (
    DefaultRule,
    EngineCheck,
    ExcludedLayer,
    ExperimentTrial,
    Quantization,
    Tolerance,
    Variant,
    write_bundle,
)
from labkit.notebook.render import render_result_html
from labkit.result_text import decision_lines, render_text

ROOT = Path(__file__).resolve().parent.parent


def _decided(name: str) -> tuple[object, dict[str, bytes]]:
    """A bundle whose int8 variant kept a layer in fp32, judged on generated inputs, one
    engine configuration rejected, and a default rule with its numbers."""
    m, files = small_manifest(name, speedup=1.5)
    files["models/int8-dynamic.onnx"] = files["models/fp32.onnx"]
    q = Quantization(
        options={"mode": "dynamic"},
        judged_on="generated",
        excluded=(
            ExcludedLayer(
                "/encoder/layer.0/attention",
                ("MatMul_1",),
                "quantized alone it gave top1 0.82; kept in fp32",
                "top1_agreement",
                0.82,
                0.031,
            ),
        ),
    )
    check = EngineCheck(
        "openvino",
        "bf16",
        False,
        Tolerance(1e-2),
        "generated",
        0.2,
        reason="max rel err 2.0e-01 > 1.0e-02",
    )
    int8 = Variant(
        "int8-dynamic",
        "models/int8-dynamic.onnx",
        hashlib.sha256(files["models/int8-dynamic.onnx"]).hexdigest(),
        "int8",
        Tolerance(1e-2),
        quantization=q,
        parity={"passed": True, "max_rel": 4e-3},
        benchmark={"p50_ms": 0.05, "speedup": {"p50": 2.6, "throughput": 2.2}},
        checks=(check,),
    )
    rule = DefaultRule(
        rule="fastest by geometric mean of speed-ups, beyond the noise margin",
        chosen="int8-dynamic",
        incumbent="fp32",
        previous=None,
        previous_version=None,
        reliable=True,
        reason="int8-dynamic scores 2.39x against fp32's 1.5x, beyond the 5% margin",
        scores={"fp32": 1.5, "int8-dynamic": 2.39},
        noise=0.02,
        margin=0.05,
    )
    trial = ExperimentTrial(
        "width", "20261204T120000Z-abcd", 3, {"hidden": 64}, {"val_acc": 0.97}, "val_acc", "max"
    )
    m = replace(
        m,
        variants=(*m.variants, int8),
        default_variant="int8-dynamic",
        default_rule=rule,
        provenance=replace(m.provenance, experiment=trial),
    )
    return m, files


def test_the_decisions_read_the_same_from_a_result_and_from_a_manifest(tmp_path: Path) -> None:
    m, files = _decided("decided")
    path = write_bundle(tmp_path, "decided", "1.0.0", files, m)
    doc = json.loads((path / "manifest.json").read_text())
    lines = decision_lines(doc)
    assert lines[0].startswith("default variant: int8-dynamic — int8-dynamic scores 2.39x")
    assert "scores fp32 1.5×, int8-dynamic 2.39×" in lines[0] and "margin 0.05" in lines[0]
    assert "int8-dynamic: judged on the example inputs and inputs generated from them" in lines[1]
    assert lines[2] == (
        "int8-dynamic: kept /encoder/layer.0/attention in fp32 (quantized alone: "
        "top1_agreement 0.82, max rel err 0.031)"
    )
    assert lines[3] == "int8-dynamic passed on: none"  # only a rejected check recorded
    assert lines[4].startswith("int8-dynamic on openvino bf16: rejected — max rel err 2.0e-01")
    result = {  # HandoffResult.to_dict(): the manifest's variants, the trial at top level
        **doc,
        "change": "first",
        "change_reason": "first handoff of this model",
        "experiment": doc["provenance"]["experiment"],
    }
    text = render_text(result)
    assert all(f"  {line}" in text for line in lines)
    html = render_result_html(result)
    assert "what the handoff decided" in html and "kept /encoder/layer.0/attention in fp32" in html
    assert "from experiment width, run 20261204T120000Z-abcd, trial #3" in html

    out = subprocess.run(
        [sys.executable, "-m", "handoff", "inspect", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert all(f"  {line}" in out for line in lines), out
    assert "from experiment width, run 20261204T120000Z-abcd, trial #3 {'hidden': 64}" in out


def _classifier(weights: np.ndarray) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], weights.flatten().tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "c", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def test_diff_of_two_classifiers_gives_top1_agreement(tmp_path: Path) -> None:
    inputs = np.array([[1, 0], [0, 1], [2, 1], [1, 2], [3, 0], [0, 3]], dtype=np.float32)
    same, swapped = np.eye(2, dtype=np.float32), np.array([[0, 1], [1, 0]], dtype=np.float32)
    swapped[0, 0] = 0.9  # rows with a large x0 still agree
    paths = []
    for version, w in (("1.0.0", same), ("1.1.0", swapped)):
        m, files = small_manifest("cls")
        model = _classifier(w)
        expected = inputs @ w
        buf_in, buf_out = io.BytesIO(), io.BytesIO()
        np.savez(buf_in, x=inputs)
        np.savez(buf_out, y=expected)
        files.update(
            {"models/fp32.onnx": model, "golden/inputs.npz": buf_in.getvalue(),
             "golden/expected.npz": buf_out.getvalue()}
        )  # fmt: skip
        v = replace(m.variants[0], sha256=hashlib.sha256(model).hexdigest())
        m = replace(m, task="classification", variants=(v,), golden=replace(m.golden, rows=6))
        onnx.checker.check_model(onnx.load_from_string(model))
        paths.append(write_bundle(tmp_path, "cls", version, files, m))
    agree = int(np.sum((inputs @ same).argmax(1) == (inputs @ swapped).argmax(1)))
    assert 0 < agree < 6  # the test can tell a wrong count
    proc = subprocess.run(
        [sys.executable, "-m", "handoff", "diff", *map(str, paths), "--json"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    y = json.loads(proc.stdout)["outputs"]["outputs"]["y"]
    assert (y["agreeing_rows"], y["rows"]) == (agree, 6)
    assert y["top1_agreement"] == agree / 6
    text = subprocess.run(
        [sys.executable, "-m", "handoff", "diff", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    assert f"top-1 agreement {agree / 6:.1%} ({agree} of 6 rows predict the same class)" in text
