"""``handoff export`` flags → a :class:`~labkit.request.RequestOptions`.

The same options object travels to a notebook's kernel inside a HandoffRequest and is turned
into the pipeline's HandoffOptions in one place, ``labkit.pipeline.runner.handoff_options``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.errors import NotFoundError
from labkit.request import RequestOptions, check_fraction


def request_options(args: argparse.Namespace) -> RequestOptions:
    if args.calibration and not Path(args.calibration).is_file():
        raise NotFoundError(f"--calibration {args.calibration}: no such file")
    return RequestOptions(
        quantize=not args.no_quantize,
        benchmark=not args.no_benchmark,
        quick=args.quick,
        name=args.name,
        calibration=str(Path(args.calibration).resolve()) if args.calibration else None,
        min_top1=check_fraction("--min-top1", args.min_top1),
        min_cosine=check_fraction("--min-cosine", args.min_cosine),
    )
