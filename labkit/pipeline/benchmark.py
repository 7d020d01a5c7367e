"""Stage 5, benchmark: every variant against PyTorch eager, interleaved, on this machine.

ONNX variants each run in a fresh worker process. PyTorch eager runs in this process: an
``nn.Module`` defined in a notebook cannot be moved to another process without pickle, and
this process is where the researcher runs it anyway. Both get the same thread count, and
while one runner is timed the others are idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from labkit.pipeline.freeze import Batch, run_torch
from labkit.pipeline.options import BenchOptions
from labkit.registry import ModelSpec
from labkit.runtime import engines
from labkit.runtime.bench import WorkerRunner, bench_feeds, environment, interleave, write_inputs
from labkit.runtime.cost import cost, price_per_core_hour
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import usable_cpus

EAGER = "pytorch-eager"


class EagerRunner:
    name = EAGER

    def __init__(self, spec: ModelSpec, feeds: Mapping[str, Batch], warmup: int) -> None:
        self._spec = spec
        self._feeds = feeds
        for feed in feeds.values():
            for _ in range(warmup):
                run_torch(spec.model, spec, feed)

    def run(self, cmd: str, n: int) -> list[float]:
        feed = self._feeds[cmd]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run_torch(self._spec.model, self._spec, feed)
            times.append(time.perf_counter() - t0)
        return times

    def close(self) -> None:
        pass


def other_engines(passed: Sequence[Candidate]) -> list[Candidate]:
    """The configurations of the optional engines (e.g. OpenVINO) among ``passed``: those
    that passed parity at handoff (``labkit.pipeline.judge.passed_candidates``).

    Timed beside the variants so the report shows them; the bundle stays ONNX-only, and
    whether one may be used is decided by ``handoff tune`` on the deployment host. A
    configuration that computes wrong answers is never timed.
    """
    return [c for c in passed if c.engine != engines.DEFAULT_ENGINE]


def benchmark(
    spec: ModelSpec,
    variants: Mapping[str, Path],
    example: Batch,
    options: BenchOptions,
    workdir: Path,
    on_round: Callable[[int, int], None] | None = None,
    extra: Sequence[Candidate] = (),
) -> dict[str, Any]:
    threads = options.threads or usable_cpus()
    feeds = bench_feeds(example, options.throughput_batch)
    paths = write_inputs(workdir, feeds)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    runners: list[Any] = []
    try:
        runners.append(EagerRunner(spec, feeds, options.warmup))
        for name, path in variants.items():
            runners.append(WorkerRunner(name, path, paths, threads=threads, warmup=options.warmup))
        for c in extra:
            runners.append(
                WorkerRunner(
                    c.label,
                    variants[c.variant],
                    paths,
                    threads=threads,
                    warmup=options.warmup,
                    engine=c.engine,
                    precision=c.precision,
                )
            )
        res = interleave(
            runners,
            rounds=options.rounds,
            latency_iters=options.latency_iters,
            throughput_iters=options.throughput_iters,
            batch=options.throughput_batch,
            threads=threads,
            on_round=on_round,
        )
    finally:
        torch.set_num_threads(saved_threads)
        for r in runners:
            r.close()
    report: dict[str, Any] = {
        "baseline": EAGER,
        "method": (
            f"{options.rounds} interleaved rounds; per round {options.latency_iters} "
            f"batch-1 calls and {options.throughput_iters} batch-"
            f"{options.throughput_batch} calls per runner; speed-ups are medians of "
            "per-round ratios against PyTorch eager"
        ),
        EAGER: res.stats(EAGER),
        "variants": {},
        "environment": environment(threads),
    }
    price = price_per_core_hour()
    for name in variants:
        report["variants"][name] = {
            **res.stats(name),
            "speedup": res.speedup(name, EAGER),
            "cost": cost(res.stats(name)["throughput_per_s"], threads, price),
        }
    if extra:
        report["engines"] = {
            c.label: {
                **c.to_dict(),
                **res.stats(c.label),
                "speedup": res.speedup(c.label, EAGER),
                "cost": cost(res.stats(c.label)["throughput_per_s"], threads, price),
            }
            for c in extra
        }
    return report
