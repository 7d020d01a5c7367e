"""The CLI rough edges of issue 11, one test each: list's header and missing store, bench's
labelled speed-ups, inspect's tensor types, diff's downgrade and output drift, a closed pipe,
a bundle path that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def handoff(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlp 1.0.0 and 1.1.0 (new weights), and 'narrow' (4 inputs instead of 8)."""
    torch = pytest.importorskip("torch")
    import labkit
    from labkit.pipeline import HandoffOptions, run

    root = tmp_path_factory.mktemp("cli-store")
    opts = HandoffOptions(quantize=False, benchmark=False)
    for seed in (0, 1):
        torch.manual_seed(seed)
        mlp = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        ).eval()
        run(
            labkit.register(mlp, (torch.randn(2, 8),), name="mlp"),
            store=root,
            options=opts,
            sign_key="",
        )
    torch.manual_seed(2)
    narrow = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    run(
        labkit.register(narrow, (torch.randn(2, 4),), name="narrow"),
        store=root,
        options=opts,
        sign_key="",
    )
    return root


def test_list_has_a_header_row(store: Path) -> None:
    proc = handoff("list", str(store))
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith(" ")]  # not details
    assert lines[0].split() == [
        "NAME",
        "VERSION",
        "DEFAULT",
        "SPEED-UP",
        "PARITY",
        "CHANGE",
        "ALIASES",
    ]
    assert [ln.split()[:2] for ln in lines[1:4]] == [
        ["mlp", "1.0.0"],
        ["mlp", "1.1.0"],
        ["narrow", "1.0.0"],
    ]
    assert lines[2].split()[2:] == ["fp32", "-", "pass", "minor"]
    # columns line up under their headers
    assert lines[1].index("fp32") == lines[0].index("DEFAULT")


def test_list_of_a_missing_store_is_an_error(tmp_path: Path) -> None:
    proc = handoff("list", str(tmp_path / "nonexistent"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"handoff: error: no store at {tmp_path / 'nonexistent'}: the directory does not exist"
    )
    empty = handoff("list", str(tmp_path))  # an existing, empty store is fine
    assert empty.returncode == 0 and "no bundles" in empty.stdout


def test_bench_labels_latency_and_throughput(store: Path) -> None:
    proc = handoff(
        "bench", str(store / "mlp" / "1.0.0"), "--rounds", "1", "--batch", "4", "--threads", "1"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "batch-1 latency (ms)" in lines[1] and "speed-up vs fp32" in lines[1]
    header = lines[2].split()
    assert header == ["variant", "p50", "p90", "p99", "rows/s", "@4", "batch-1", "throughput"]
    row = lines[3].split()
    assert row[0] == "fp32" and row[-2:] == ["1.00x", "1.00x"]  # the baseline against itself
    p50, p90, p99 = map(float, row[1:4])
    assert 0 < p50 <= p90 <= p99


def test_inspect_prints_tensor_types_without_quotes(store: Path) -> None:
    proc = handoff("inspect", str(store / "mlp" / "1.0.0"))
    assert proc.returncode == 0, proc.stderr
    assert "  input  input_0: float32[batch, 8]" in proc.stdout.splitlines()
    assert "  output output: float32[batch, 3]" in proc.stdout.splitlines()
    types = [ln for ln in proc.stdout.splitlines() if ln.startswith(("  input", "  output"))]
    assert types and not any("'" in ln for ln in types)


def test_inspect_says_why_the_default_is_the_default_and_how_long_each_stage_took(
    store: Path,
) -> None:
    from labkit.pipeline.default_rule import RULE

    bundle = store / "mlp" / "1.1.0"
    lines = handoff("inspect", str(bundle)).stdout.splitlines()
    default = next(ln for ln in lines if ln.startswith("  default variant: "))
    assert default.startswith(
        "  default variant: fp32 — kept fp32 (the default of 1.0.0): not benchmarked ["
    )
    assert f"rule: {RULE}" in default and "previous default fp32 (1.0.0)" in default
    assert default.endswith("; speed numbers not reliable]")
    timing = next(ln for ln in lines if ln.startswith("  handoff time: "))
    assert all(f"{stage} " in timing for stage in ("freeze", "export", "parity", "optimize"))
    assert not any(ln.startswith("  baseline:") for ln in lines)  # nothing was timed
    doc = json.loads(handoff("inspect", "--json", str(bundle)).stdout)
    assert doc["default_rule"]["previous_version"] == "1.0.0"
    assert set(doc["provenance"]["stage_seconds"]) >= {"freeze", "export", "benchmark"}


def test_inspect_of_a_missing_bundle_says_it_does_not_exist(tmp_path: Path) -> None:
    proc = handoff("inspect", str(tmp_path / "nothere"))
    assert proc.returncode == 2  # not found (README "Exit codes")
    assert proc.stderr.strip() == (
        f"handoff: error: [listing] no bundle at "
        f"{tmp_path / 'nothere'}: the directory does not exist"
    )
    not_a_bundle = handoff("inspect", str(tmp_path))  # exists, but holds no manifest
    assert "has no manifest.json" in not_a_bundle.stderr


def test_diff_says_downgrade(store: Path) -> None:
    new, old = str(store / "mlp" / "1.1.0"), str(store / "mlp" / "1.0.0")
    down = handoff("diff", new, old)
    assert down.returncode == 0, down.stderr
    first = down.stdout.splitlines()[0]
    assert first.startswith("mlp 1.1.0 → mlp 1.0.0: downgrade to an older version")
    assert ": minor —" not in first
    up = handoff("diff", old, new).stdout.splitlines()[0]
    assert up.startswith("mlp 1.0.0 → mlp 1.1.0: minor — weights-only update")
    as_json = json.loads(handoff("diff", new, old, "--json").stdout)
    assert as_json["downgrade"] is True and as_json["change"] == "minor"
    assert json.loads(handoff("diff", old, new, "--json").stdout)["downgrade"] is False


def test_diff_says_how_much_the_outputs_changed(store: Path) -> None:
    import labkit.runtime as rt

    a, b = store / "mlp" / "1.0.0", store / "mlp" / "1.1.0"
    x = np.load(a / "golden" / "inputs.npz")["input_0"]
    ya, yb = rt.load(a).predict(x)["output"], rt.load(b).predict(x)["output"]
    max_abs = float(np.max(np.abs(ya.astype(np.float64) - yb)))
    max_rel = max_abs / float(np.max(np.abs(ya)))
    d = json.loads(handoff("diff", str(a), str(b), "--json").stdout)
    out = d["outputs"]
    assert out["compared"] is True and out["variants"] == ["fp32", "fp32"]
    assert out["inputs"] == f"{x.shape[0]} golden input rows of A"
    assert out["outputs"]["output"]["max_abs"] == pytest.approx(max_abs, rel=1e-6)
    assert out["outputs"]["output"]["max_rel"] == pytest.approx(max_rel, rel=1e-6)
    text = handoff("diff", str(a), str(b)).stdout
    assert f"output: max abs difference {max_abs:.3g}, max rel difference {max_rel:.3g}" in text
    same = json.loads(handoff("diff", str(a), str(a), "--json").stdout)["outputs"]
    assert same["outputs"]["output"] == {"max_abs": 0.0, "max_rel": 0.0}


def test_diff_of_incompatible_signatures_does_not_compare_outputs(store: Path) -> None:
    proc = handoff("diff", str(store / "mlp" / "1.0.0"), str(store / "narrow" / "1.0.0"))
    assert proc.returncode == 0, proc.stderr
    assert "signature: input 'input_0': float32[batch, 8] → float32[batch, 4]" in proc.stdout
    assert "outputs: not compared: B does not accept A's golden inputs" in proc.stdout


def test_closed_pipe_is_not_an_error(store: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before handoff writes a byte (like `| head`)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "handoff", "inspect", "--json", str(store / "mlp" / "1.0.0")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, what a shell reports for `git log | head`
