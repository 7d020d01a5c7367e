"""``handoff export`` flags → HandoffOptions, in one place for scripts and notebooks.

The flags travel as a JSON-safe dict because a notebook's handoff runs in its kernel.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError


def _fraction(flag: str, value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise LabkitError(f"{flag} {value} must be between 0 and 1, e.g. {flag} 0.99")
    return value


def options_dict(args: argparse.Namespace) -> dict[str, Any]:
    if args.calibration and not Path(args.calibration).is_file():
        raise LabkitError(f"--calibration {args.calibration}: no such file")
    sign_key = getattr(args, "sign_key", None)
    if sign_key and not Path(sign_key).is_file():
        raise LabkitError(f"--sign-key {sign_key}: no such file")
    return {
        "quantize": not args.no_quantize, "benchmark": not args.no_benchmark,
        "quick": args.quick, "name": args.name,
        "calibration": str(Path(args.calibration).resolve()) if args.calibration else None,
        "min_top1": _fraction("--min-top1", args.min_top1),
        "min_cosine": _fraction("--min-cosine", args.min_cosine),
        # resolved here: a notebook's kernel runs in the notebook's folder
        "sign_key": str(Path(sign_key).resolve()) if sign_key else None,
    }


def handoff_options(opts: dict[str, Any]) -> Any:
    from labkit.pipeline import BenchOptions, Budget, HandoffOptions

    budget = Budget()
    if opts.get("min_top1") is not None:
        budget = Budget(min_top1_agreement=opts["min_top1"], min_cosine=budget.min_cosine,
                        max_rel=budget.max_rel)
    if opts.get("min_cosine") is not None:
        budget = Budget(min_top1_agreement=budget.min_top1_agreement,
                        min_cosine=opts["min_cosine"], max_rel=budget.max_rel)
    return HandoffOptions(
        quantize=opts.get("quantize", True), benchmark=opts.get("benchmark", True),
        bench=BenchOptions.quick() if opts.get("quick") else BenchOptions(),
        calibration=Path(opts["calibration"]) if opts.get("calibration") else None,
        name=opts.get("name"), budget=budget)
