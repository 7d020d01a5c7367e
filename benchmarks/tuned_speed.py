"""PyTorch eager vs the untuned default vs tuned (``handoff tune``), measured in one run.

    python benchmarks/tuned_speed.py [--models mlp,cnn,transformer,lstm,bert,resnet18]
                                     [--rounds 5] [--budget-s 60] [--json out.json]

For each model: a real handoff (export, parity, fusion, quantize; a quick benchmark picks
the default variant), then ``tune`` twice on the bundle (objective latency, then
throughput; the default budget each), then one interleaved run (A B C D A B C D …) of
PyTorch eager (in this process), the untuned default (``runtime.load()`` without a profile:
default variant, ONNX Runtime, threads from the model's cost) and the two tuned candidates,
each ONNX runner in its own process. Batch-1 latency and batch-64 throughput; speed-ups
are medians of per-round ratios against eager. Tuned latency is the latency-tuned
candidate's, tuned throughput the throughput-tuned one's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
import zoo  # noqa: E402

import labkit.runtime as rt  # noqa: E402
from labkit.bundle import verify  # noqa: E402
from labkit.pipeline import BenchOptions, HandoffOptions, run  # noqa: E402
from labkit.pipeline.benchmark import EAGER, EagerRunner  # noqa: E402
from labkit.runtime.bench import WorkerRunner, bench_feeds, interleave, write_inputs  # noqa: E402
from labkit.runtime.engines import Candidate  # noqa: E402
from labkit.runtime.machine import cpu_info, physical_cores  # noqa: E402
from labkit.runtime.tune import tune  # noqa: E402

MODELS = {
    "mlp": zoo.build_mlp,
    "cnn": zoo.build_cnn,
    "transformer": zoo.build_transformer,
    "lstm": zoo.build_lstm,
    "bert": zoo.build_bert,
    "resnet18": zoo.build_resnet18,
}
BATCH = 64
EAGER_1T = "pytorch-eager-1t"


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


class EagerAt(EagerRunner):
    """PyTorch eager at a given thread count (torch's setting is per process)."""

    def __init__(self, name: str, threads: int, *args: Any, **kwargs: Any) -> None:
        self.name, self._threads = name, threads
        torch.set_num_threads(threads)
        super().__init__(*args, **kwargs)

    def run(self, cmd: str, n: int) -> list[float]:
        torch.set_num_threads(self._threads)
        return super().run(cmd, n)


def best_eager(r: Any, name: str, metric: str) -> float:
    """Median per-round speed-up of ``name`` over the faster eager runner of each round."""
    import statistics

    if metric == "p50":
        return statistics.median(
            min(a, b) / c
            for a, b, c in zip(r.round_p50[EAGER], r.round_p50[EAGER_1T], r.round_p50[name])
        )
    return statistics.median(
        c / max(a, b)
        for a, b, c in zip(
            r.round_throughput[EAGER], r.round_throughput[EAGER_1T], r.round_throughput[name]
        )
    )


def measure(key: str, store: str, rounds: int, budget_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    spec = MODELS[key]()
    res = run(spec, store=store, options=HandoffOptions(bench=BenchOptions.quick()))
    t_handoff = time.perf_counter() - t0
    bundle = Path(res.path)
    tuned = {}
    for objective in ("latency", "throughput"):
        t1 = time.perf_counter()
        doc = tune(bundle, objective=objective, budget_s=budget_s, write=False)
        tuned[objective] = (
            Candidate.from_dict(doc["chosen"]["candidate"]),
            round(time.perf_counter() - t1, 1),
        )
    vb = verify(bundle)
    m = vb.manifest
    cores = physical_cores()
    untuned = rt.load(bundle, profile=None).candidate  # exactly what load() does untuned
    golden = vb.read_npz(m.golden.inputs)
    feeds = bench_feeds(golden, BATCH)
    runners: list[Any] = []
    saved = torch.get_num_threads()
    torch.set_num_threads(cores)
    with tempfile.TemporaryDirectory(prefix="labkit-tuned-") as tmp:
        paths = write_inputs(Path(tmp), feeds)
        try:
            runners.append(EagerAt(EAGER, cores, spec, feeds, warmup=2))
            runners.append(EagerAt(EAGER_1T, 1, spec, feeds, warmup=2))
            named = {
                "untuned": untuned,
                "tuned-latency": tuned["latency"][0],
                "tuned-throughput": tuned["throughput"][0],
            }
            for name, c in named.items():
                model = Path(tmp) / f"{name}.onnx"
                model.write_bytes(vb.read(m.variant(c.variant).file))
                runners.append(
                    WorkerRunner(
                        name,
                        model,
                        paths,
                        threads=c.threads,
                        warmup=2,
                        engine=c.engine,
                        precision=c.precision,
                        streams=c.streams,
                    )
                )
            r = interleave(
                runners,
                rounds=rounds,
                latency_iters=20,
                throughput_iters=2,
                batch=BATCH,
                threads=cores,
            )
        finally:
            torch.set_num_threads(saved)
            for x in runners:
                x.close()
    sp = {n: r.speedup(n, EAGER) for n in ("untuned", "tuned-latency", "tuned-throughput")}
    best = {
        n: {"p50": best_eager(r, n, "p50"), "throughput": best_eager(r, n, "throughput")}
        for n in ("untuned", "tuned-latency", "tuned-throughput")
    }
    return {
        "model": key,
        "default_variant": m.default_variant,
        "rejected": [x["name"] for x in res.rejected],
        "untuned": untuned.label,
        "tuned_latency": tuned["latency"][0].label,
        "tuned_throughput": tuned["throughput"][0].label,
        "tune_s": {k: v[1] for k, v in tuned.items()},
        "handoff_s": round(t_handoff, 1),
        "eager_p50_ms": r.stats(EAGER)["p50_ms"],
        "eager_rows_s": r.stats(EAGER)["throughput_per_s"],
        "untuned_p50": sp["untuned"]["p50"],
        "untuned_thr": sp["untuned"]["throughput"],
        "tuned_p50": sp["tuned-latency"]["p50"],
        "tuned_thr": sp["tuned-throughput"]["throughput"],
        # Tuned vs untuned, from the same rounds (ratio of the ratios' medians is not the
        # median of ratios; this is the per-round one).
        "tuned_vs_untuned_p50": r.speedup("tuned-latency", "untuned")["p50"],
        "tuned_vs_untuned_thr": r.speedup("tuned-throughput", "untuned")["throughput"],
        "rounds": r.rounds,
        # Against the faster of eager at all cores and eager at 1 thread, round by round:
        # on a shared, overloaded machine torch's multi-threaded eager can collapse.
        "eager_1t_p50_ms": r.stats(EAGER_1T)["p50_ms"],
        "eager_1t_rows_s": r.stats(EAGER_1T)["throughput_per_s"],
        "best_untuned_p50": best["untuned"]["p50"],
        "best_untuned_thr": best["untuned"]["throughput"],
        "best_tuned_p50": best["tuned-latency"]["p50"],
        "best_tuned_thr": best["tuned-throughput"]["throughput"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="labkit-tuned-store-") as store:
        for key in args.models.split(","):
            rows.append(measure(key, store, args.rounds, args.budget_s))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cpu = cpu_info()
    print(
        f"CPU: {cpu['model']} ({', '.join(cpu['flags'])}), {physical_cores()} cores; "
        f"{args.rounds} interleaved rounds; batch 1 latency and batch {BATCH} throughput, "
        "x = speed-up over PyTorch eager\n"
    )
    print(
        "| model | eager p50 ms | eager rows/s | untuned | x p50 | x thr | tuned for latency | "
        "x p50 | tuned for throughput | x thr | tune s (lat/thr) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['eager_p50_ms']:.3f} | {r['eager_rows_s']:.0f} | "
            f"`{r['untuned']}` | {r['untuned_p50']:.2f}× | {r['untuned_thr']:.2f}× | "
            f"`{r['tuned_latency']}` | {r['tuned_p50']:.2f}× | `{r['tuned_throughput']}` | "
            f"{r['tuned_thr']:.2f}× | {r['tune_s']['latency']:.0f}/"
            f"{r['tune_s']['throughput']:.0f} |"
        )
    out = {
        "rows": rows,
        "geomean_untuned_p50": geomean([r["untuned_p50"] for r in rows]),
        "geomean_untuned_thr": geomean([r["untuned_thr"] for r in rows]),
        "geomean_tuned_p50": geomean([r["tuned_p50"] for r in rows]),
        "geomean_tuned_thr": geomean([r["tuned_thr"] for r in rows]),
    }
    print("\nAgainst the faster of eager at all cores / eager at 1 thread, per round:\n")
    print(
        "| model | eager 1t p50 ms | eager 1t rows/s | untuned x p50 | x thr | tuned x p50 | "
        "x thr |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['eager_1t_p50_ms']:.3f} | {r['eager_1t_rows_s']:.0f} | "
            f"{r['best_untuned_p50']:.2f}× | {r['best_untuned_thr']:.2f}× | "
            f"{r['best_tuned_p50']:.2f}× | {r['best_tuned_thr']:.2f}× |"
        )
    for k in ("untuned_p50", "untuned_thr", "tuned_p50", "tuned_thr"):
        out[f"geomean_best_{k}"] = geomean([r[f"best_{k}"] for r in rows])
    print(
        f"\nGeometric mean vs the faster eager: untuned {out['geomean_best_untuned_p50']:.2f}× / "
        f"{out['geomean_best_untuned_thr']:.2f}×; tuned {out['geomean_best_tuned_p50']:.2f}× / "
        f"{out['geomean_best_tuned_thr']:.2f}×"
    )
    print(
        f"\nGeometric mean over {len(rows)} models: untuned {out['geomean_untuned_p50']:.2f}× "
        f"batch-1 / {out['geomean_untuned_thr']:.2f}× throughput; tuned "
        f"{out['geomean_tuned_p50']:.2f}× / {out['geomean_tuned_thr']:.2f}×"
    )
    worst = min(min(r["tuned_vs_untuned_p50"], r["tuned_vs_untuned_thr"]) for r in rows)
    print(f"Tuned vs untuned, worst per-model ratio (same rounds): {worst:.2f}×")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
