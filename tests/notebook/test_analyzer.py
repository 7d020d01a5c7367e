"""``labkit.summary`` as a network analyzer: mult-adds on known layers against hand-computed
values, nested rows and depth, frozen parameters, dict inputs, warnings, per-layer CPU time."""

from __future__ import annotations

import pytest
import torch

from labkit.errors import InputError
from labkit.notebook.summary import summary


def rows(s: object) -> dict[str, object]:
    return {r.name: r for r in s.layers}  # type: ignore[attr-defined]


def test_linear_and_conv2d() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 8)
    )
    s = summary(net, torch.randn(2, 3, 8, 8), latency=False)
    r = rows(s)
    # Conv2d: each of 2·4·6·6 outputs sums 3 channels × 3×3 kernel.
    assert r["0"].mult_adds == 2 * 4 * 6 * 6 * 3 * 3 * 3 == 7776
    assert r["3"].mult_adds == 2 * 144 * 8 == 2304  # batch × in × out
    assert s.mult_adds == 7776 + 2304
    assert r["0"].output_shape == "[2, 4, 6, 6]" and r["3"].input_shape == "[2, 144]"
    assert r["0"].activation_bytes == 2 * 4 * 6 * 6 * 4


def test_grouped_conv_counts_per_group() -> None:
    s = summary(
        torch.nn.Conv2d(4, 8, 3, groups=2, padding=1), torch.randn(1, 4, 5, 5), latency=False
    )
    assert s.mult_adds == 8 * 5 * 5 * (4 // 2) * 9 == 3600


def test_hf_conv1d_as_in_gpt2() -> None:
    transformers = pytest.importorskip("transformers")
    conv = transformers.pytorch_utils.Conv1D(12, 6)  # nf=12 outputs, nx=6 inputs
    s = summary(torch.nn.Sequential(conv), torch.randn(1, 5, 6), latency=False)
    assert s.mult_adds == 5 * 6 * 12 == 360


def test_multihead_attention() -> None:
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)

    class Self(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    s = summary(Self(), torch.randn(3, 4, 8), latency=False)
    # Per sequence (L = S = 4, E = 8): q, k, v projections 3·L·E², QKᵀ L·S·E,
    # weights·V L·S·E, out projection L·E². Three sequences.
    per_seq = 3 * 4 * 8 * 8 + 4 * 4 * 8 + 4 * 4 * 8 + 4 * 8 * 8
    assert rows(s)["attn"].mult_adds == 3 * per_seq == 3840
    assert s.mult_adds == 3840  # its out_proj is inside the formula, not counted twice


def test_lstm_and_gru() -> None:
    lstm = torch.nn.LSTM(4, 8, num_layers=2)
    s = summary(lstm, torch.randn(5, 1, 4), latency=False)
    # Per step: layer 0 has 4 gates × (4·8 + 8·8); layer 1 4 × (8·8 + 8·8). Five steps.
    assert s.mult_adds == 5 * (4 * (4 * 8 + 8 * 8) + 4 * (8 * 8 + 8 * 8)) == 4480
    gru = torch.nn.GRU(4, 8, batch_first=True, bidirectional=True)
    s = summary(gru, torch.randn(2, 3, 4), latency=False)
    assert s.mult_adds == 2 * 3 * 2 * 3 * (4 * 8 + 8 * 8) == 3456


def test_functional_attention_is_counted() -> None:
    class Attn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.Linear(8, 24)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            scores = q @ k.transpose(-2, -1)  # L·S·E = 4·4·8
            return torch.softmax(scores, -1) @ v  # L·S·E again

    s = summary(Attn(), torch.randn(1, 4, 8), latency=False)
    assert rows(s)["qkv"].mult_adds == 4 * 8 * 24
    assert s.mult_adds == 4 * 8 * 24 + 2 * 4 * 4 * 8


def test_nested_depth_frozen_parameters_and_uncalled_containers() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = Block()
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    net = Net()
    net.body.requires_grad_(False)
    s = summary(net, torch.randn(1, 4), depth=1, latency=False)
    assert [r.name for r in s.shown()] == ["body", "head"]
    assert [r.name for r in s.layers] == [
        "body",
        "body.layers",
        "body.layers.0",
        "body.layers.1",
        "head",
    ]
    r = rows(s)
    assert r["body.layers"].kind == "ModuleList" and r["body.layers"].mult_adds == 32
    assert r["body"].parameters == 40 and r["body"].trainable == 0
    assert s.parameters == 50 and s.trainable == 10
    assert "(40 frozen)" in repr(s)
    assert "layers" not in repr(s)  # depth 1 hides it
    assert "    0" in repr(summary(net, torch.randn(1, 4), depth=None, latency=False))
    # HTML: every module under its parent, full path, containers fold; open down to depth
    html = s._repr_html_()
    assert html.count("<details") == 2  # body, body.layers (the leaves are rows)
    assert html.count("<details open") == 0  # depth=1: only depth-1 rows show unfolded
    assert 'title="body.layers.1"' in html and "body.layers.</span><b>1</b>" in html
    full = summary(net, torch.randn(1, 4), depth=None, latency=False)._repr_html_()
    assert full.count("<details open") == 2


def test_dict_inputs_and_a_clear_error_for_unknown_keys() -> None:
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(3, 2)
            self.b = torch.nn.Linear(5, 2)

        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return self.a(left) + self.b(right)

    s = summary(Two(), {"left": torch.randn(1, 3), "right": torch.randn(1, 5)})
    assert s.mult_adds == 3 * 2 + 5 * 2
    assert s.latency_ms["onnxruntime"] is not None and s.latency_ms["onnxruntime"] > 0
    assert set(s.layer_cpu_us) >= {"a", "b"}
    with pytest.raises(InputError, match="no parameter 'rigth'.*takes left, right"):
        summary(Two(), {"left": torch.randn(1, 3), "rigth": torch.randn(1, 5)})


def test_gpt2_dict_input_conv1d_attention_and_onnx_latency() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        vocab_size=50,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    s = summary(transformers.GPT2Model(cfg), {"input_ids": torch.randint(0, 50, (1, 5))})
    r = rows(s)
    # c_attn 16→48 and c_proj 16→16 (Conv1D) on 5 tokens, QKᵀ and ·V: 2·5·5·16.
    assert r["h.0.attn"].mult_adds == 5 * 16 * 48 + 5 * 16 * 16 + 2 * 5 * 5 * 16 == 5920
    assert r["h.0.mlp"].mult_adds == 2 * 5 * 16 * 64
    assert r["h"].kind == "ModuleList"
    assert s.latency_ms["onnxruntime"] is not None  # the cache is switched off, not "n/a"
    assert any("use_cache=False" in n for n in s.notes)
    assert any(m.startswith("h.0") for m in s.layer_cpu_us)


def test_pre_handoff_warnings() -> None:
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(16, 16)
            with torch.no_grad():
                self.fc.weight[0, 0] = 100.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent
                return self.fc(x)
            return -self.fc(x)

    s = summary(Branchy(), torch.ones(1, 16))
    text = " | ".join(s.warnings)
    assert "data-dependent control flow" in text and "test_analyzer.py" in text
    assert "fc quantizes badly: max |w| = 100" in text
    assert "WARNING" in repr(s) and "labkit-warnings" in s._repr_html_()

    class NoOnnx(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(x).real

    s = summary(NoOnnx(), torch.randn(1, 3, 3))
    assert s.latency_ms["onnxruntime"] is None
    assert any("no ONNX mapping" in w or "quick ONNX export failed" in w for w in s.warnings)


def test_layer_cpu_time_maps_to_modules() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 4))
    s = summary(net, torch.randn(8, 256))
    assert {"0", "2"} <= set(s.layer_cpu_us)
    assert all(us > 0 for us in s.layer_cpu_us.values())
    hot = s.hotspots(2)
    assert hot[0][0] == "0"  # 256×512 dwarfs 512×4
    # the layers and "other" add up to the profiled run they were measured in
    assert s.layer_cpu_run_us is not None and s.other_us is not None
    assert sum(s.layer_cpu_us.values()) + s.other_us == pytest.approx(s.layer_cpu_run_us)
    assert sum(share for _, _, share in s.hotspots(99)) + s.other_us / s.cpu_total_us() == (
        pytest.approx(1.0)
    )
    html = s._repr_html_()
    assert "unfused graph" in html and "(other: between kernels)" in html
    assert "unfused graph" in repr(s) and "(other)" in repr(s)
