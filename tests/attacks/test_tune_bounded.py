"""Case 1 of the third hostile review: ``handoff tune`` on a bundle with 1,900 variants (a
1 MB manifest that passed ``verify``), ``--budget-s 20``: 5,704 candidates, one worker
process each started before the deadline was looked at — 519 processes, OOM. Now the
contract caps variants, and the tuner keeps at most max(2, cores) workers alive, starts none
past the deadline and counts start-up and warm-up inside the budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from bundle_factory import wide_bundle
from profile_tools import ProcessWatch

from labkit.bundle.manifest import MAX_VARIANTS, Manifest
from labkit.errors import FormatError
from labkit.runtime import engines, profile, verify
from labkit.runtime.machine import physical_cores

REPO = Path(__file__).resolve().parents[2]


def test_a_1900_variant_manifest_is_refused_before_any_work(tmp_path: Path) -> None:
    bundle = wide_bundle(tmp_path, 1900)
    data = (bundle / "manifest.json").read_bytes()
    # The attack is real: the manifest is well-formed, under the 1 MiB cap, and its variants
    # make thousands of candidates on a host with the usual engines.
    assert len(data) < 1 << 20
    raw = json.loads(data)
    assert len(raw["variants"]) == 1900
    one = Manifest.from_dict({**raw, "variants": raw["variants"][:1]}, check_files=True)
    v = one.variants[0]
    wide = replace(one, variants=tuple(replace(v, name=f"v{i}") for i in range(1900)))
    assert len(engines.candidates(wide, profile.host())) >= 1900  # a worker each, before
    # Refused by the strict reader with one [variants] line, and by verify and tune.
    with pytest.raises(FormatError, match=r"^\[variants\] .*1900 variants; a bundle holds at most"):
        Manifest.from_json(data)
    with pytest.raises(FormatError, match=r"\[variants\]"):
        verify(bundle)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "handoff", "tune", str(bundle), "--budget-s", "20"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = ProcessWatch(proc)
    out, err = proc.communicate(timeout=120)
    watch.join()
    assert proc.returncode == 1, out
    assert err.strip().startswith("handoff: error: [variants]") and "\n" not in err.strip()
    assert watch.peak_tree == 1  # no worker was ever started
    assert time.monotonic() - t0 < 20


def test_a_wide_bundle_is_tuned_within_budget_and_cores(tmp_path: Path) -> None:
    """The most the contract allows (64 variants, × every engine and precision here) with a
    small budget: wall time ≤ budget + 5 s, never more than cores + 2 processes alive (the
    tuner, at most max(2, cores) workers), and the profile says what was left out."""
    bundle = wide_bundle(tmp_path, MAX_VARIANTS)
    budget = 8.0
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handoff",
            "tune",
            str(bundle),
            "--budget-s",
            str(budget),
            "--objective",
            "throughput",
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = ProcessWatch(proc)
    out, err = proc.communicate(timeout=120)
    wall = time.monotonic() - t0
    watch.join()
    assert proc.returncode == 0, err
    assert wall <= budget + 5, f"tune took {wall:.1f} s for a {budget} s budget"
    cores = physical_cores()
    assert 2 <= watch.peak <= max(2, cores) + 1 <= cores + 2, watch.peak
    # Each worker is one process of ours; an engine may fork a short-lived helper of its
    # own while it loads (OpenVINO does), never more than one per worker.
    assert watch.peak_tree <= 1 + 2 * max(2, cores), watch.peak_tree
    doc = json.loads(out)
    search = doc["search"]
    assert search["workers_peak"] <= max(2, cores) == search["max_workers"]
    checks = doc["golden_checks"]
    n_cands = len(engines.candidates(verify(bundle).manifest, profile.host()))
    assert len(checks) == n_cands >= MAX_VARIANTS
    skipped = [g for g in checks if g["check"] == "skipped"]
    assert skipped and all("time budget" in g["reason"] for g in skipped)
    assert search["workers_started"] < n_cands  # bounded by the budget, not by the bundle
    assert Path(doc["path"]).is_file()


def test_the_variant_cap_holds_for_the_writer_too(tmp_path: Path) -> None:
    from bundle_factory import small_manifest

    from labkit.bundle.writer import write_bundle

    assert verify(wide_bundle(tmp_path / "a", MAX_VARIANTS)).manifest.variants[-1].name == "v63"
    m, files = small_manifest("over")
    v = m.variants[0]
    over = replace(m, variants=tuple(replace(v, name=f"v{i}") for i in range(MAX_VARIANTS + 1)))
    with pytest.raises(FormatError, match=r"\[variants\] .*65 variants"):
        write_bundle(tmp_path / "b", "over", "1.0.0", files, replace(over, default_variant="v0"))
    assert not (tmp_path / "b" / "over").exists()
