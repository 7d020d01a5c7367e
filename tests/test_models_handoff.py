"""Models as researchers write them, handed off end to end with the dynamo exporter.

Hugging Face models come from tiny configs with random weights (no download ever); each
bundle is verified, loaded and run at a size different from the example, against PyTorch.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

import labkit
from labkit.errors import InputError
from labkit.pipeline import HandoffOptions
from labkit.runtime import load, verify

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

FAST = HandoffOptions(quantize=False, benchmark=False, parity_batch_sizes=(1, 3))


def _handoff(spec, tmp_path, events=None):
    result = labkit.handoff(
        spec,
        store=tmp_path / "store",
        options=FAST,
        progress=events.append if events is not None else None,
    )
    verify(result.path)
    model = load(result.path)
    assert model.manifest.provenance.exporter.name == "dynamo"
    assert model.manifest.provenance.exporter.fallback_reason is None
    return model


def _signature(model):
    return {t.name: list(t.shape) for t in [*model.inputs, *model.outputs]}


def _close(got, want):
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_bert_classifier_with_dict_inputs_and_model_output(tmp_path) -> None:
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=3,
        )
    ).eval()
    ids = torch.randint(0, 100, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.int64)
    spec = labkit.register(
        bert,
        {"input_ids": ids, "attention_mask": mask},
        name="bert-cls",
        dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}},
    )
    assert spec.input_names == ("input_ids", "attention_mask")
    assert spec.output_names == ("logits",)
    events: list = []
    model = _handoff(spec, tmp_path, events)
    assert _signature(model) == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "logits": ["batch", 3],
    }
    notes = [e.message for e in events if e.stage == "freeze" and e.status == "info"]
    assert (
        "forward returned SequenceClassifierOutput: labkit hands off its tensors as "
        "outputs logits; pass outputs=[...] to choose"
    ) in notes
    ids9 = torch.randint(0, 100, (3, 9))
    mask9 = torch.ones(3, 9, dtype=torch.int64)
    mask9[0, 6:] = 0
    got = model.predict(input_ids=ids9.numpy(), attention_mask=mask9.numpy())
    with torch.no_grad():
        _close(got["logits"], bert(input_ids=ids9, attention_mask=mask9).logits)


def test_model_output_tuples_are_named_by_position_and_chosen_by_prefix() -> None:
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    ).eval()
    ids = {"input_ids": torch.randint(0, 50, (2, 7))}
    spec = labkit.register(bert, ids, kwargs={"output_hidden_states": True}, name="bert-h")
    assert spec.output_names == (
        "last_hidden_state",
        "pooler_output",
        "hidden_states.0",
        "hidden_states.1",
        "hidden_states.2",
    )
    some = labkit.register(
        bert,
        ids,
        kwargs={"output_hidden_states": True},
        name="bert-h2",
        outputs=["hidden_states", "pooler_output"],
    )
    assert some.output_names == (
        "hidden_states.0",
        "hidden_states.1",
        "hidden_states.2",
        "pooler_output",
    )
    with torch.no_grad():
        want = bert(**ids, output_hidden_states=True)
        got = some.outputs_of(bert, [ids["input_ids"]])
    torch.testing.assert_close(got[1], want.hidden_states[1])
    torch.testing.assert_close(got[3], want.pooler_output)


def test_gpt2_causal_lm_with_dynamic_sequence_and_its_position_limit(tmp_path) -> None:
    torch.manual_seed(0)
    gpt = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=100,
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()
    spec = labkit.register(
        gpt,
        {"input_ids": torch.randint(0, 100, (2, 12))},
        name="gpt",
        dynamic_axes={"input_ids": {1: "sequence"}},
    )
    assert any(
        "caches are state, not outputs, so labkit calls it with use_cache=False" in n
        for n in spec.notes
    )
    assert (
        "output 'logits' axis 1 follows 'input_ids' axis 1: declared dynamic as 'sequence'"
    ) in spec.notes
    model = _handoff(spec, tmp_path)
    assert _signature(model) == {
        "input_ids": ["batch", "sequence"],
        "logits": ["batch", "sequence", 100],
    }
    # onnxscript's fusions left GPT-2's graph with a Gemm fed a rank-3 tensor, which ONNX
    # Runtime refused to load: then the fused variant is left out, saying why, and the
    # portable graph is there either way.
    names = [v.name for v in model.manifest.variants]
    assert names[0] == "fp32" and model.manifest.variant("fp32").runs_on is None
    report = (model.path / "report.md").read_text()
    if "fp32-fused" not in names:
        assert "`fp32-fused`: could not be built: ONNX Runtime refused the graph" in report
    ids = torch.randint(0, 100, (1, 20))
    with torch.no_grad():
        _close(model.predict(ids.numpy())["logits"], gpt(ids, use_cache=False).logits)
    with pytest.raises(InputError) as err:
        model.predict(np.zeros((1, 70), np.int64))
    assert str(err.value).startswith(
        "input 'input_ids' has size 70 on axis 1 (sequence); this model accepts at most 64 "
        "there. Shorten it to 64 or less (ONNX Runtime:"
    )
    assert "\n" not in str(err.value)
    _served_by_name(model.path)


def _served_by_name(path) -> None:
    """The server takes the input by its name, and says what was too long, in one line."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from labkit.serve import create_app

    def infer(client, n):
        return client.post(
            "/v2/models/gpt/infer",
            json={
                "inputs": [
                    {"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": [3] * n}
                ]
            },
        )

    with TestClient(create_app(str(path))) as client:
        ok = infer(client, 20)
        assert ok.status_code == 200, ok.text
        assert [(o["name"], o["shape"]) for o in ok.json()["outputs"]] == [("logits", [1, 20, 100])]
        bad = infer(client, 70)
        assert bad.status_code == 400
        assert (
            "input 'input_ids' has size 70 on axis 1 (sequence); this model accepts at "
            "most 64 there"
        ) in bad.json()["error"]


def test_star_args_wrapper_around_a_vit(tmp_path) -> None:
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            image_size=16,
            patch_size=8,
            num_channels=3,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=4,
        )
    ).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args).logits

    wrapper = Wrapper(vit).eval()
    spec = labkit.register(wrapper, torch.rand(2, 3, 16, 16), name="vit-wrapper")
    model = _handoff(spec, tmp_path)
    assert _signature(model) == {"input_0": ["batch", 3, 16, 16], "output": ["batch", 4]}
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        _close(model.predict(x.numpy())["output"], wrapper(x))


class DictTagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 3)

    def forward(self, x):
        return {"scores": self.proj(x), "pooled": x.mean(dim=1), "aux": None}


def test_model_returning_a_dict_with_a_dynamic_sequence(tmp_path) -> None:
    torch.manual_seed(0)
    net = DictTagger().eval()
    spec = labkit.register(
        net, torch.randn(2, 6, 8), name="dict-tagger", dynamic_axes={"input_0": {-2: "seq"}}
    )
    assert spec.output_names == ("scores", "pooled")
    assert spec.dynamic_axes == {"input_0": {1: "seq"}, "scores": {1: "seq"}}
    model = _handoff(spec, tmp_path)
    assert _signature(model) == {
        "input_0": ["batch", "seq", 8],
        "scores": ["batch", "seq", 3],
        "pooled": ["batch", 8],
    }
    x = torch.randn(4, 11, 8)
    got = model.predict(x.numpy())
    with torch.no_grad():
        want = net(x)
    _close(got["scores"], want["scores"])
    _close(got["pooled"], want["pooled"])


class Nested(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 2)
        self.b = torch.nn.Linear(4, 3)

    def forward(self, x, *, scale: float = 1.0, shift=None):
        y = self.a(x) * scale
        return y, (self.b(x) + (shift if shift is not None else 0), [torch.tanh(y)])


def test_nested_tuples_keyword_only_inputs_and_constants(tmp_path) -> None:
    torch.manual_seed(0)
    net = Nested().eval()
    spec = labkit.register(
        net, torch.randn(2, 4), name="nested", kwargs={"shift": torch.randn(2, 3), "scale": 2.0}
    )
    assert spec.input_names == ("input_0", "shift")
    assert spec.output_names == ("output_0", "output_1.0", "output_1.1.0")
    model = _handoff(spec, tmp_path)
    assert _signature(model)["shift"] == ["batch", 3]
    x, shift = torch.randn(5, 4), torch.randn(5, 3)
    got = model.predict({"input_0": x.numpy(), "shift": shift.numpy()})
    with torch.no_grad():
        y, (z, (t,)) = net(x, scale=2.0, shift=shift)
    _close(got["output_0"], y)
    _close(got["output_1.0"], z)
    _close(got["output_1.1.0"], t)
    only = labkit.register(net, torch.randn(2, 4), name="nested-some", outputs=["output_1"])
    assert only.output_names == ("output_1.0", "output_1.1.0")


class GRUTagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(6, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out)


def test_gru_tagger_signature_follows_the_sequence(tmp_path) -> None:
    torch.manual_seed(0)
    net = GRUTagger().eval()
    spec = labkit.register(
        net,
        torch.randn(2, 12, 6),
        name="gru-tagger",
        dynamic_axes={"input_0": {1: "seq"}, "output": {1: "seq"}},
    )
    model = _handoff(spec, tmp_path)
    assert _signature(model) == {"input_0": ["batch", "seq", 6], "output": ["batch", "seq", 5]}
    x = torch.randn(1, 30, 6)
    got = model.predict(x.numpy())["output"]
    assert got.shape == (1, 30, 5)
    with torch.no_grad():
        _close(got, net(x))


class DataDependent(torch.nn.Module):
    """Python control flow on a tensor's value: the dynamo exporter refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.abs().sum() >= 0:  # always true, but only known from the data
            return self.lin(x)
        return -self.lin(x)


def test_a_fallback_is_stated_in_the_stage_line_the_report_and_inspect(tmp_path) -> None:
    spec = labkit.register(DataDependent().eval(), torch.randn(2, 4), name="fallback")
    events: list = []
    result = labkit.handoff(spec, store=tmp_path / "store", options=FAST, progress=events.append)
    said = (
        "exported with the torchscript exporter, opset 17; FELL BACK from the dynamo "
        "exporter, which failed: GuardOnDataDependentSymNode"
    )
    line = next(e.message for e in events if e.stage == "export" and e.status == "info")
    assert line.startswith(said)
    assert f"- Exporter: {said}" in (result.path / "report.md").read_text()
    inspect = subprocess.run(
        [sys.executable, "-m", "handoff", "inspect", str(result.path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"  exporter: {said}" in inspect.stdout
