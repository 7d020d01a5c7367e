"""``handoff tune``: pick how this host runs a bundle, write the host profile, show why."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_tune_parser(sub: argparse._SubParsersAction) -> None:
    from labkit.runtime.cost import PRICE_ENV
    from labkit.runtime.tune import DEFAULT_BUDGET_S, OBJECTIVES

    p = sub.add_parser(
        "tune",
        help="try engines, precisions, threads and streams on this host "
        "within the bundle's own golden checks; write a host profile that "
        "load() and serve use",
    )
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="latency",
        help="what to optimise: batch-1 latency (default) or batch throughput",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        metavar="S",
        help=f"time budget in seconds (default {DEFAULT_BUDGET_S:g})",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=64,
        help="throughput batch size (smaller for big models, to fit the budget)",
    )
    p.add_argument(
        "--engine",
        action="append",
        dest="engines",
        metavar="NAME",
        help="only this engine (repeatable): onnxruntime, openvino",
    )
    p.add_argument(
        "--price-per-core-hour",
        type=float,
        default=None,
        metavar="PRICE",
        help=f"show the cost per million inferences (default ${PRICE_ENV})",
    )
    add_profile_dir_argument(p)
    p.add_argument("--dry-run", action="store_true", help="measure, but write no profile")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    p.set_defaults(func=cmd_tune)


def add_profile_dir_argument(p: argparse.ArgumentParser) -> None:
    """``--profile-dir``: the one wording for every command that reads or writes profiles."""
    from labkit.runtime.profile import PROFILE_DIR_ENV, TUNING_DIR

    p.add_argument(
        "--profile-dir",
        metavar="DIR",
        default=None,
        help=f"where host profiles live (default: ${PROFILE_DIR_ENV}, else "
        f"STORE/{TUNING_DIR}); use it when the store is read-only",
    )


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def print_profile(doc: dict[str, Any]) -> None:
    h = doc["host"]
    ch = doc["chosen"]
    print(
        f"{doc['bundle']['name']} {doc['bundle']['version']} on {h['model']} "
        f"({h['physical_cores']} cores; {', '.join(h['flags'])}); objective "
        f"{doc['objective']}, {doc['elapsed_s']:.1f} s"
    )
    print(
        f"  chosen: {ch['label']}  ({ch['vs_default']['p50']:.2f}x batch-1 latency, "
        f"{ch['vs_default']['throughput']:.2f}x throughput vs the untuned default "
        f"{doc['default']['label']})"
    )
    print(
        f"  {'candidate':<40}{'p50 ms':>9}{'p99 ms':>9}{'rows/s':>12}{'/core/s':>12}"
        f"{'$/1M':>10}  vs default"
    )
    for r in [ch, *doc["runners_up"]]:
        s, c, v = r["stats"], r["cost"], r["vs_default"]
        print(
            f"  {r['label']:<40}{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}"
            f"{s['throughput_per_s']:>12.0f}{c['per_core_per_s']:>12.0f}"
            f"{_money(c['cost_per_million']):>10}  {v['p50']:.2f}x / {v['throughput']:.2f}x"
        )
    for g in doc["golden_checks"]:
        if g["check"] != "pass":
            print(f"  left out {g['label']}: golden check {g['check']}: {g.get('reason')}")
    search = doc.get("search") or {}
    if search:
        rungs = ", ".join(f"{r['rung']} {r['reached']}/{r['arms']}" for r in search["rungs"])
        print(
            f"  search: {rungs} configurations reached; {search['workers_started']} worker "
            f"processes, at most {search['workers_peak']} at once (limit {search['max_workers']})"
        )
    print(f"  {doc['method']}")
    if doc.get("path"):
        print(f"  profile: {doc['path']}")


def cmd_tune(args: argparse.Namespace) -> int:
    from labkit.runtime.tune import tune

    def say(msg: str) -> None:
        print(f"tune: {msg}", file=sys.stderr, flush=True)

    doc = tune(
        args.bundle,
        objective=args.objective,
        budget_s=args.budget_s,
        batch=args.batch,
        engine_names=args.engines,
        price_per_core_hour=args.price_per_core_hour,
        write=not args.dry_run,
        progress=None if args.json else say,
        profile_dir=args.profile_dir,
    )
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_profile(doc)
    return 0
