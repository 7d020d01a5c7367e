"""`handoff export` end to end on an MLP, a CNN, a transformer encoder and an LSTM.

Each gets a bundle whose fp32 variant passes parity and `handoff verify`; then a retrain is
a minor version, a changed architecture a major one, and a repeat handoff no version.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo.py"


def handoff(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def export(store: Path, target: str, *extra: str, **env: str) -> dict:
    proc = handoff("export", f"{ZOO}:{target}", "--store", str(store), "--json", *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, quantized",
    [
        ("build_mlp", "int8-dynamic"),
        ("build_cnn", "int8-static"),
        ("build_transformer", "int8-dynamic"),
        ("build_lstm", "int8-dynamic"),
    ],
)
def test_export_verify_and_versions(tmp_path: Path, target: str, quantized: str) -> None:
    first = export(tmp_path, target, "--quick")
    assert (first["version"], first["change"]) == ("1.0.0", "first")
    variants = {v["name"]: v for v in first["variants"]}
    assert variants["fp32"]["parity"]["passed"]
    assert variants["fp32"]["parity"]["max_rel"] <= 1e-4
    # the quantized variant is either shipped within budget or left out with a reason
    if quantized in variants:
        assert variants[quantized]["parity"]["passed"]
    else:
        assert any(r["name"] == quantized for r in first["rejected"])
    assert first["default_variant"] in variants
    for v in first["variants"]:
        if first["baseline"]["reliable"]:
            assert v["speedup"]["p50"] > 0 and v["speedup"]["throughput"] > 0
        else:  # eager could not be measured consistently on this (busy) machine
            assert v["speedup"] is None

    bundle_1 = Path(first["path"])
    verified = handoff("verify", str(bundle_1))
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert len(re.findall(r"self-test \S+ +OK", verified.stdout)) == len(first["variants"])

    retrained = export(tmp_path, target, "--no-benchmark", ZOO_SEED="1")
    assert (retrained["version"], retrained["change"]) == ("1.1.0", "minor")
    widened = export(tmp_path, target, "--no-benchmark", ZOO_SEED="1", ZOO_WIDE="1")
    assert (widened["version"], widened["change"]) == ("2.0.0", "major")
    repeat = export(tmp_path, target, "--no-benchmark", ZOO_SEED="1", ZOO_WIDE="1")
    assert (repeat["version"], repeat["change"]) == ("2.0.0", "none")

    def diff(a: str, b: str) -> dict:
        proc = handoff("diff", a, b, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    d_minor = diff(first["path"], retrained["path"])
    assert d_minor["change"] == "minor"
    assert d_minor["verdict"] == "weights-only update: drop-in compatible"
    assert d_minor["weights_changed"] and not d_minor["architecture_changed"]
    d_major = diff(retrained["path"], widened["path"])
    assert d_major["change"] == "major" and d_major["architecture_changed"]
    assert diff(widened["path"], repeat["path"])["change"] == "none"
    text = handoff("diff", first["path"], retrained["path"]).stdout
    assert "weights-only update: drop-in compatible" in text
