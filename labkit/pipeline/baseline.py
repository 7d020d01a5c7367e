"""The baseline of every speed-up, PyTorch eager, and the check that its measurement held.

Eager runs in the handoff's process (``labkit.pipeline.benchmark.EagerRunner``) at N
threads and at 1 thread; the baseline is the faster of the two in each round: on a busy
machine torch's N-thread pool can collapse (an MLP's batch-1 p50 went from 0.10 ms at 1
thread to 0.22 ms at 2; FIELD-NOTES), and a speed-up over a collapsed baseline measures the
machine's load, not the model.

The measurement is then checked (:func:`check`). Two symptoms say eager did not get the
machine it was timed on:

- its time per row at batch B is more than :data:`ROW_RATIO_BOUND` × its batch-1 time.
  Batching amortizes per-call overhead and fills vector units; it does not make a model
  slower per row. The model of ours that gains least from it, a ResNet-18 at 224×224, ran
  at 0.77× its batch-1 time per row at batch 64 (1 thread, measured here); the 10% above 1.0
  is for rounding noise on a model that gains nothing;
- its per-round times spread by more than :data:`SPREAD_BOUND` ((max − min) / median of the
  batch-1 medians and of the batch time per row, leaving out the fastest and the slowest
  round when there are 4 or more: :func:`spread`). A median of per-round ratios is off by
  about half that spread at worst, so 0.5 keeps a recorded speed-up within roughly ±25%.
  On this shared 2-core machine eager's spread was 0.01–0.25 at load ≈ 1 and 0.13–0.47 at
  load 7–9, with first attempts of 0.87–1.4 measured again (docs/performance.md, "Honest
  numbers").
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from labkit.bundle.speed import Baseline
from labkit.runtime.bench import BenchResult

#: the baseline's name in benchmark reports: the faster eager runner of each round
EAGER = "pytorch-eager"
ROW_RATIO_BOUND = 1.10
SPREAD_BOUND = 0.5


def spread(values: Sequence[float]) -> float:
    """(max − min) / median of per-round values; with 4 rounds or more, of all but the
    fastest and the slowest round, since one stray round either way cannot move a median —
    and the speed-ups are medians of per-round ratios."""
    kept = sorted(values)
    if len(kept) >= 4:
        kept = kept[1:-1]
    mid = statistics.median(values)
    return (kept[-1] - kept[0]) / mid if mid > 0 else 0.0


def check(
    rounds_p50_s: Sequence[float],
    rounds_throughput: Sequence[float],
    *,
    batch: int,
    threads: Sequence[int],
    attempts: int,
) -> Baseline:
    """Whether eager's per-round batch-1 medians (s) and throughputs (rows/s) at ``batch``
    are consistent (see the module's docstring); the problems, with their numbers."""
    per_row = [1.0 / t for t in rounds_throughput]
    worst = max(spread(rounds_p50_s), spread(per_row))
    problems = []
    if worst > SPREAD_BOUND:
        problems.append(
            f"eager's round-to-round spread ((max − min) / median, fastest and slowest "
            f"round left out from 4 rounds on) is {worst:.2f} > "
            f"{SPREAD_BOUND:g} (batch-1 medians "
            + ", ".join(f"{t * 1e3:.3g}" for t in rounds_p50_s)
            + " ms; per row at batch "
            f"{batch}: " + ", ".join(f"{t * 1e3:.3g}" for t in per_row) + " ms)"
        )
    ratio = None
    if batch > 1:
        ratio = statistics.median(per_row) / statistics.median(rounds_p50_s)
        if ratio > ROW_RATIO_BOUND:
            problems.append(
                f"eager took {ratio:.2f}× longer per row at batch {batch} than at batch 1 "
                f"(> {ROW_RATIO_BOUND:g}): {statistics.median(per_row) * 1e3:.3g} ms vs "
                f"{statistics.median(rounds_p50_s) * 1e3:.3g} ms; batching does not slow a "
                "model down, so eager was starved of CPU while it was timed"
            )
    return Baseline(
        method=(
            "PyTorch eager, the faster of "
            + " and ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads)
            + " in each round"
            if len(threads) > 1
            else f"PyTorch eager at {threads[0]} thread{'s' if threads[0] > 1 else ''}"
        ),
        threads=tuple(threads),
        batch=batch,
        rounds=len(rounds_p50_s),
        attempts=attempts,
        reliable=not problems,
        spread=round(worst, 4),
        spread_bound=SPREAD_BOUND,
        row_ratio=None if ratio is None else round(ratio, 4),
        row_ratio_bound=ROW_RATIO_BOUND,
        problems=tuple(problems),
    )


def check_result(res: BenchResult, *, threads: Sequence[int], attempts: int) -> Baseline:
    """:func:`check` of the :data:`EAGER` runner of ``res``."""
    return check(
        res.round_p50[EAGER],
        res.round_throughput[EAGER],
        batch=res.batch,
        threads=threads,
        attempts=attempts,
    )
