"""Stage 5, benchmark: every variant against PyTorch eager, interleaved, on this machine.

ONNX variants each run in a fresh worker process. PyTorch eager runs in this process (an
``nn.Module`` defined in a notebook cannot move to another process without pickle, and this
process is where the researcher runs it anyway) at N threads and at 1, and the baseline is
the faster of the two in each round (:mod:`labkit.pipeline.baseline`). While one runner is
timed the others are idle.

The stage is bounded: one thread count (no sweep; ``handoff tune`` sweeps on the deployment
host), at most :data:`MAX_EXTRA` configurations of other engines, warm-up and calls sized
by time, and no round started past ``BenchOptions.budget_s``. When eager's measurement is
inconsistent it is taken once more; when that is inconsistent too, no speed-up is recorded.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from labkit.bundle.speed import Baseline
from labkit.pipeline.baseline import EAGER, check_result
from labkit.pipeline.freeze import Batch, run_torch
from labkit.pipeline.options import BenchOptions
from labkit.registry import ModelSpec
from labkit.runtime import engines
from labkit.runtime.bench import (
    QUIESCE_S,
    BenchResult,
    Turn,
    WorkerRunner,
    bench_feeds,
    environment,
    interleave,
    plan_turn,
    write_inputs,
)
from labkit.runtime.cost import cost, price_per_core_hour
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import usable_cpus

__all__ = [
    "EAGER",
    "MAX_EXTRA",
    "WARMUP_S",
    "EagerRunner",
    "against_eager",
    "benchmark",
    "cap_extra",
    "eager_runners",
    "eager_threads",
    "other_engines",
]

#: Configurations of other engines timed at handoff, at most (the rest: ``handoff tune``).
MAX_EXTRA = 2
#: A warm-up call of a feed stops being repeated once this many seconds went into it.
WARMUP_S = 1.0
#: An eager runner this many times slower than another at warm-up, on every feed, is left
#: out of the first attempt (see :func:`contenders`).
NEVER_FASTER = 3.0


def eager_name(threads: int) -> str:
    return f"{EAGER}-{threads}t"


class EagerRunner:
    """PyTorch eager at ``threads`` threads (torch's setting is per process: set per call).

    Warm-up runs ``warmup`` calls per feed, or fewer once ``warmup_s`` seconds went into a
    feed (at least one); ``warm_s`` holds the median warm-up call time per feed.
    """

    def __init__(
        self,
        spec: ModelSpec,
        feeds: Mapping[str, Batch],
        warmup: int,
        *,
        threads: int | None = None,
        name: str | None = None,
        warmup_s: float | None = None,
    ) -> None:
        self._spec = spec
        self._feeds = feeds
        self._threads = threads
        self.threads = threads or torch.get_num_threads()
        self.name = name or (eager_name(threads) if threads else EAGER)
        self.warm_s: dict[str, float] = {}
        for key in feeds:
            times: list[float] = []
            while len(times) < max(warmup, 1) and (warmup_s is None or sum(times) < warmup_s):
                times += self.run(key, 1)
            self.warm_s[key] = statistics.median(times)

    def run(self, cmd: str, n: int) -> list[float]:
        saved = torch.get_num_threads()
        if self._threads:
            torch.set_num_threads(self._threads)
        try:
            feed = self._feeds[cmd]
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                run_torch(self._spec.model, self._spec, feed)
                times.append(time.perf_counter() - t0)
            return times
        finally:
            torch.set_num_threads(saved)

    def close(self) -> None:
        pass


def eager_threads(threads: int) -> tuple[int, ...]:
    """The thread counts eager is timed at: N and 1 (once when N is 1)."""
    return (threads, 1) if threads > 1 else (1,)


def eager_runners(
    spec: ModelSpec,
    feeds: Mapping[str, Batch],
    threads: int,
    *,
    warmup: int,
    warmup_s: float | None = None,
) -> list[EagerRunner]:
    """One eager runner per count of :func:`eager_threads`; combine their rounds with
    ``BenchResult.add_fastest(EAGER, [r.name for r in runners])``."""
    return [
        EagerRunner(spec, feeds, warmup, threads=t, warmup_s=warmup_s)
        for t in eager_threads(threads)
    ]


def other_engines(passed: Sequence[Candidate]) -> list[Candidate]:
    """The configurations of the optional engines (e.g. OpenVINO) among ``passed``: those
    that passed parity at handoff (``labkit.pipeline.judge.passed_candidates``).

    Timed beside the variants so the report shows them (at most :data:`MAX_EXTRA` of them,
    :func:`cap_extra`); the bundle stays ONNX-only, and whether one may be used is decided
    by ``handoff tune`` on the deployment host. A configuration that computes wrong answers
    is never timed.
    """
    return [c for c in passed if c.engine != engines.DEFAULT_ENGINE]


def cap_extra(
    extra: Sequence[Candidate], exact_variant: str | None
) -> tuple[list[Candidate], list[Candidate]]:
    """(timed, left out): at most :data:`MAX_EXTRA`, those likeliest to be fast first
    (:func:`labkit.runtime.engines.speed_prior`)."""
    ordered = sorted(extra, key=lambda c: engines.speed_prior(c, c.variant != exact_variant))
    return ordered[:MAX_EXTRA], ordered[MAX_EXTRA:]


def _turns(runners: Sequence[Any], options: BenchOptions) -> dict[str, Turn]:
    return {
        r.name: plan_turn(
            r.warm_s,
            latency_s=options.latency_s,
            throughput_s=options.throughput_s,
            max_latency=options.latency_iters,
            max_throughput=options.throughput_iters,
        )
        for r in runners
    }


def benchmark(
    spec: ModelSpec,
    variants: Mapping[str, Path],
    example: Batch,
    options: BenchOptions,
    workdir: Path,
    on_round: Callable[[int, int], None] | None = None,
    extra: Sequence[Candidate] = (),
) -> dict[str, Any]:
    """Time eager, ``variants`` (ONNX Runtime) and ``extra`` (capped) interleaved.

    The report's ``eager_check`` is a :class:`~labkit.bundle.speed.Baseline`'s dict; when it
    is not reliable, no ``speedup`` is in the report.
    """
    threads = options.threads or usable_cpus()
    feeds = bench_feeds(example, options.throughput_batch)
    paths = write_inputs(workdir, feeds)
    timed_extra, left_out = cap_extra(extra, next(iter(variants), None))
    runners: list[Any] = []
    try:
        # Workers load and warm up while eager warms up here: the start-up is paid once.
        for name, path in variants.items():
            runners.append(
                WorkerRunner(
                    name, path, paths, threads=threads, warmup=options.warmup, warmup_s=WARMUP_S
                )
            )
        for c in timed_extra:
            runners.append(
                WorkerRunner(
                    c.label,
                    variants[c.variant],
                    paths,
                    threads=threads,
                    warmup=options.warmup,
                    engine=c.engine,
                    precision=c.precision,
                    warmup_s=WARMUP_S,
                )
            )
        eager = eager_runners(spec, feeds, threads, warmup=options.warmup, warmup_s=WARMUP_S)
        res, attempts = against_eager(eager, runners, options, threads, on_round=on_round)
    finally:
        for r in runners:
            r.close()
    return _report(res, attempts, variants, timed_extra, left_out, options, threads)


def against_eager(
    eager: Sequence[EagerRunner],
    others: Sequence[Any],
    options: BenchOptions,
    threads: int,
    *,
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[BenchResult, list[Baseline]]:
    """Time ``eager`` and ``others`` interleaved, with :data:`EAGER` the faster eager of
    each round; measured again once when eager was inconsistent. The result of the last
    attempt, and the check of each attempt (the last one says whether to trust it)."""
    turns = _turns([*eager, *others], options)
    checks: list[Baseline] = []
    for attempt in (1, 2):
        # A second attempt times every eager runner: the N-thread one may have collapsed.
        timed = contenders(eager) if attempt == 1 else list(eager)
        res = interleave(
            [*timed, *others],
            rounds=options.rounds,
            latency_iters=options.latency_iters,
            throughput_iters=options.throughput_iters,
            batch=options.throughput_batch,
            threads=threads,
            on_round=on_round,
            deadline=time.monotonic() + options.budget_s,
            turns=turns,
            min_rounds=min(3, options.rounds),
        )
        res.add_fastest(EAGER, [r.name for r in timed])
        used = tuple(r.threads for r in timed)
        checks.append(check_result(res, threads=used, attempts=attempt))
        if checks[-1].reliable:
            break
        time.sleep(QUIESCE_S)
    return res, checks


def contenders(eager: Sequence[EagerRunner]) -> list[EagerRunner]:
    """The eager runners that could be the faster one: those whose warm-up was not more
    than :data:`NEVER_FASTER` × slower than another's on both feeds.

    On 16 cores, BERT at 1 thread took ~10× as long per batch as at 16: timing it in every
    round would double the benchmark stage for a runner that cannot win unless the other
    collapses, which the consistency check catches (and the second attempt times both).
    """
    out = []
    for r in eager:
        beaten = any(
            o is not r and all(r.warm_s[k] > NEVER_FASTER * o.warm_s[k] for k in r.warm_s)
            for o in eager
        )
        if not beaten:
            out.append(r)
    return out


def _report(
    res: BenchResult,
    attempts: Sequence[Baseline],
    variants: Mapping[str, Path],
    extra: Sequence[Candidate],
    left_out: Sequence[Candidate],
    options: BenchOptions,
    threads: int,
) -> dict[str, Any]:
    baseline = attempts[-1]
    reliable = baseline.reliable
    eager_names = [n for n in res.round_p50 if n.startswith(EAGER + "-")]
    report: dict[str, Any] = {
        "baseline": EAGER,
        "method": (
            f"{res.rounds} interleaved rounds (at most {options.rounds}, "
            f"{options.budget_s:g} s); per round and runner, batch-1 calls and batch-"
            f"{options.throughput_batch} calls sized to about {options.latency_s:g} s and "
            f"{options.throughput_s:g} s; speed-ups are medians of per-round ratios against "
            f"{baseline.method}"
        ),
        EAGER: res.stats(EAGER),
        **{n: res.stats(n) for n in eager_names},
        "eager_check": baseline.to_dict(),
        "variants": {},
        "rounds": {n: res.rounds_of(n) for n in res.round_p50},
        "environment": environment(threads),
    }
    if len(attempts) > 1:
        report["first_attempt"] = attempts[0].to_dict()
    price = price_per_core_hour()

    def entry(name: str) -> dict[str, Any]:
        stats = res.stats(name)
        return {
            **stats,
            **({"speedup": res.speedup(name, EAGER)} if reliable else {}),
            "cost": cost(stats["throughput_per_s"], threads, price),
        }

    for name in variants:
        report["variants"][name] = entry(name)
    if extra:
        report["engines"] = {c.label: {**c.to_dict(), **entry(c.label)} for c in extra}
    if left_out:
        report["engines_not_timed"] = [c.label for c in left_out]
    return report
