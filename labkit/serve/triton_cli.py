"""``handoff export-triton``: the argparse sub-command over ``labkit.serve.triton_repo``.

Needs no serving extra (no Starlette, no uvicorn): the runtime verifies and probes, the rest
is files. Exit codes are the CLI's one table (``labkit.errors.exit_code``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labkit.errors import EXIT_OK, EXIT_USAGE, LabkitError, error_json, exit_code

__all__ = ["add_export_triton_parser", "run_export_triton"]


def add_export_triton_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-triton",
        help="write (or add to) a Triton model repository from a bundle or every version "
        "of a model",
        description="Verify SOURCE (a bundle, or STORE/NAME for every version of a model) and "
        "write OUT/NAME/config.pbtxt, OUT/NAME/<n>/model.onnx per version, warm-up data from "
        "the golden inputs and labels. Versions already in OUT/NAME are kept; dynamic "
        "batching only when every version proves its rows independent (the probe 'handoff "
        "serve' uses).",
    )
    p.add_argument("bundle", metavar="SOURCE", type=Path, help="BUNDLE or STORE/NAME")
    p.add_argument("out", metavar="OUT", type=Path, help="the Triton model repository")
    p.add_argument("--variant", default=None, help="default: each bundle's default variant")
    p.add_argument("--name", default=None, help="Triton model name (default: the bundle's)")
    p.add_argument("--max-batch-size", type=int, default=32, help="0 disables batching")
    p.add_argument(
        "--instances",
        type=int,
        default=None,
        help="CPU instances (default: the tuned streams of this host's profile, else 1)",
    )
    p.add_argument("--max-queue-delay-us", type=int, default=500)
    p.add_argument("--max-queue-size", type=int, default=128)
    p.add_argument(
        "--triton-version",
        type=int,
        default=None,
        help="version folder number for one bundle (default: the next free one)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a version folder that holds another bundle of the same version",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_export_triton)
    return p


def _print_lines(doc: dict[str, Any]) -> None:
    print(doc["path"])
    written = set(doc["written"])
    for number, version in doc["versions"].items():
        mark = "written" if int(number) in written else "kept"
        print(f"  version {number}: {doc['name']} {version} ({mark})")
    for s in doc["skipped"]:
        print(f"  left out {s['version']}: {s['reason']}")
    batching = doc["batching"]
    print(f"  batching: {'on' if batching['on'] else 'off'} ({batching['reason']})")
    threads = doc["threads"]
    print(
        f"  instances: {doc['instances']}, threads: "
        + (f"{threads} (tuned on this host)" if threads else "ONNX Runtime's default")
    )
    print(
        f"  warm-up: {'golden inputs' if doc['warmup'] else 'none'}; labels: "
        + ("labels.txt" if doc["labels"] else "none")
    )


def run_export_triton(args: argparse.Namespace) -> int:
    from labkit.serve.triton_repo import export_triton

    try:
        result = export_triton(
            args.bundle,
            args.out,
            variant=args.variant,
            name=args.name,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            max_queue_delay_us=args.max_queue_delay_us,
            max_queue_size=args.max_queue_size,
            triton_version=args.triton_version,
            force=args.force,
        )
    except (LabkitError, ValueError, OSError) as exc:
        # a plain ValueError is a flag out of range: usage
        usage = isinstance(exc, ValueError) and not isinstance(exc, LabkitError)
        code = EXIT_USAGE if usage else exit_code(exc)
        if args.json:
            print(json.dumps(error_json(exc, code), indent=2))
        print(f"handoff export-triton: error: {exc}", file=sys.stderr)
        return code
    doc = result.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_lines(doc)
    return EXIT_OK
