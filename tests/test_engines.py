"""The engine seam: candidates offered per host, tolerances per precision, OpenVINO vs ORT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import labkit.runtime as rt
from labkit.bundle.integrity import verify
from labkit.bundle.tolerance import Tolerance
from labkit.errors import LabkitError
from labkit.runtime import engines
from labkit.runtime.compare import tolerance_for
from labkit.runtime.engines import Candidate
from labkit.runtime.model import default_threads

ZEN4 = {"flags": ["avx512f", "avx512_vnni", "avx512_bf16"]}
NO_BF16 = {"flags": ["avx2", "fma"]}


def _golden(bundle: Path) -> np.ndarray:
    with np.load(bundle / "golden" / "inputs.npz", allow_pickle=False) as z:
        return z["input_0"]


def test_candidates_follow_variants_and_cpu_flags(bundle: Path) -> None:
    m = verify(bundle).manifest
    labels = {c.label for c in engines.candidates(m, ZEN4)}
    assert {"fp32/onnxruntime-fp32", "int8-dynamic/onnxruntime-fp32"} <= labels
    if "openvino" in engines.versions():
        # bf16 only where the CPU has it; a dynamically quantized graph is never offered.
        assert {"fp32/openvino-fp32", "fp32/openvino-bf16"} <= labels
        assert not any(lbl.startswith("int8-dynamic/openvino") for lbl in labels)
        no_bf16 = {c.label for c in engines.candidates(m, NO_BF16)}
        assert "fp32/openvino-fp32" in no_bf16 and "fp32/openvino-bf16" not in no_bf16


def test_reduced_precision_is_judged_by_the_accuracy_budget(bundle: Path) -> None:
    m = verify(bundle).manifest
    fp32 = m.variant("fp32")
    assert tolerance_for(m, fp32, exact=True) == fp32.tolerance
    budget = (m.provenance.options or {})["budget"]
    loose = tolerance_for(m, fp32, exact=False)
    assert loose == Tolerance(budget["max_rel"], "top1_agreement", budget["min_top1_agreement"])
    bare = dataclasses.replace(m, provenance=dataclasses.replace(m.provenance, options=None))
    with pytest.raises(ValueError, match="no accuracy budget"):
        tolerance_for(bare, fp32, exact=False)


def test_candidate_round_trips_and_labels() -> None:
    c = Candidate("int8-static", "openvino", "fp32", 4, 2)
    assert Candidate.from_dict(c.to_dict()) == c
    assert c.label == "int8-static/openvino-fp32@4tx2"
    assert not Candidate("fp32", "openvino", "bf16").exact


def test_untuned_threads_follow_model_cost(bundle: Path) -> None:
    from labkit.runtime.machine import physical_cores

    m = verify(bundle).manifest
    unbenched = tuple(dataclasses.replace(v, benchmark=None) for v in m.variants)

    def costing(model: dict | None, timed: bool = False) -> object:
        prov = dataclasses.replace(m.provenance, model=model)
        return dataclasses.replace(m, provenance=prov, **({} if timed else {"variants": unbenched}))

    assert default_threads(costing({"flops_per_sample": 1e6})) == 1  # type: ignore[arg-type]
    big = costing({"flops_per_sample": 1e12})
    assert default_threads(big) == physical_cores()  # type: ignore[arg-type]
    # A FLOP counter that missed fused kernels is corrected by the parameter count.
    missed = costing({"flops_per_sample": 1536, "parameters": 10**9})
    assert default_threads(missed) == physical_cores()  # type: ignore[arg-type]
    assert default_threads(costing(None)) is None  # type: ignore[arg-type]
    assert default_threads(costing(None, timed=True)) == 1  # type: ignore[arg-type]
    assert rt.load(bundle, profile=None).candidate.threads == default_threads(m)


def test_unknown_engine_is_a_clear_error(bundle: Path) -> None:
    with pytest.raises(LabkitError, match="unknown engine 'nope'"):
        rt.load(bundle, engine="nope", profile=None)


def test_openvino_matches_onnxruntime_on_a_tiny_model(bundle: Path) -> None:
    pytest.importorskip("openvino")
    x = _golden(bundle)
    ort_out = rt.load(bundle, variant="fp32", profile=None).predict(x)["output"]
    ov = rt.load(bundle, variant="fp32", engine="openvino", profile=None, threads=1)
    assert ov.candidate.label == "fp32/openvino-fp32@1t"
    ov_out = ov.predict(x)["output"]
    assert ov_out.shape == ort_out.shape
    np.testing.assert_allclose(ov_out, ort_out, rtol=1e-4, atol=1e-5)
    st = ov.self_test()
    assert st.ok and st.outputs["output"]["max_rel"] < 1e-4
    # bf16 is judged like a quantized variant: by the bundle's accuracy budget (on a CPU
    # without bf16 OpenVINO falls back to f32, which passes that budget all the more).
    bf = rt.load(bundle, variant="fp32", engine="openvino", precision="bf16", profile=None)
    rep = bf.self_test()
    assert rep.tolerance is not None and rep.tolerance.min_metric is not None
    assert 0 < rep.outputs["output"]["max_rel"] < rep.tolerance.rel


def test_handoff_report_times_other_engines_and_shows_cost(bundle: Path) -> None:
    import json

    bench = json.loads((bundle / "reports" / "benchmark.json").read_text())
    report = (bundle / "report.md").read_text()
    assert "### Throughput per core and cost" in report
    for v in verify(bundle).manifest.variants:
        c = (v.benchmark or {})["cost"]
        assert c["per_core_per_s"] == pytest.approx(
            v.benchmark["throughput_per_s"] / bench["environment"]["threads"]
        )  # type: ignore[index]
    if "openvino" in engines.versions():
        ov = bench["engines"]["fp32/openvino-fp32"]
        assert ov["engine"] == "openvino" and ov["throughput_per_s"] > 0
        assert "`fp32/openvino-fp32`" in report
        if bench["eager_check"]["reliable"]:
            assert ov["speedup"]["p50"] > 0
        else:  # eager could not be measured consistently on this (busy) machine
            assert "speedup" not in ov
    # The bundle itself stays ONNX-only.
    assert all(
        f.path.endswith(".onnx")
        for f in verify(bundle).manifest.files
        if f.path.startswith("models/")
    )


def test_cost_per_million(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.runtime.cost import PRICE_ENV, cost, price_per_core_hour

    monkeypatch.setenv(PRICE_ENV, "0.036")
    assert price_per_core_hour() == 0.036 and price_per_core_hour(0.01) == 0.01
    c = cost(1000.0, 2, 0.036)
    assert c["per_core_per_s"] == 500.0
    assert c["cost_per_million"] == pytest.approx(0.036 * 2 * 1e6 / 1000 / 3600)
    monkeypatch.setenv(PRICE_ENV, "cheap")
    with pytest.raises(LabkitError, match="not a number"):
        price_per_core_hour()


def test_summary_shows_per_core_throughput_and_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from labkit.notebook.summary import summary
    from labkit.runtime.cost import PRICE_ENV

    monkeypatch.setenv(PRICE_ENV, "0.05")
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    s = summary(mlp, torch.randn(4, 8), profile=False)
    note = next(n for n in s.notes if "inferences/s per core" in n)
    ms = s.latency_ms["onnxruntime"]
    assert ms is not None
    import os

    per_core = 4 * 1000.0 / ms / (os.cpu_count() or 1)
    assert f"{per_core:,.0f} inferences/s per core" in note
    assert "per million inferences at 0.05 per core-hour" in note
