"""PyTorch eager vs the untuned default vs tuned (``handoff tune``), measured in one run.

    python benchmarks/tuned_speed.py [--models mlp,cnn,transformer,lstm,bert,resnet18]
                                     [--rounds 5] [--budget-s 60] [--json out.json]

For each model: a real handoff (export, parity, fusion, quantize; a quick benchmark picks
the default variant), then ``tune`` twice on the bundle (objective latency, then
throughput), then one interleaved run (``side_by_side.time_configs``) of PyTorch eager (in
this process, at all cores and at 1 thread: the baseline is the faster of the two in each
round, as in the handoff), the untuned default (``runtime.load()`` without a profile) and
the two tuned candidates, each in its own process. Batch-1 latency and batch-64 throughput;
speed-ups are medians of per-round ratios. Tuned latency is the latency-tuned candidate's,
tuned throughput the throughput-tuned one's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
# Worker processes (benchmark, tune) import labkit too: from this checkout, installed or not.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import zoo  # noqa: E402
from side_by_side import BATCH, geomean, time_configs  # noqa: E402

import labkit.runtime as rt  # noqa: E402
from labkit.pipeline import BenchOptions, HandoffOptions, run  # noqa: E402
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
    untuned = rt.load(bundle, profile=None).candidate  # exactly what load() does untuned
    r = time_configs(
        spec,
        bundle,
        {
            "untuned": untuned,
            "tuned-latency": tuned["latency"][0],
            "tuned-throughput": tuned["throughput"][0],
        },
        rounds=rounds,
    )
    c = r["configs"]
    return {
        "model": key,
        "default_variant": res.default_variant,
        "rejected": [x["name"] for x in res.rejected],
        "untuned": untuned.label,
        "tuned_latency": tuned["latency"][0].label,
        "tuned_throughput": tuned["throughput"][0].label,
        "tune_s": {k: v[1] for k, v in tuned.items()},
        "handoff_s": round(t_handoff, 1),
        "rounds": r["rounds"],
        "eager_reliable": r["eager_check"]["reliable"],
        "eager_check": r["eager_check"],
        "eager_p50_ms": r["eager"]["p50_ms"],
        "eager_rows_s": r["eager"]["throughput_per_s"],
        # against the faster eager of each round (the handoff's baseline)
        "untuned_p50": c["untuned"]["x_p50"],
        "untuned_thr": c["untuned"]["x_thr"],
        "tuned_p50": c["tuned-latency"]["x_p50"],
        "tuned_thr": c["tuned-throughput"]["x_thr"],
        # against eager at all cores only (overstates the gains on a busy machine)
        "allcores_untuned_p50": c["untuned"]["x_p50_eager_all_cores"],
        "allcores_untuned_thr": c["untuned"]["x_thr_eager_all_cores"],
        "allcores_tuned_p50": c["tuned-latency"]["x_p50_eager_all_cores"],
        "allcores_tuned_thr": c["tuned-throughput"]["x_thr_eager_all_cores"],
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
        f"{args.rounds} interleaved rounds at most; batch 1 latency and batch {BATCH} "
        "throughput, x = speed-up over the faster of PyTorch eager at all cores and at 1 "
        "thread, per round\n"
    )
    print(
        "| model | eager p50 ms | eager rows/s | eager consistent | untuned | x p50 | x thr | "
        "tuned for latency | x p50 | tuned for throughput | x thr | tune s (lat/thr) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['eager_p50_ms']:.3f} | {r['eager_rows_s']:.0f} | "
            f"{'yes' if r['eager_reliable'] else 'NO'} | `{r['untuned']}` | "
            f"{r['untuned_p50']:.2f}× | {r['untuned_thr']:.2f}× | `{r['tuned_latency']}` | "
            f"{r['tuned_p50']:.2f}× | `{r['tuned_throughput']}` | {r['tuned_thr']:.2f}× | "
            f"{r['tune_s']['latency']:.0f}/{r['tune_s']['throughput']:.0f} |"
        )
    out: dict[str, Any] = {"rows": rows}
    for k in ("untuned_p50", "untuned_thr", "tuned_p50", "tuned_thr"):
        out[f"geomean_{k}"] = geomean([r[k] for r in rows])
        out[f"geomean_allcores_{k}"] = geomean([r[f"allcores_{k}"] for r in rows])
    print(
        f"\nGeometric mean over {len(rows)} models: untuned {out['geomean_untuned_p50']:.2f}× "
        f"batch-1 / {out['geomean_untuned_thr']:.2f}× throughput; tuned "
        f"{out['geomean_tuned_p50']:.2f}× / {out['geomean_tuned_thr']:.2f}×"
    )
    print(
        f"Against eager at all cores only: untuned {out['geomean_allcores_untuned_p50']:.2f}× "
        f"/ {out['geomean_allcores_untuned_thr']:.2f}×; tuned "
        f"{out['geomean_allcores_tuned_p50']:.2f}× / {out['geomean_allcores_tuned_thr']:.2f}×"
    )
    if not all(r["eager_reliable"] for r in rows):
        print("NOTE: eager was not measured consistently for some models (column 4).")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
