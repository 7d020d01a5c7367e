"""summary(), progress() and render_result_html(): rich HTML in a notebook, text elsewhere."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.notebook import progress, render_result_html, summary
from labkit.notebook.progress import TrainingProgress
from labkit.notebook.render import render_result_text

torch = pytest.importorskip("torch")

RESULT = {
    "name": "digits",
    "version": "1.1.0",
    "path": "/store/digits/1.1.0",
    "change": "minor",
    "change_reason": "weights-only update: drop-in compatible",
    "previous": "1.0.0",
    "default_variant": "int8-dynamic",
    "variants": [
        {
            "name": "fp32",
            "precision": "fp32",
            "parity": {
                "passed": True,
                "max_rel": 1.2e-7,
                "max_abs": 3e-8,
                "metric": "top1_agreement",
                "metric_value": 1.0,
            },
            "tolerance": {"rel": 1e-4},
            "benchmark": {"p50_ms": 0.02},
            "speedup": {"p50": 2.5, "throughput": 1.9},
        },
        {
            "name": "int8-dynamic",
            "precision": "int8",
            "parity": {
                "passed": True,
                "max_rel": 6e-3,
                "max_abs": 1e-2,
                "metric": "top1_agreement",
                "metric_value": 0.99,
            },
            "tolerance": {"rel": 1.2e-2},
            "benchmark": {"p50_ms": 0.01},
            "speedup": {"p50": 4.0, "throughput": 3.1},
        },
    ],
    "rejected": [{"name": "int8-static", "reason": "outside its accuracy budget <script>"}],
    "parity": {
        "variants": {
            "int8-dynamic": {
                "sets": [
                    {"label": "example", "outputs": {"output": {"max_rel": 1e-3}}},
                    {"label": "real data", "outputs": {"output": {"max_rel": 6e-3}}},
                ]
            }
        }
    },
    "benchmark": {"baseline": "pytorch-eager", "pytorch-eager": {"p50_ms": 0.05}},
}


def test_render_result_html_has_table_and_escapes() -> None:
    html = render_result_html(RESULT)
    assert "digits 1.1.0" in html and "weights-only update (minor)" in html
    assert html.count("<tr>") == 3  # header + two variants
    assert "4×" in html and "2.5×" in html
    assert "<svg" not in html  # the speed chart is a plotly figure beside the HTML
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_speed_figure_bars_are_the_results_speedups_default_outlined() -> None:
    from labkit.notebook.charts import speed_figure

    fig = speed_figure(RESULT).to_plotly_json()
    p50, tput = fig["data"]
    assert p50["type"] == "bar" and p50["meta"] == "p50" and tput["meta"] == "throughput"
    assert list(p50["x"]) == ["fp32", "int8-dynamic (default)"] == list(tput["x"])
    assert list(p50["y"]) == [2.5, 4.0] and list(tput["y"]) == [1.9, 3.1]
    assert list(p50["text"]) == ["2.50×", "4.00×"]
    assert list(p50["marker"]["line"]["width"]) == [0, 3]  # the default variant, outlined
    base = fig["layout"]["shapes"][0]  # PyTorch eager, the 1× line
    assert base["y0"] == base["y1"] == 1.0 and base["line"]["dash"] == "dash"
    assert fig["layout"]["barmode"] == "group"


def test_speed_figure_reads_manifest_variants_and_skips_unbenchmarked() -> None:
    from labkit.notebook.charts import speed_figure

    result = {
        "default_variant": "fp32",
        "variants": [
            {"name": "fp32", "benchmark": {"p50_ms": 0.1, "speedup": {"p50": 3.0}}},
            {"name": "int8", "benchmark": {"p50_ms": 0.1}},
        ],
    }
    p50, tput = speed_figure(result).to_plotly_json()["data"]
    assert list(p50["x"]) == ["fp32 (default)"] and list(p50["y"]) == [3.0]
    assert list(tput["y"]) == [None]  # throughput not measured: a gap, not a zero
    assert speed_figure({"variants": [{"name": "fp32"}]}) is None


def test_result_outputs_are_the_table_then_the_plotly_figure() -> None:
    from labkit.notebook.charts import PLOTLY_MIME
    from labkit.notebook.render import render_result_outputs

    table, chart = render_result_outputs(RESULT)
    # separate outputs: JupyterLab shows one mimetype per output and would hide the table
    assert table == {
        "text/html": render_result_html(RESULT),
        "text/plain": render_result_text(RESULT),
    }
    assert set(chart) == {PLOTLY_MIME, "text/plain"}
    assert [t["y"] for t in chart[PLOTLY_MIME]["data"]] == [[2.5, 4.0], [1.9, 3.1]]
    json.dumps([table, chart])  # what the notebook stores: plain JSON
    bare = render_result_outputs({"name": "x", "version": "1.0.0", "change": "none"})
    assert len(bare) == 1 and set(bare[0]) == {"text/html", "text/plain"}


def test_render_reads_speedups_of_manifest_variants() -> None:
    variant = {"name": "fp32", "benchmark": {"p50_ms": 0.1, "speedup": {"p50": 3.0}}}
    html = render_result_html(
        {"name": "x", "version": "1.0.0", "change": "none", "variants": [variant]}
    )
    assert "3×" in html


def test_render_tolerates_missing_fields() -> None:
    html = render_result_html({"name": "x", "version": "1.0.0", "change": "none"})
    assert "nothing changed" in html


def test_a_real_handoff_result_displays_its_speed_figure(tmp_path: Path, monkeypatch) -> None:
    """The notebook layer registers the result's renderings as IPython formatters (the
    pipeline imports none of it): HTML, plain text, and the table then the chart."""
    from IPython.core.interactiveshell import InteractiveShell

    import labkit
    from labkit.notebook.activation import register_formatters
    from labkit.notebook.charts import PLOTLY_MIME
    from labkit.pipeline import BenchOptions, HandoffOptions, run

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    spec = labkit.register(model, torch.randn(4, 8), name="tiny", task="classification")
    result = run(spec, store=tmp_path / "store", options=HandoffOptions(bench=BenchOptions.quick()))
    assert not hasattr(result, "_repr_html_") and not hasattr(result, "_ipython_display_")
    shell = InteractiveShell.instance()
    register_formatters(shell)
    formatters = shell.display_formatter.formatters
    html = formatters["text/html"](result)
    assert html == render_result_html(result.to_dict()) and "<svg" not in html
    assert formatters["text/plain"](result) == result.summary()
    shown: list = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    assert shell.display_formatter.ipython_display_formatter(result)  # a cell's `result`
    table, chart = shown
    p50, tput = chart[PLOTLY_MIME]["data"]
    names = [v.name for v in result.variants]
    assert p50["x"] == [f"{n} (default)" if n == result.default_variant else n for n in names]
    assert p50["y"] == [v.speedup["p50"] for v in result.variants]
    assert tput["y"] == [v.speedup["throughput"] for v in result.variants]
    assert table == {"text/html": html, "text/plain": result.summary()}


def test_summary_counts_layers_flops_and_measures_latency() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    s = summary(model, torch.randn(1, 64))
    assert s.parameters == 64 * 32 + 32 + 32 * 10 + 10
    assert [r.kind for r in s.layers] == ["Linear", "ReLU", "Linear"]
    assert s.layers[0].output_shape == "[1, 32]"
    assert s.flops == 2 * 64 * 32 + 32 + 2 * 32 * 10
    assert s.latency_ms["pytorch"] > 0 and s.latency_ms["onnxruntime"] > 0
    assert "Linear" in repr(s) and "latency pytorch" in repr(s)
    html = s._repr_html_()
    assert "<table" in html and "onnxruntime" in html
    assert model.training  # training mode restored
    json.dumps(s.to_dict())


def test_summary_notes_a_failed_quick_export() -> None:
    class NoExport(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if (
                torch.jit.is_tracing()
                or torch.compiler.is_exporting()
                or torch.compiler.is_compiling()
            ):
                raise RuntimeError("nope")
            return x + 1

    s = summary(NoExport(), torch.randn(2, 3))
    assert s.latency_ms["onnxruntime"] is None
    assert any("quick ONNX export failed" in w for w in s.warnings)


def test_progress_falls_back_to_text_outside_a_notebook() -> None:
    out = io.StringIO()
    with TrainingProgress("fit", every=0.0, stream=out, widgets=False) as p:
        for i in range(3):
            p.log(loss=1.0 / (i + 1))
        p.log(acc=0.5)
    text = out.getvalue()
    assert text.endswith("fit step 4: loss=0.3333 acc=0.5\n")
    assert p.history["loss"][:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert all(math.isnan(x) for x in p.history["acc"][:3])  # padded before its first log
    assert p._repr_mimebundle_()["text/plain"] == p.text()


def test_progress_is_a_context_manager_without_ipython_kernel() -> None:
    with progress("x") as p:
        p.log(loss=0.1)
    assert p.steps == 1


def test_import_is_light_and_autoregister_is_a_noop_outside_a_kernel() -> None:
    code = (
        "import sys, labkit.notebook as n; assert n._autoregister() is False; "
        "heavy = [m for m in ('torch', 'ipywidgets', 'onnxruntime') if m in sys.modules]; "
        "print(heavy)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_summary_html_has_no_raw_user_text() -> None:
    class Weird(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module("l", torch.nn.Linear(2, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.l(x)

    Weird.__name__ = "<b>Weird</b>"
    html = summary(Weird(), torch.randn(1, 2), latency=False)._repr_html_()
    assert re.search(r"&lt;b&gt;Weird", html)
