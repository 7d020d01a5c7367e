"""Default variant vs PyTorch eager for the reference models, measured in one run.

    python benchmarks/handoff_speed.py [--rounds 7] [--models mlp,cnn,transformer,lstm]

For each model: a real handoff (export, parity, quantize, benchmark). The benchmark stage
times PyTorch eager and every variant side by side, interleaved (A B A B …), ONNX variants
each in a fresh process; speed-ups are medians of per-round ratios. The table shows the
default variant (the fastest that passed its accuracy budget) and the geometric means.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import zoo  # noqa: E402

from labkit.pipeline import BenchOptions, HandoffOptions, run  # noqa: E402

MODELS = {
    "mlp": zoo.build_mlp,
    "cnn": zoo.build_cnn,
    "transformer": zoo.build_transformer,
    "lstm": zoo.build_lstm,
}


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-store-") as store:
        for key in args.models.split(","):
            t0 = time.perf_counter()
            spec = MODELS[key]()
            res = run(
                spec, store=store, options=HandoffOptions(bench=BenchOptions(rounds=args.rounds))
            )
            eager = res.benchmark["pytorch-eager"]
            for v in res.variants:
                rows.append(
                    {
                        "model": key,
                        "variant": v["name"],
                        "default": v["name"] == res.default_variant,
                        "parity_passed": v["parity"]["passed"],
                        "max_rel": v["parity"]["max_rel"],
                        "metric": v["parity"]["metric"],
                        "metric_value": v["parity"]["metric_value"],
                        "eager_p50_ms": eager["p50_ms"],
                        "p50_ms": v["benchmark"]["p50_ms"],
                        "p99_ms": v["benchmark"]["p99_ms"],
                        "eager_rows_s": eager["throughput_per_s"],
                        "rows_s": v["benchmark"]["throughput_per_s"],
                        "speedup_p50": v["speedup"]["p50"],
                        "speedup_throughput": v["speedup"]["throughput"],
                        "rejected": [r["name"] for r in res.rejected],
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
    env = res.benchmark["environment"]
    print(
        f"CPU: {env['cpu']['model']} ({', '.join(env['cpu']['flags'])}), "
        f"{env['threads']} threads; {args.rounds} interleaved rounds per model\n"
    )
    head = (
        f"{'model':<12}{'variant':<14}{'parity':<8}{'max rel':>9}{'metric':>8}"
        f"{'eager p50':>11}{'p50 ms':>9}{'x p50':>7}{'eager/s':>10}{'rows/s':>10}"
        f"{'x thr':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = "*" if r["default"] else " "
        print(
            f"{r['model']:<12}{r['variant'] + mark:<14}"
            f"{'pass' if r['parity_passed'] else 'FAIL':<8}{r['max_rel']:>9.1e}"
            f"{r['metric_value']:>8.3f}{r['eager_p50_ms']:>11.3f}{r['p50_ms']:>9.3f}"
            f"{r['speedup_p50']:>6.2f}x{r['eager_rows_s']:>10.0f}{r['rows_s']:>10.0f}"
            f"{r['speedup_throughput']:>6.2f}x"
        )
    defaults = [r for r in rows if r["default"]]
    g_p50 = geomean([r["speedup_p50"] for r in defaults])
    g_thr = geomean([r["speedup_throughput"] for r in defaults])
    print(
        f"\n* default variant. Geometric mean over the default variants: batch-1 p50 "
        f"{g_p50:.2f}x, throughput {g_thr:.2f}x, both {math.sqrt(g_p50 * g_thr):.2f}x; "
        f"all shipped variants within budget: "
        f"{all(r['parity_passed'] for r in rows)}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "geomean_p50": g_p50, "geomean_throughput": g_thr}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
