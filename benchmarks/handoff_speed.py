"""Handoff wall time, per stage, and the default variant vs PyTorch eager, per model.

    python benchmarks/handoff_speed.py [--models mlp,cnn,transformer,lstm,bert]
                                       [--rounds 5] [--json out.json]

For each model: a real handoff with the default options (export, parity, quantize,
benchmark), timed; each stage's wall time comes from the manifest
(``provenance.stage_seconds``). The benchmark stage times PyTorch eager (the faster of all
cores and 1 thread, per round) and every variant side by side, interleaved, ONNX variants
each in a fresh process; speed-ups are medians of per-round ratios, and none is shown when
eager's measurement was inconsistent. Target (issue 14): the BERT-class model (6 layers,
d=384, seq 128) hands off in ≤ 120 s on a 2-core machine that is otherwise idle, ≤ 30 s
on 16 cores.
"""

from __future__ import annotations

import argparse
import json
import math
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

from labkit.pipeline import STAGES, BenchOptions, HandoffOptions, run  # noqa: E402

MODELS = {
    "mlp": zoo.build_mlp,
    "cnn": zoo.build_cnn,
    "transformer": zoo.build_transformer,
    "lstm": zoo.build_lstm,
    "bert": zoo.build_bert,
    "resnet18": zoo.build_resnet18,
}
DEFAULT_MODELS = "mlp,cnn,transformer,lstm,bert"


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def handoff(key: str, store: str, rounds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    spec = MODELS[key]()
    res = run(spec, store=store, options=HandoffOptions(bench=BenchOptions(rounds=rounds)))
    wall = time.perf_counter() - t0
    m = res.manifest
    baseline = m.baseline
    return {
        "model": key,
        "handoff_s": round(wall, 1),
        "stage_seconds": dict(m.provenance.stage_seconds or {}),
        "default_variant": m.default_variant,
        "default_rule": m.default_rule.to_dict() if m.default_rule else None,
        "eager_reliable": bool(baseline and baseline.reliable),
        "eager_check": baseline.to_dict() if baseline else None,
        "eager_p50_ms": (res.benchmark or {}).get("pytorch-eager", {}).get("p50_ms"),
        "variants": [
            {
                "name": v.name,
                "parity_passed": (v.parity or {}).get("passed"),
                "max_rel": (v.parity or {}).get("max_rel"),
                "p50_ms": (v.benchmark or {}).get("p50_ms"),
                "rows_s": (v.benchmark or {}).get("throughput_per_s"),
                "speedup": v.speedup,
            }
            for v in m.variants
        ],
        "rejected": [r["name"] for r in res.rejected],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=BenchOptions().rounds)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    load = [open("/proc/loadavg").read().split()[0]]
    with tempfile.TemporaryDirectory(prefix="labkit-bench-store-") as store:
        for key in args.models.split(","):
            rows.append(handoff(key, store, args.rounds))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    load.append(open("/proc/loadavg").read().split()[0])
    stages = [s for s in STAGES if s != "bundle"]
    print(f"load average before / after: {load[0]} / {load[1]}\n")
    print("| model | handoff s | " + " | ".join(stages) + " | default | × batch 1 | × batch 64 |")
    print("|---|---|" + "---|" * len(stages) + "---|---|---|")
    for r in rows:
        default = next(v for v in r["variants"] if v["name"] == r["default_variant"])
        sp = default["speedup"]
        x = (
            (f"{sp['p50']:.2f}×", f"{sp['throughput']:.2f}×")
            if sp
            else ("unreliable", "unreliable")
        )
        print(
            f"| {r['model']} | {r['handoff_s']:.1f} | "
            + " | ".join(f"{r['stage_seconds'].get(s, 0):.1f}" for s in stages)
            + f" | `{r['default_variant']}` | {x[0]} | {x[1]} |"
        )
    print("\nDefault variant, and why:")
    for r in rows:
        print(f"- {r['model']}: {(r['default_rule'] or {}).get('reason', '–')}")
    timed = [r for r in rows if r["eager_reliable"]]
    defaults = [
        next(v for v in r["variants"] if v["name"] == r["default_variant"])["speedup"]
        for r in timed
    ]
    g_p50 = geomean([d["p50"] for d in defaults])
    g_thr = geomean([d["throughput"] for d in defaults])
    print(
        f"\nGeometric mean over the {len(timed)} model(s) whose eager measurement was "
        f"consistent: batch-1 {g_p50:.2f}×, batch 64 {g_thr:.2f}×"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "load": load, "geomean_p50": g_p50, "geomean_thr": g_thr})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
