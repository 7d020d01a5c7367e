"""Honest numbers: the default-variant rule, the eager consistency check, the per-round
fastest eager, and a real handoff whose eager baseline is made inconsistent."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import labkit
from labkit.bundle import DefaultRule
from labkit.pipeline import BenchOptions, HandoffOptions, run
from labkit.pipeline.baseline import ROW_RATIO_BOUND, SPREAD_BOUND, check, spread
from labkit.pipeline.benchmark import contenders
from labkit.pipeline.default_rule import MIN_MARGIN, decide, noise
from labkit.runtime.bench import BenchResult, plan_turn

NAMES = ["fp32", "int8-dynamic"]


def _decide(
    scores: dict[str, float],
    rounds: dict[str, list[float]],
    *,
    reliable: bool = True,
    previous: str | None = None,
    previous_version: str | None = None,
) -> DefaultRule:
    return decide(
        NAMES,
        exact="fp32",
        scores=scores,
        rounds=rounds,
        reliable=reliable,
        previous=previous,
        previous_version=previous_version,
    )


# -- the default rule, on numbers ---------------------------------------------------------


def test_noise_is_half_the_range_of_the_per_round_ratio() -> None:
    # ratios 2.0, 2.2, 1.8 → (2.2 − 1.8) / (2 × 2.0) = 0.1
    assert noise([2.0, 2.2, 1.8], [1.0, 1.0, 1.0]) == pytest.approx(0.1)
    assert noise([3.0], [1.0]) == 0.0  # one round: no spread to measure


def test_a_clear_winner_replaces_fp32_on_a_first_handoff() -> None:
    rule = _decide(
        {"fp32": 1.5, "int8-dynamic": 2.4},
        {"fp32": [1.5, 1.5, 1.5], "int8-dynamic": [2.4, 2.5, 2.3]},
    )
    assert rule.chosen == "int8-dynamic" and rule.incumbent == "fp32"
    assert rule.margin == pytest.approx(max(MIN_MARGIN, rule.noise))
    assert "replaced fp32" in rule.reason
    assert rule.scores == {"fp32": 1.5, "int8-dynamic": 2.4}


def test_the_previous_default_is_kept_on_a_near_tie() -> None:
    # int8 is 3% faster, inside the 5% floor: the previous version's default stays
    rule = _decide(
        {"fp32": 2.00, "int8-dynamic": 2.06},
        {"fp32": [2.0, 2.0, 2.0], "int8-dynamic": [2.06, 2.06, 2.06]},
        previous="fp32",
        previous_version="1.0.0",
    )
    assert rule.chosen == "fp32" and rule.noise == 0.0
    assert rule.margin == MIN_MARGIN
    assert "inside the margin" in rule.reason and "1.0.0" in rule.reason
    # the same numbers with int8 as the previous default keep int8: stability both ways
    rule = _decide(
        {"fp32": 2.06, "int8-dynamic": 2.00},
        {"fp32": [2.06] * 3, "int8-dynamic": [2.0] * 3},
        previous="int8-dynamic",
        previous_version="1.0.0",
    )
    assert rule.chosen == "int8-dynamic" and rule.incumbent == "int8-dynamic"
    assert "inside the margin" in rule.reason


def test_a_challenger_ahead_in_every_round_wins_despite_a_wide_spread() -> None:
    # per-round ratios 1.1, 1.9, 1.4: noise 28.6% hides a 1.2× median gain, but the
    # challenger was more than 5% ahead in each of 3 rounds
    rounds = {"fp32": [1.0, 1.0, 1.0], "int8-dynamic": [1.1, 1.9, 1.4]}
    rule = _decide({"fp32": 1.0, "int8-dynamic": 1.2}, rounds)
    assert rule.chosen == "int8-dynamic" and "in each of 3 rounds" in rule.reason
    assert rule.margin is not None and rule.margin > 0.2  # the median gain alone was not enough
    # one round at 1.03×: not every round, so the margin decides (and keeps fp32)
    rounds["int8-dynamic"] = [1.03, 1.9, 1.4]
    assert _decide({"fp32": 1.0, "int8-dynamic": 1.2}, rounds).chosen == "fp32"
    # two rounds are not enough to call it
    two = {"fp32": [1.0, 1.0], "int8-dynamic": [1.1, 1.9]}
    assert _decide({"fp32": 1.0, "int8-dynamic": 1.2}, two).chosen == "fp32"


def test_a_slower_challenger_is_not_said_to_be_inside_the_margin() -> None:
    rule = _decide(
        {"fp32": 3.4, "int8-dynamic": 1.8}, {"fp32": [3.4] * 3, "int8-dynamic": [1.8] * 3}
    )
    assert rule.chosen == "fp32" and "the fastest" in rule.reason
    assert "inside the margin" not in rule.reason


def test_noise_raises_the_margin_and_a_win_beyond_it_changes_the_default() -> None:
    # per-round ratios 1.0, 1.4, 1.2: noise (1.4 − 1.0) / (2 × 1.2) = 16.7%
    rounds = {"fp32": [2.0, 2.0, 2.0], "int8-dynamic": [2.0, 2.8, 2.4]}
    kept = _decide({"fp32": 2.0, "int8-dynamic": 2.3}, rounds, previous="fp32")
    assert kept.noise == pytest.approx(0.4 / 2.4, abs=1e-4)
    assert kept.margin == kept.noise
    assert kept.chosen == "fp32"  # 1.15× is inside that margin, though beyond the 5% floor
    beyond = _decide(
        {"fp32": 2.0, "int8-dynamic": 3.0},
        {"fp32": [2.0] * 3, "int8-dynamic": [2.8, 3.0, 3.2]},
        previous="fp32",
    )
    assert beyond.chosen == "int8-dynamic"
    assert beyond.margin == pytest.approx(0.4 / 6, abs=1e-4)


def test_unreliable_or_missing_numbers_keep_the_incumbent() -> None:
    rule = _decide({}, {}, reliable=False, previous="int8-dynamic", previous_version="1.2.0")
    assert rule.chosen == "int8-dynamic" and not rule.reliable
    assert rule.scores == {} and rule.margin is None
    assert "not reliable" in rule.reason
    # a previous default this version does not have: the exact variant is the incumbent
    rule = _decide({}, {}, reliable=False, previous="int8-static")
    assert rule.chosen == "fp32" and rule.previous == "int8-static"


# -- the eager consistency check, on synthetic measurements -------------------------------


def test_consistent_eager_is_reliable() -> None:
    b = check([1e-3, 1.1e-3, 1.05e-3], [20000, 21000, 19500], batch=64, threads=(2, 1), attempts=1)
    assert b.reliable and b.problems == ()
    assert b.row_ratio == pytest.approx((1 / 20000) / 1.05e-3, rel=1e-3)
    assert b.spread < SPREAD_BOUND


def test_eager_slower_per_row_at_batch_than_alone_is_inconsistent() -> None:
    # 1 ms per row alone, 2 ms per row at batch 64 (500 rows/s): eager was starved
    b = check([1e-3, 1e-3, 1e-3], [500, 510, 505], batch=64, threads=(2, 1), attempts=2)
    assert not b.reliable and b.row_ratio is not None and b.row_ratio > ROW_RATIO_BOUND
    assert "longer per row at batch 64" in b.problems[0]


def test_round_to_round_spread_over_the_bound_is_inconsistent() -> None:
    b = check([1e-3, 3e-3, 1e-3], [50000, 50000, 50000], batch=64, threads=(1,), attempts=1)
    assert not b.reliable and b.spread == pytest.approx(2.0)
    assert "spread" in b.problems[0]


def test_one_stray_round_of_five_does_not_make_eager_unreliable() -> None:
    # a median cannot be moved by one round; the spread leaves it out
    assert spread([1.0, 1.1, 1.0, 9.0, 1.05]) == pytest.approx(0.1 / 1.05)
    b = check([1e-3, 1.1e-3, 1e-3, 9e-3, 1.05e-3], [5e4] * 5, batch=64, threads=(1,), attempts=1)
    assert b.reliable
    # but two slow rounds out of five do
    assert not check(
        [1e-3, 3e-3, 1e-3, 3e-3, 1e-3], [5e4] * 5, batch=64, threads=(1,), attempts=1
    ).reliable


def test_the_baseline_is_the_faster_eager_of_each_round() -> None:
    res = BenchResult(batch=64, threads=2, rounds=3)
    res.round_p50 = {"e2": [1.0, 9.0, 1.2], "e1": [1.5, 1.4, 1.6]}
    res.round_throughput = {"e2": [100.0, 10.0, 90.0], "e1": [60.0, 65.0, 95.0]}
    res.round_latency = {"e2": [[1.0], [9.0], [1.2]], "e1": [[1.5], [1.4], [1.6]]}
    res.latency = {"e2": [1.0, 9.0, 1.2], "e1": [1.5, 1.4, 1.6]}
    res.add_fastest("eager", ["e2", "e1"])
    assert res.round_p50["eager"] == [1.0, 1.4, 1.2]
    assert res.round_throughput["eager"] == [100.0, 65.0, 95.0]
    assert res.latency["eager"] == [1.0, 1.4, 1.2]


def test_calls_are_sized_by_time() -> None:
    small = plan_turn(
        {"latency": 1e-4, "throughput": 1e-3},
        latency_s=0.1,
        throughput_s=0.3,
        max_latency=100,
        max_throughput=20,
    )
    assert (small.latency, small.throughput, small.wake, small.latency_wake) == (100, 20, 1, 3)
    big = plan_turn(
        {"latency": 0.2, "throughput": 3.0},
        latency_s=0.1,
        throughput_s=0.3,
        max_latency=100,
        max_throughput=20,
    )
    # no untimed 3 s call, one untimed 0.2 s call
    assert (big.latency, big.throughput, big.wake, big.latency_wake) == (3, 1, 0, 1)


# -- a real handoff whose eager measurement is made inconsistent ---------------------------


class SleepsAtBatch(torch.nn.Module):
    """An MLP whose eager forward sleeps on big batches (not while being exported)."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
        if not exporting and not torch.onnx.is_in_onnx_export() and x.shape[0] >= self.rows:
            time.sleep(0.02)
        return self.net(x)


@pytest.mark.slow
def test_inconsistent_eager_is_remeasured_then_recorded_unreliable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bench = BenchOptions(
        rounds=3, throughput_batch=16, latency_s=0.02, throughput_s=0.05, warmup=1, budget_s=5
    )
    spec = labkit.register(
        SleepsAtBatch(16), torch.randn(4, 8), name="sleepy", task="classification"
    )
    res = run(
        spec,
        store=tmp_path,
        options=HandoffOptions(quantize=False, bench=bench, parity_batch_sizes=(1, 3)),
    )
    m = res.manifest
    assert m.baseline is not None and not m.baseline.reliable
    assert m.baseline.attempts == 2  # measured again before giving up
    assert m.baseline.row_ratio is not None and m.baseline.row_ratio > ROW_RATIO_BOUND
    assert res.benchmark is not None and not res.benchmark["first_attempt"]["reliable"]
    # no speed-up figure anywhere: variants, other engines, default rule
    assert all(v.speedup is None for v in m.variants)
    assert all("speedup" not in e for e in (res.benchmark.get("engines") or {}).values())
    assert m.default_rule is not None and not m.default_rule.reliable
    assert m.default_rule.chosen == "fp32" and m.default_rule.scores == {}
    report = (res.path / "report.md").read_text()
    assert "INCONSISTENT" in report and "unreliable" in report
    variants_table = report.split("## Variants")[1].split("\n## ")[0]
    assert "×" not in variants_table
    assert res.to_dict()["baseline"]["reliable"] is False


def test_an_eager_runner_that_cannot_be_the_faster_is_left_out_of_the_first_attempt() -> None:
    def runner(threads: int, latency: float, throughput: float) -> SimpleNamespace:
        return SimpleNamespace(
            threads=threads, warm_s={"latency": latency, "throughput": throughput}
        )

    # 16 cores: BERT at 1 thread is 10× slower on both feeds
    n, one = runner(16, 0.009, 0.25), runner(1, 0.04, 2.5)
    assert contenders([n, one]) == [n]  # type: ignore[list-item]
    # 2 cores: both within 3× of each other (1 thread even faster at batch 1): both timed
    n, one = runner(2, 0.2, 3.4), runner(1, 0.057, 2.2)
    assert contenders([n, one]) == [n, one]  # type: ignore[list-item]
    # N threads collapsed already at warm-up: only 1 thread is timed
    n, one = runner(2, 0.2, 10.0), runner(1, 0.05, 2.2)
    assert contenders([n, one]) == [one]  # type: ignore[list-item]


def test_the_previous_versions_default_is_the_incumbent_of_the_next_handoff(
    tmp_path: Path,
) -> None:
    def mlp(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    opts = HandoffOptions(quantize=False, benchmark=False, parity_batch_sizes=(1, 2))
    x = torch.randn(2, 8)
    first = run(labkit.register(mlp(0), x, name="kept"), store=tmp_path, options=opts)
    rule = first.manifest.default_rule
    assert rule is not None and first.manifest.baseline is None
    assert (rule.chosen, rule.previous, rule.reliable) == ("fp32", None, False)
    assert "not benchmarked" in rule.reason and rule.scores == {}
    second = run(labkit.register(mlp(1), x, name="kept"), store=tmp_path, options=opts)
    assert second.version == "1.1.0"
    rule = second.manifest.default_rule
    assert rule is not None
    assert (rule.previous, rule.previous_version, rule.incumbent) == ("fp32", "1.0.0", "fp32")
    assert "the default of 1.0.0" in rule.reason
    report = (second.path / "report.md").read_text()
    assert "## Default variant" in report and "Previous default: `fp32` in 1.0.0" in report
    assert "## Benchmark" not in report  # nothing timed, nothing claimed
