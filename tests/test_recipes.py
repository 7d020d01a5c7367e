"""Variant recipes: a registered kind appears in a real bundle, every (variant, engine,
precision) is judged through the engine seam, and only configurations that passed are
timed or shown as results."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import labkit
from labkit.bundle import verify
from labkit.errors import EngineError, InputError, LabkitError
from labkit.pipeline import BenchOptions, HandoffOptions, recipes, run
from labkit.pipeline.graph import op_domains
from labkit.runtime import engines, load
from labkit.runtime.engines import EXACT, Candidate, Session
from labkit.runtime.engines.openvino import cpu_has_bf16
from labkit.runtime.machine import cpu_info

FAST = HandoffOptions(quantize=False, benchmark=False, parity_batch_sizes=(1, 3))


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


class Copy(recipes.Recipe):
    """A test kind: the exported graph again, under its own name."""

    name = "fp32-copy"

    def applies(self, graph: recipes.Graph, options: HandoffOptions) -> bool:
        return graph.has("Relu")

    def build(self, ctx: recipes.Context, dst: Path) -> recipes.Built:
        shutil.copyfile(ctx.exported, dst)
        return recipes.Built(dst, optimization={"graph": "copied by a test recipe"})


class Doubled(recipes.Recipe):
    """A test kind whose graph computes twice the right answer: parity must reject it."""

    name = "fp32-doubled"

    def applies(self, graph: recipes.Graph, options: HandoffOptions) -> bool:
        return True

    def build(self, ctx: recipes.Context, dst: Path) -> recipes.Built:
        model = onnx.load(str(ctx.exported))
        out = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [f"{o}_pre" if o == out else o for o in node.output]
        two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
        model.graph.initializer.append(two)
        model.graph.node.append(helper.make_node("Mul", [f"{out}_pre", "two"], [out]))
        onnx.save(model, str(dst))
        return recipes.Built(dst)


@pytest.fixture()
def registered() -> Iterator[None]:
    recipes.register(Copy())
    recipes.register(Doubled())
    try:
        yield
    finally:
        recipes.unregister("fp32-copy")
        recipes.unregister("fp32-doubled")


def test_a_registered_recipe_is_built_judged_and_kept_or_rejected(
    registered: None, tmp_path: Path
) -> None:
    spec = labkit.register(_mlp(), torch.randn(4, 8), name="mlp", task="classification")
    result = run(spec, store=tmp_path, options=FAST)
    m = verify(result.path).manifest
    assert [v.name for v in m.variants] == ["fp32", "fp32-copy"]
    copy = m.variant("fp32-copy")
    assert copy.optimization == {"graph": "copied by a test recipe"}
    assert copy.sha256 == m.variant("fp32").sha256  # the same graph, judged the same way
    assert copy.passed()[0].config == "onnxruntime-fp32"
    assert (result.path / "models" / "fp32-copy.onnx").is_file()
    (doubled,) = result.rejected
    assert doubled["name"] == "fp32-doubled"
    assert doubled["reason"].startswith("failed parity: output: max |Δ| = ")
    report = (result.path / "report.md").read_text()
    assert "- `fp32-doubled`: failed parity" in report
    # Only passing configurations make it into the results and the "passed" table.
    assert "`fp32-doubled/" not in report.split("## Left out")[0]
    parity = json.loads((result.path / "reports" / "parity.json").read_text())
    assert parity["configurations"]["fp32-doubled/onnxruntime-fp32"]["passed"] is False


def test_recipe_registration_rules() -> None:
    class Elsewhere(Copy):
        name = "elsewhere"
        runs_on = ("openvino",)

    with pytest.raises(LabkitError, match="must include 'onnxruntime'"):
        recipes.register(Elsewhere())
    bad = Copy()
    bad.name = "Bad Name"
    with pytest.raises(LabkitError, match="recipe name 'Bad Name' must match"):
        recipes.register(bad)
    assert [r.name for r in recipes.recipes()][:2] == ["fp32", "fp32-fused"]
    assert recipes.get("fp32").required and recipes.get("fp32").runs_on is None
    assert recipes.get("int8-dynamic").runs_on == ("onnxruntime",)


class Noisy:
    """An engine that computes wrong answers: every configuration of it must be rejected."""

    name = "noisy"

    def available(self) -> bool:
        return True

    def version(self) -> str | None:
        return "1.0"

    def precisions(self, variant: Any, cpu: Mapping[str, Any]) -> tuple[str, ...]:
        return (EXACT,)

    def session(
        self, model_bytes: bytes, *, precision: str = EXACT, threads: int | None = None
    ) -> Session:
        inner = engines.get("onnxruntime").session(model_bytes, threads=threads)

        class Off:
            def run(
                self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray]
            ) -> list[np.ndarray]:
                return [2 * o + 1 for o in inner.run(names, feed)]

        return Off()


@pytest.fixture()
def noisy() -> Iterator[None]:
    engines.register(Noisy())  # type: ignore[arg-type]
    try:
        yield
    finally:
        engines.unregister("noisy")


def _bert() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=200,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=64,
            num_labels=3,
        )
    ).eval()
    ids = torch.randint(0, 200, (2, 16))
    return bert, {"input_ids": ids, "attention_mask": torch.ones(2, 16, dtype=torch.int64)}


@pytest.mark.slow
def test_hf_bert_runs_on_every_engine_that_computes_it_right(noisy: None, tmp_path: Path) -> None:
    """The done-when of issue 14: a Hugging Face BERT's portable graph passes the fp32
    tolerance on OpenVINO f32 and the budget at bf16; a wrong engine is rejected with its
    reason, never timed, and the report lists no configuration that did not pass."""
    pytest.importorskip("openvino")
    bert, example = _bert()
    spec = labkit.register(
        bert,
        example,
        name="bert",
        task="classification",
        dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}},
    )
    quick = BenchOptions(rounds=1, latency_iters=2, throughput_batch=4, throughput_iters=1)
    result = run(
        spec,
        store=tmp_path,
        options=HandoffOptions(quantize=False, bench=quick, parity_batch_sizes=(1, 3)),
    )
    m = verify(result.path).manifest
    fp32 = m.variant("fp32")
    assert fp32.runs_on is None  # portable: standard-domain ops only
    checks = {c.config: c for c in fp32.checks or ()}
    ov = checks["openvino-fp32"]
    assert ov.passed and ov.tolerance == fp32.tolerance  # the fp32 TOLERANCE, not a budget
    assert fp32.tolerance.rel == 1e-4 and fp32.tolerance.min_metric == 1.0
    assert ov.max_rel is not None and ov.max_rel < 1e-4 and ov.judged_on == "all"
    budget = HandoffOptions().budget.tolerance("top1_agreement")
    if cpu_has_bf16(cpu_info()):
        bf16 = checks["openvino-bf16"]
        assert bf16.passed and bf16.tolerance == budget
        assert bf16.max_rel is not None and 1e-4 < bf16.max_rel < budget.rel
    wrong = checks["noisy-fp32"]
    assert not wrong.passed and wrong.reason and "logits: max |Δ| = " in wrong.reason

    # ONNX Runtime's fusions are a variant of their own, for ONNX Runtime only.
    fused = m.variant("fp32-fused")
    assert fused.runs_on == ("onnxruntime",)
    assert [c.config for c in fused.checks or ()] == ["onnxruntime-fp32"]

    passed = {f"{v.name}/{c.config}" for v in m.variants for c in v.passed()}
    rejected = {f"{v.name}/{c.config}": c.reason for v in m.variants for c in v.rejected()}
    assert set(rejected) == {"fp32/noisy-fp32"}  # fp32-fused never went to noisy (runs_on)
    bench = json.loads((result.path / "reports" / "benchmark.json").read_text())
    assert set(bench["engines"]) <= passed and "fp32/openvino-fp32" in bench["engines"]
    report = (result.path / "report.md").read_text()
    shown, _, rest = report.partition("### Rejected configurations")
    for label in passed:
        assert f"| `{label}` |" in shown
    assert "noisy" not in shown  # no table, no speed figure for what did not pass
    assert f"- `fp32/noisy-fp32`: {rejected['fp32/noisy-fp32']}" in rest
    text = result.summary()
    assert "passed on: onnxruntime-fp32, openvino-fp32" in text
    assert "rejected noisy-fp32: logits: max |Δ|" in text

    # The portable graph: every node in a standard domain (counted), the fused one not.
    portable = onnx.load(str(result.path / "models" / "fp32.onnx"))
    domains = op_domains(portable)
    assert set(domains) == {"ai.onnx"} and domains["ai.onnx"] == len(portable.graph.node)
    assert "com.microsoft" in op_domains(onnx.load(str(result.path / "models/fp32-fused.onnx")))

    # And the bundle runs on OpenVINO at another sequence length, as PyTorch does.
    ids = torch.randint(0, 200, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.int64)
    mask[0, 6:] = 0
    model = load(result.path, engine="openvino", profile=None)
    assert model.variant == "fp32"  # the default may be ONNX Runtime's fused graph
    got = model.predict(input_ids=ids.numpy(), attention_mask=mask.numpy())["logits"]
    with torch.no_grad():
        want = bert(input_ids=ids, attention_mask=mask).logits.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _two_inputs() -> bytes:
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [0.5] * 6)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _unknown_op() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_engines_speak_labkit_errors(engine: str) -> None:
    """Each engine turns its own exception types into InputError or EngineError, so nothing
    above the seam (pipeline, serve) needs to import an engine to classify one."""
    if engine not in engines.versions():
        pytest.skip(f"{engine} is not installed")
    with pytest.raises(EngineError, match="could not (load|compile) the graph"):
        engines.make_session(_unknown_op(), Candidate("x", engine))
    session = engines.make_session(_two_inputs(), Candidate("x", engine))
    ok = session.run(None, {"x": np.ones((2, 3), np.float32)})[0]
    np.testing.assert_allclose(ok, np.full((2, 2), 1.5, np.float32))
    with pytest.raises(LabkitError) as err:
        session.run(None, {"x": np.ones((2, 5), np.float32)})  # the inner dim is wrong
    assert isinstance(err.value, (InputError, EngineError))
    if engine == "onnxruntime":  # ONNX Runtime names the shapes: the inputs' fault
        assert isinstance(err.value, InputError) and err.value.engine == "ONNX Runtime"
        assert err.value.detail and "[ONNXRuntimeError]" not in err.value.detail
