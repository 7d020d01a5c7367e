"""The typed contract: Manifest.from_json is the strict reader, to_json the one writer, and
Tolerance.judge the one place a measurement meets a tolerance."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labkit.bundle import (
    Manifest,
    Tolerance,
    metric_for_task,
    read_manifest,
    verify,
)
from labkit.bundle.manifest import DIGEST_FIELD, self_digest
from labkit.errors import FormatError
from labkit.pipeline.options import Budget
from labkit.runtime.compare import accumulate


def _reseal(raw: dict[str, Any]) -> bytes:
    raw[DIGEST_FIELD] = self_digest(raw)
    return json.dumps(raw).encode()


def test_round_trip_is_exact(bundle: Path) -> None:
    data = (bundle / "manifest.json").read_bytes()
    m = Manifest.from_json(data)
    assert m.to_json() == data  # the pipeline wrote it with to_json
    assert Manifest.from_json(m.to_json()) == m
    assert Manifest.from_json(data.decode()) == m  # str is accepted too
    assert verify(bundle).manifest == m == read_manifest(bundle)
    assert json.loads(data)[DIGEST_FIELD] == m.digest


def test_typed_fields(bundle: Path) -> None:
    m = read_manifest(bundle)
    assert (m.name, m.version, m.schema_version) == ("tiny", "1.0.0", 1)
    assert m.variant().name == m.default_variant
    assert m.variant("fp32").file == "models/fp32.onnx"
    fp32 = m.variant("fp32")
    assert fp32.tolerance.metric == metric_for_task(m.task)
    assert fp32.tolerance.min_metric is not None  # the fp32 tolerance keeps its min_metric
    assert m.provenance.exporter.name in ("dynamo", "torchscript")
    assert m.provenance.exporter.opset >= 17
    assert m.change.kind == "first" and m.change.previous is None
    assert m.golden.inputs in {f.path for f in m.files}
    assert [t.name for t in m.signature.inputs] == m.signature.input_names
    with pytest.raises(FormatError, match="no variant 'nope'; it has: fp32") as info:
        m.variant("nope")
    assert info.value.rule == "variants"


def test_unknown_fields_survive_a_rewrite(bundle: Path) -> None:
    raw = json.loads((bundle / "manifest.json").read_bytes())
    raw["future_field"] = {"x": 1}
    raw["variants"][0]["engine"] = "cpu"
    raw["provenance"]["host"] = "lab-3"
    m = Manifest.from_json(_reseal(raw))
    again = json.loads(m.to_json())
    assert again["future_field"] == {"x": 1}
    assert again["variants"][0]["engine"] == "cpu"
    assert again["provenance"]["host"] == "lab-3"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda r: r["provenance"]["exporter"].pop("opset"), "provenance.exporter.opset", "schema"),
        (
            lambda r: r["provenance"].__setitem__("exporter", "dynamo"),
            "provenance.exporter",
            "schema",
        ),
        (
            lambda r: r["provenance"]["libraries"].__setitem__("torch", 2),
            "provenance.libraries.torch",
            "schema",
        ),
        (lambda r: r.pop("change"), "change", "schema"),
        (lambda r: r["change"].__setitem__("kind", "huge"), "change.kind", "schema"),
        (
            lambda r: r["variants"][0]["tolerance"].__setitem__("metric", "cosine_mean"),
            "variants[0].tolerance.metric",
            "schema",
        ),
        (
            lambda r: r["variants"][0]["tolerance"].__setitem__("rel", 0),
            "variants[0].tolerance.rel",
            "schema",
        ),
        (lambda r: r["golden"].__setitem__("rows", "3"), "golden.rows", "schema"),
    ],
)
def test_every_exposed_field_is_checked(bundle: Path, change: Any, field: str, rule: str) -> None:
    raw = json.loads((bundle / "manifest.json").read_bytes())
    change(raw)
    with pytest.raises(FormatError) as info:
        Manifest.from_json(_reseal(raw))
    assert info.value.rule == rule
    assert f"manifest field {field!r}" in str(info.value)


def test_source_copy_must_be_listed(bundle: Path) -> None:
    raw = json.loads((bundle / "manifest.json").read_bytes())
    raw["provenance"]["source"] = {
        "kind": "script",
        "path": "/x/m.py",
        "sha256": "0" * 64,
        "copy": "source/m.py",
    }
    with pytest.raises(FormatError, match="'source/m.py' is not a listed file") as info:
        Manifest.from_json(_reseal(raw))
    assert info.value.rule == "listing"


def test_to_json_seals_and_a_change_is_detected(bundle: Path) -> None:
    m = read_manifest(bundle)
    edited = replace(m, task="regression")
    assert Manifest.from_json(edited.to_json()).task == "regression"
    tampered = edited.to_json().replace(b'"regression"', b'"other"')
    with pytest.raises(FormatError) as info:
        Manifest.from_json(tampered)
    assert info.value.rule == "manifest-digest"


def _stats(ref: np.ndarray, got: np.ndarray) -> Any:
    return accumulate([({"y": ref}, {"y": got})], ["y"])


def test_judge_rel_and_metric() -> None:
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    close = ref + 1e-6
    flipped = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    tol = Tolerance(1e-4, "top1_agreement", 1.0)
    assert tol.judge(_stats(ref, close), "fp32") == []
    fails = tol.judge(_stats(ref, flipped), "int8")
    assert len(fails) == 2
    assert fails[0].startswith("y: max |Δ| = 1 is 0.5 of the output's magnitude > rel 0.0001")
    assert fails[1] == "y: top1_agreement = 0.5000 < 1.0000 (variant int8)"
    # without min_metric only the relative error counts
    assert len(Tolerance(1e-4, "top1_agreement").judge(_stats(ref, flipped), "v")) == 1
    # cosine is judged under the name the stats report it by
    stats = _stats(ref, flipped)
    assert stats["y"].to_dict()["cosine"] == pytest.approx(0.5)
    assert Tolerance(1.0, "cosine", 0.9).judge(stats, "v") == [
        "y: cosine = 0.5000 < 0.9000 (variant v)"
    ]


def test_tolerance_refuses_nonsense() -> None:
    with pytest.raises(FormatError, match="must be > 0"):
        Tolerance(0.0)
    with pytest.raises(FormatError, match="'cosine_mean' is not one of"):
        Tolerance(1e-3, "cosine_mean")


def test_budget_is_a_tolerance() -> None:
    b = Budget(min_top1_agreement=0.95, min_cosine=0.9, max_rel=0.2)
    assert b.tolerance("top1_agreement") == Tolerance(0.2, "top1_agreement", 0.95)
    assert b.tolerance("cosine") == Tolerance(0.2, "cosine", 0.9)


_CHECK = {
    "engine": "openvino",
    "precision": "bf16",
    "passed": False,
    "tolerance": {"rel": 0.25, "metric": "top1_agreement", "min_metric": 0.99},
    "judged_on": "generated",
    "max_rel": 0.4,
    "metric": "top1_agreement",
    "metric_value": 0.5,
    "reason": "output: top1_agreement = 0.5000 < 0.9900",
}


def test_engine_checks_and_quantization_are_typed(bundle: Path) -> None:
    raw = json.loads((bundle / "manifest.json").read_bytes())
    fp32 = next(v for v in raw["variants"] if v["name"] == "fp32")
    fp32["checks"] = [{**_CHECK, "precision": "fp32", "passed": True, "reason": None}, _CHECK]
    q = next(v for v in raw["variants"] if v["quantization"])
    q["quantization"]["excluded"] = [{"block": "head", "nodes": ["mm"], "reason": "r"}]  # older
    m = Manifest.from_json(_reseal(raw))
    v = m.variant("fp32")
    assert [c.config for c in v.passed()] == ["openvino-fp32"]
    (rejected,) = v.rejected()
    assert rejected.reason == _CHECK["reason"] and rejected.tolerance.min_metric == 0.99
    quant = m.variant(q["name"]).quantization
    assert quant is not None and quant.excluded[0].nodes == ("mm",)
    assert quant.excluded[0].metric_value is None  # not recorded by older writers
    assert quant.judged_on in ("real", "generated")
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("check", "field", "message"),
    [
        ({**_CHECK, "reason": None}, "checks[0].reason", "must say why"),
        ({**_CHECK, "judged_on": "vibes"}, "checks[0].judged_on", "'vibes' is not one of"),
        ({**_CHECK, "passed": "yes"}, "checks[0].passed", "expected bool"),
    ],
)
def test_engine_checks_are_checked(bundle: Path, check: Any, field: str, message: str) -> None:
    raw = json.loads((bundle / "manifest.json").read_bytes())
    raw["variants"][0]["checks"] = [check]
    with pytest.raises(FormatError, match=message) as info:
        Manifest.from_json(_reseal(raw))
    assert f"manifest field 'variants[0].{field}'" in str(info.value)
    raw["variants"][0]["checks"] = [_CHECK, _CHECK]
    with pytest.raises(FormatError, match="lists an \\(engine, precision\\) twice"):
        Manifest.from_json(_reseal(raw))


def test_a_5000_digit_integer_is_a_json_refusal() -> None:
    """Python refuses to convert integers of over 4,300 digits with a plain ValueError: the
    strict reader turns it into its own one-line [json] refusal."""
    with pytest.raises(FormatError, match=r"^\[json\] manifest is not valid JSON"):
        Manifest.from_json(b'{"a": ' + b"9" * 5000 + b"}")
