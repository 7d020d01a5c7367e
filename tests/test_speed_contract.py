"""The manifest's speed parts (labkit/bundle/speed.py): baseline, default rule, stage times —
typed, round-tripped, and refused when they contradict the rest of the manifest ([speed])."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from bundle_factory import small_manifest

from labkit.bundle import Baseline, DefaultRule, Manifest
from labkit.bundle.manifest import DIGEST_FIELD, self_digest
from labkit.errors import FormatError

BASELINE = Baseline(
    method="PyTorch eager, faster of 2 and 1 threads per round",
    threads=(2, 1),
    batch=64,
    rounds=5,
    attempts=1,
    reliable=True,
    spread=0.12,
    spread_bound=1.0,
    row_ratio=0.4,
    row_ratio_bound=1.1,
    problems=(),
)
RULE = DefaultRule(
    rule="keep the incumbent unless beaten by more than the margin",
    chosen="fp32",
    incumbent="fp32",
    previous=None,
    previous_version=None,
    reliable=True,
    reason="fp32 is the only variant",
    scores={"fp32": 1.8},
    noise=0.03,
    margin=0.05,
)


def _with_speed(**changes: Any) -> Manifest:
    m, _ = small_manifest("speedy")
    prov = replace(m.provenance, stage_seconds={"freeze": 1.5, "benchmark": 20.0})
    return replace(m, **{"baseline": BASELINE, "default_rule": RULE, "provenance": prov, **changes})


def _raw(m: Manifest) -> dict[str, Any]:
    return dict(json.loads(m.to_json()))


def _read(raw: dict[str, Any]) -> Manifest:
    raw[DIGEST_FIELD] = self_digest(raw)
    return Manifest.from_dict(raw, check_files=False)


def test_speed_parts_round_trip() -> None:
    m = _with_speed()
    back = _read(_raw(m))
    assert back.baseline == BASELINE
    assert back.default_rule == RULE
    assert back.provenance.stage_seconds == {"freeze": 1.5, "benchmark": 20.0}
    assert back.to_json() == m.to_json()


def test_absent_speed_parts_are_not_written() -> None:
    m, _ = small_manifest("plain")
    raw = _raw(m)
    assert "baseline" not in raw and "default_rule" not in raw
    assert "stage_seconds" not in raw["provenance"]
    back = _read(raw)
    assert back.baseline is None and back.default_rule is None


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda r: r["default_rule"].__setitem__("chosen", "int8"), "default_rule.chosen", "speed"),
        (lambda r: r["default_rule"]["scores"].__setitem__("ghost", 2.0), "default_rule", "speed"),
        (lambda r: r["default_rule"].__setitem__("incumbent", "ghost"), "default_rule", "speed"),
        (lambda r: r["default_rule"].pop("margin"), "default_rule.margin", "schema"),
        (
            lambda r: r["default_rule"]["scores"].__setitem__("fp32", -1),
            "default_rule.scores.fp32",
            "schema",
        ),
        (lambda r: r["baseline"].__setitem__("reliable", False), "baseline.problems", "schema"),
        (lambda r: r["baseline"].__setitem__("spread", "wide"), "baseline.spread", "schema"),
        (lambda r: r["baseline"].__setitem__("threads", []), "baseline", "schema"),
        (
            lambda r: r["provenance"]["stage_seconds"].__setitem__("freeze", -2),
            "provenance.stage_seconds.freeze",
            "schema",
        ),
    ],
)
def test_speed_parts_are_checked(change: Any, field: str, rule: str) -> None:
    raw = _raw(_with_speed())
    change(raw)
    with pytest.raises(FormatError) as info:
        _read(raw)
    assert info.value.rule == rule
    assert f"manifest field {field!r}" in str(info.value)


def test_unreliable_baseline_says_why() -> None:
    bad = replace(BASELINE, reliable=False, attempts=2, problems=("eager spread 3.1 > 1.0",))
    back = _read(_raw(_with_speed(baseline=bad)))
    assert back.baseline is not None and not back.baseline.reliable
    assert "INCONSISTENT" in back.baseline.describe()
    assert "eager spread 3.1 > 1.0" in back.baseline.describe()
    assert "consistent" in BASELINE.describe() and "INCONSISTENT" not in BASELINE.describe()
