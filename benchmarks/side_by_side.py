"""A bundle's configurations timed side by side with PyTorch eager, for the benchmark scripts.

Eager is the handoff's own baseline (``labkit.pipeline.benchmark.against_eager``): the faster
of eager at all cores and at 1 thread in each round, checked for consistency and measured
again once when it was not. Each configuration runs in its own worker process; speed-ups
are medians of per-round ratios.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labkit.bundle import verify
from labkit.pipeline import BenchOptions
from labkit.pipeline.benchmark import EAGER, WARMUP_S, against_eager, eager_runners
from labkit.registry import ModelSpec
from labkit.runtime.bench import WorkerRunner, bench_feeds, write_inputs
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import physical_cores

BATCH = 64


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def time_configs(
    spec: ModelSpec,
    bundle: Path,
    configs: Mapping[str, Candidate],
    *,
    rounds: int = 5,
    budget_s: float = 60.0,
    batch: int = BATCH,
) -> dict[str, Any]:
    """Eager and ``configs`` (name → candidate) of ``bundle``, interleaved on the golden
    inputs: stats, × the faster eager at batch 1 and ``batch``, and eager's check."""
    vb = verify(bundle)
    m = vb.manifest
    cores = physical_cores()
    options = BenchOptions(rounds=rounds, throughput_batch=batch, warmup=2, budget_s=budget_s)
    feeds = bench_feeds(vb.read_npz(m.golden.inputs), batch)
    workers: list[WorkerRunner] = []
    with tempfile.TemporaryDirectory(prefix="labkit-side-by-side-") as tmp:
        paths = write_inputs(Path(tmp), feeds)
        try:
            for name, c in configs.items():
                model = Path(tmp) / f"{c.variant}.onnx"
                if not model.exists():
                    model.write_bytes(vb.read(m.variant(c.variant).file))
                workers.append(
                    WorkerRunner(
                        name,
                        model,
                        paths,
                        threads=c.threads,
                        warmup=2,
                        engine=c.engine,
                        precision=c.precision,
                        streams=c.streams,
                        warmup_s=WARMUP_S,
                    )
                )
            eager = eager_runners(spec, feeds, cores, warmup=2, warmup_s=WARMUP_S)
            res, checks = against_eager(eager, workers, options, cores)
        finally:
            for w in workers:
                w.close()
    out: dict[str, Any] = {
        "rounds": res.rounds,
        "eager": res.stats(EAGER),
        "eager_by_threads": {r.name: res.stats(r.name) for r in eager if r.name in res.round_p50},
        "eager_check": checks[-1].to_dict(),
        "eager_attempts": [c.to_dict() for c in checks],
        "configs": {},
    }
    all_cores = eager[0].name if eager[0].name in res.round_p50 else EAGER
    for name, c in configs.items():
        sp = res.speedup(name, EAGER)
        out["configs"][name] = {
            "label": c.label,
            **res.stats(name),
            "x_p50": sp["p50"],
            "x_thr": sp["throughput"],
            "x_p50_eager_all_cores": res.speedup(name, all_cores)["p50"],
            "x_thr_eager_all_cores": res.speedup(name, all_cores)["throughput"],
        }
    return out
