"""int8 for transformers: the static QDQ recipe against OpenVINO bf16 and ORT int8-dynamic.

    python benchmarks/int8_transformer.py [--layers 6 --hidden 384 --seq 128]
                                          [--batch 16] [--rounds 7] [--min-top1 0.9]
                                          [--configs LABEL,...] [--json out.json]

A Hugging Face ``BertForSequenceClassification`` (random weights, from a config; dict
inputs, dynamic sequence axis) is handed off on this machine with quantization on and no
benchmark stage. Then every engine configuration that *passed* parity at handoff
(``Variant.checks``) is timed, each in its own worker process, interleaved (A B C … C B A …
rounds, a quiet gap between turns): batch-1 latency and batch-``--batch`` throughput at
``--seq`` tokens. Ratios are medians of per-round ratios against ``fp32/openvino-bf16``
(the fastest configuration without int8, measured so far). Rejected configurations are
listed with their reasons and not timed.

The weights are random, so the logits nearly tie and top-1 agreement is a stress signal
rather than an accuracy estimate (docs/performance.md): the accuracy budget here is
``--min-top1`` (default 0.9), and each configuration's measured max relative error and
top-1 agreement are printed beside its speed.
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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import labkit  # noqa: E402
from labkit.bundle import verify  # noqa: E402
from labkit.pipeline import Budget, HandoffOptions, run  # noqa: E402
from labkit.runtime.bench import WorkerRunner, interleave, write_inputs  # noqa: E402
from labkit.runtime.machine import cpu_info, physical_cores  # noqa: E402

BASELINE = "fp32/openvino-bf16"


def bert_spec(layers: int, hidden: int, seq: int) -> labkit.ModelSpec:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=8000,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=max(1, hidden // 64),
            intermediate_size=4 * hidden,
            max_position_embeddings=max(512, seq),
            num_labels=3,
        )
    ).eval()
    ids = torch.randint(0, 8000, (32, seq))
    mask = torch.ones(32, seq, dtype=torch.int64)
    return labkit.register(
        model,
        {"input_ids": ids[:2], "attention_mask": mask[:2]},
        name="bert-int8",
        task="classification",
        dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}},
        parity_inputs=[{"input_ids": ids, "attention_mask": mask}],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-top1", type=float, default=0.9)
    ap.add_argument("--configs", help="comma-separated labels to time (default: all passed)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    threads = physical_cores()
    with tempfile.TemporaryDirectory() as tmp_str:
        tmp = Path(tmp_str)
        t0 = time.monotonic()
        result = run(
            bert_spec(args.layers, args.hidden, args.seq),
            store=tmp / "store",
            options=HandoffOptions(
                benchmark=False,
                parity_batch_sizes=(1, 3),
                budget=Budget(min_top1_agreement=args.min_top1),
            ),
        )
        handoff_s = time.monotonic() - t0
        m = verify(result.path).manifest
        print(f"handoff {handoff_s:.0f} s; variants {[v.name for v in m.variants]}")
        for r in result.rejected:
            print(f"  left out {r['name']}: {r['reason'][:200]}")
        passed = [(v, c) for v in m.variants for c in v.passed()]
        if args.configs:
            wanted = set(args.configs.split(","))
            passed = [(v, c) for v, c in passed if f"{v.name}/{c.config}" in wanted]
        for v in m.variants:
            for c in v.rejected():
                print(f"  rejected {v.name}/{c.config}: {(c.reason or '')[:200]}")
        rng = np.random.default_rng(1)
        ids = rng.integers(0, 8000, (args.batch, args.seq)).astype(np.int64)
        feeds = {
            "latency": {"input_ids": ids[:1], "attention_mask": np.ones((1, args.seq), np.int64)},
            "throughput": {"input_ids": ids, "attention_mask": np.ones_like(ids)},
        }
        inputs = write_inputs(tmp, feeds)
        runners = []
        try:
            for v, c in passed:
                runners.append(
                    WorkerRunner(
                        f"{v.name}/{c.config}",
                        result.path / v.file,
                        inputs,
                        threads=threads,
                        warmup=2,
                        engine=c.engine,
                        precision=c.precision,
                    )
                )
            res = interleave(
                runners,
                rounds=args.rounds,
                latency_iters=10,
                throughput_iters=2,
                batch=args.batch,
                threads=threads,
                on_round=lambda i, n: print(f"  round {i}/{n}", flush=True),
            )
        finally:
            for r in runners:
                r.close()
    checks = {f"{v.name}/{c.config}": c for v, c in passed}
    baseline = BASELINE if BASELINE in checks else runners[0].name
    rows: list[dict[str, Any]] = []
    for r in runners:
        stats, sp = res.stats(r.name), res.speedup(r.name, baseline)
        c = checks[r.name]
        rows.append(
            {
                "configuration": r.name,
                "p50_ms": stats["p50_ms"],
                "rows_per_s": stats["throughput_per_s"],
                "vs_bf16_p50": sp["p50"],
                "vs_bf16_throughput": sp["throughput"],
                "max_rel": c.max_rel,
                "metric_value": c.metric_value,
            }
        )
    cpu = cpu_info()
    print(
        f"\n{cpu.get('model')} ({', '.join(cpu.get('flags', []))}), {threads} threads; "
        f"BERT {args.layers}L d={args.hidden} seq {args.seq}; batch-1 latency and "
        f"batch-{args.batch} throughput; medians of {args.rounds} interleaved rounds; ratios "
        f"vs {baseline}; handoff {handoff_s:.0f} s"
    )
    print(
        f"{'configuration':<34}{'p50 ms':>9}{'rows/s':>9}{'x bf16 b1':>11}"
        f"{'x bf16 b' + str(args.batch):>12}{'max rel':>10}{'top-1':>7}"
    )
    for row in sorted(rows, key=lambda r: -r["vs_bf16_throughput"]):
        print(
            f"{row['configuration']:<34}{row['p50_ms']:>9.2f}{row['rows_per_s']:>9.1f}"
            f"{row['vs_bf16_p50']:>11.2f}{row['vs_bf16_throughput']:>12.2f}"
            f"{row['max_rel'] or 0:>10.3g}{row['metric_value'] or 0:>7.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"handoff_s": handoff_s, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
