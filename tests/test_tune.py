"""handoff tune → host profile → load(): written, used, ignored when stale, gate enforced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import labkit.runtime as rt
from labkit.bundle import Store
from labkit.runtime import engines, profile
from labkit.runtime.engines import Candidate
from labkit.runtime.tune import tune


@pytest.fixture(scope="module")
def tuned(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A private store copy, tuned once by the real CLI with a small budget."""
    store = tmp_path_factory.mktemp("tuned")
    shutil.copytree(tiny_store / "tiny", store / "tiny")
    bundle = store / "tiny" / "1.0.0"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "handoff",
            "tune",
            str(bundle),
            "--json",
            "--budget-s",
            "8",
            "--objective",
            "throughput",
            "--price-per-core-hour",
            "0.04",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return bundle, json.loads(proc.stdout)


def test_tune_json_writes_a_profile_beside_the_store(tuned: tuple[Path, dict]) -> None:
    bundle, doc = tuned
    path = Path(doc["path"])
    assert path == bundle.parent.parent / ".tuning" / "tiny" / "1.0.0" / (
        profile.host_key() + ".json"
    )
    assert json.loads(path.read_text()) == {k: v for k, v in doc.items() if k != "path"}
    m = rt.verify(bundle).manifest  # the profile beside the store never breaks the bundle
    assert doc["bundle"]["manifest_digest"] == m.digest
    assert doc["engines"] == engines.versions() and doc["objective"] == "throughput"
    chosen = doc["chosen"]
    passed = {g["label"] for g in doc["golden_checks"] if g["check"] == "pass"}
    assert Candidate.from_dict(chosen["candidate"]).with_threads(None).label in passed
    # The winner is the best measured ratio against the untuned default, which was timed too.
    ratios = [r["vs_default"]["throughput"] for r in [chosen, *doc["runners_up"]]]
    assert chosen["vs_default"]["throughput"] == max(ratios)
    assert doc["default"]["label"] in {r["label"] for r in [chosen, *doc["runners_up"]]}
    s, c = chosen["stats"], chosen["cost"]
    assert s["p99_ms"] >= s["p50_ms"] > 0 and s["throughput_per_s"] > 0
    cores = (chosen["candidate"]["threads"] or 1) * chosen["candidate"]["streams"]
    assert c["per_core_per_s"] == pytest.approx(s["throughput_per_s"] / cores)
    assert c["cost_per_million"] == pytest.approx(0.04 * cores * 1e6 / s["throughput_per_s"] / 3600)
    assert Store(bundle.parent.parent).names() == ["tiny"]  # .tuning is not a bundle


def test_load_uses_the_matching_profile(tuned: tuple[Path, dict]) -> None:
    bundle, doc = tuned
    m = rt.load(bundle)
    assert m.tuning == {"profile": doc["path"], "note": None}
    assert m.candidate == Candidate.from_dict(doc["chosen"]["candidate"])
    assert m.streams == doc["chosen"]["candidate"]["streams"]
    assert m.self_test().ok
    untuned = rt.load(bundle, profile=None)
    assert untuned.tuning["profile"] is None
    assert untuned.variant == untuned.manifest.default_variant
    x = rt.verify(bundle).read_npz("golden/inputs.npz")["input_0"]
    np.testing.assert_allclose(
        m.predict(x)["output"], untuned.predict(x)["output"], rtol=0.05, atol=0.05
    )
    # An explicit argument beats the profile.
    assert rt.load(bundle, threads=1).candidate.threads == 1


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("bundle", {"manifest_digest": "0" * 64}, "another bundle"),
        ("host", {"key": "feedfacefeedface", "model": "Other CPU"}, "another CPU"),
        ("engines", {"onnxruntime": "0.0.1"}, "engine versions changed"),
    ],
)
def test_a_stale_profile_is_ignored_with_a_note(
    tuned: tuple[Path, dict], tmp_path: Path, field: str, value: Any, why: str
) -> None:
    bundle, doc = tuned
    stale = json.loads(Path(doc["path"]).read_text())
    stale[field] = {**stale[field], **value} if field != "engines" else value
    path = profile.write(tmp_path / "stale.json", stale)
    m = rt.load(bundle, profile=path)
    assert m.tuning["profile"] is None
    assert why in m.tuning["note"] and "ignored" in m.tuning["note"]
    assert "\n" not in m.tuning["note"]
    assert m.candidate.variant == m.manifest.default_variant and m.candidate.streams == 1


def _strict_default(bundle: Path, variant: str) -> None:
    """Make ``variant`` the default and give it a tolerance no run can meet (the manifest's
    self-digest recomputed), so its golden check fails for real on this host."""
    from labkit.bundle.manifest import DIGEST_FIELD, self_digest

    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    m["default_variant"] = variant
    m.pop("default_rule", None)  # it would name the old default ([speed])
    for v in m["variants"]:
        if v["name"] == variant:
            v["tolerance"] = {"rel": 1e-30, "metric": None, "min_metric": None}
    m[DIGEST_FIELD] = self_digest(m)
    path.write_text(json.dumps(m))


def test_a_candidate_failing_the_golden_check_is_never_chosen(bundle: Path) -> None:
    """The untuned default itself fails its golden check here: it is still the yardstick
    every ratio is taken against, but never the choice; only checked configurations are."""
    _strict_default(bundle, "int8-dynamic")
    doc = tune(bundle, budget_s=8, engine_names=["onnxruntime"], write=False)
    checks = {g["label"]: g for g in doc["golden_checks"]}
    bad = checks["int8-dynamic/onnxruntime-fp32"]
    assert bad["check"] == "fail" and "max |Δ|" in bad["reason"]
    assert checks["fp32/onnxruntime-fp32"]["check"] == "pass"
    assert doc["default"]["candidate"]["variant"] == "int8-dynamic"
    assert doc["chosen"]["candidate"]["variant"] == "fp32"
    timed = [doc["chosen"], *doc["runners_up"]]
    assert all(
        r["candidate"]["variant"] == "fp32" for r in timed if r["label"] != doc["default"]["label"]
    )
    assert "path" not in doc


def test_tune_refuses_a_bad_objective(bundle: Path) -> None:
    from labkit.errors import LabkitError

    with pytest.raises(LabkitError, match="objective 'fast' is not one of latency, throughput"):
        tune(bundle, objective="fast")


def test_inspect_and_list_show_the_profile_in_use(tuned: tuple[Path, dict]) -> None:
    from handoff.cli import main

    bundle, doc = tuned
    label = doc["chosen"]["label"]
    for argv in (["inspect", str(bundle)], ["list", str(bundle.parent.parent)]):
        proc = subprocess.run(
            [sys.executable, "-m", "handoff", *argv], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert f"tuning: {label}" in proc.stdout and doc["path"] in proc.stdout
    assert main(["list", str(bundle.parent.parent), "--json"]) == 0


def test_streams_run_in_parallel_sessions(tuned: tuple[Path, dict], tmp_path: Path) -> None:
    import threading

    bundle, doc = tuned
    two = json.loads(Path(doc["path"]).read_text())
    two["chosen"]["candidate"] = {**two["chosen"]["candidate"], "streams": 2, "threads": 1}
    m = rt.load(bundle, profile=profile.write(tmp_path / "two.json", two))
    assert m.streams == 2 and m.tuning["note"] is None
    x = rt.verify(bundle).read_npz("golden/inputs.npz")["input_0"]
    want = m.predict(x)["output"]
    got: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: got.append(m.predict(x)["output"])) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and all(np.array_equal(g, want) for g in got)


def test_a_small_budget_with_many_candidates_is_kept(tmp_path: Path) -> None:
    """A bound, not a speed target: 24 variants × every engine and precision here, 6 s:
    wall time ≤ budget + 5 s, start-up and warm-up included; the profile goes to
    --profile-dir, nothing is written into the store."""
    import time

    from bundle_factory import wide_bundle

    bundle = wide_bundle(tmp_path / "store", 24)
    budget = 6.0
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "handoff",
            "tune",
            str(bundle),
            "--budget-s",
            str(budget),
            "--profile-dir",
            str(tmp_path / "profiles"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert wall <= budget + 5, f"{wall:.1f} s"
    doc = json.loads(proc.stdout)
    m = rt.verify(bundle).manifest
    where = tmp_path / "profiles" / "wide" / "1.0.0" / f"{profile.host_key()}.json"
    assert doc["path"] == str(where)
    assert not (tmp_path / "store" / ".tuning").exists()
    assert len(doc["golden_checks"]) == len(engines.candidates(m, profile.host()))
    # Only found with the same directory: the argument, or $LABKIT_PROFILE_DIR.
    assert rt.load(bundle).tuning["profile"] is None
    assert rt.load(bundle, profile_dir=tmp_path / "profiles").tuning["profile"] == doc["path"]
    env = {**os.environ, "LABKIT_PROFILE_DIR": str(tmp_path / "profiles")}
    code = "import labkit.runtime as rt, sys; print(rt.load(sys.argv[1]).tuning['profile'])"
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, env=env
    )
    assert out.stdout.strip() == doc["path"], out.stderr
    for argv in (["inspect", str(bundle)], ["list", str(tmp_path / "store")]):
        shown = subprocess.run(
            [sys.executable, "-m", "handoff", *argv, "--profile-dir", str(tmp_path / "profiles")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shown.returncode == 0 and doc["path"] in shown.stdout, shown.stderr


def test_the_screen_reaches_natively_reduced_precision_first(tiny_store: Path) -> None:
    """A budget too small for every candidate reaches the likeliest winners first: reduced
    precision the CPU computes natively (bf16 on AMX), then quantized graphs, then exact
    fp32 — the same prior the handoff uses to pick which other engines it times."""
    from labkit.bundle import read_manifest
    from labkit.pipeline.benchmark import cap_extra
    from labkit.runtime.tune import _order

    m = read_manifest(tiny_store / "tiny" / "1.0.0")
    assert m.default_variant == "fp32" and m.variant("int8-dynamic").precision == "int8"
    cands = [
        Candidate("fp32"),
        Candidate("int8-dynamic"),
        Candidate("fp32", "openvino"),
        Candidate("fp32", "openvino", "bf16"),
        Candidate("int8-dynamic", "openvino"),
    ]
    assert [c.label for c in _order(cands, m)] == [
        "fp32/openvino-bf16",
        "int8-dynamic/onnxruntime-fp32",
        "int8-dynamic/openvino-fp32",
        "fp32/onnxruntime-fp32",
        "fp32/openvino-fp32",
    ]
    extra = [c for c in cands if c.engine == "openvino"]
    timed, _ = cap_extra(list(reversed(extra)), "fp32")
    assert [c.label for c in timed[:2]] == ["fp32/openvino-bf16", "int8-dynamic/openvino-fp32"]
