"""``handoff``: hand a PyTorch model off as a verified CPU bundle, and work with bundles.

Errors print as one line (``handoff: error: …``); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from handoff import commands
from handoff.safe_output import guard_terminal
from handoff.tune_cmd import add_profile_dir_argument, add_tune_parser
from labkit.errors import LabkitError

EPILOG = """examples:
  handoff export examples/digits.py:build            # train, hand off, write a bundle
  handoff export analysis.ipynb --store /srv/bundles  # models registered in a notebook
  handoff verify bundles/digits-mlp/1.0.0             # integrity + golden self-test
  handoff sign bundles/digits-mlp/1.0.0 --key signing.pem
  handoff verify bundles/digits-mlp/1.0.0 --trusted-key signing.pub
  handoff tune bundles/digits-mlp/1.0.0               # fastest way to run it on this host
  handoff diff bundles/digits-mlp/1.0.0 bundles/digits-mlp/1.1.0
  handoff serve bundles --port 8000                  # Open Inference Protocol v2
"""


def _add_optional(
    sub: argparse._SubParsersAction, module: str, adder: str, name: str, extra: str
) -> None:
    """Serve commands live in labkit.serve; without its extra they say what to install."""
    try:
        import importlib

        getattr(importlib.import_module(module), adder)(sub)
    except ImportError:
        p = sub.add_parser(name, help=f"(needs: pip install 'labkit[{extra}]')")
        p.add_argument("rest", nargs=argparse.REMAINDER)

        def missing(_args: argparse.Namespace) -> int:
            raise LabkitError(
                f"'handoff {name}' needs the {extra} extra: pip install 'labkit[{extra}]'"
            )

        p.set_defaults(func=missing)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handoff",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export",
        help="hand a model off: freeze, export, check, optimize, "
        "benchmark, write a versioned bundle",
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="path/to/file.py:function (returns labkit.register(...)) or a .ipynb",
    )
    p.add_argument(
        "--store", default=None, help="bundle store (default: $LABKIT_STORE, else ./bundles)"
    )
    p.add_argument("--name", help="bundle name (overrides the registered name)")
    p.add_argument("--no-quantize", action="store_true", help="ship the fp32 variant only")
    p.add_argument(
        "--no-benchmark",
        action="store_true",
        help="skip the speed measurement (the default variant is then fp32)",
    )
    p.add_argument("--quick", action="store_true", help="a short benchmark (fewer rounds)")
    p.add_argument(
        "--calibration",
        metavar="FILE.npz",
        help="real inputs (one array per model input) to calibrate INT8 with",
    )
    p.add_argument(
        "--min-top1",
        type=float,
        metavar="F",
        help="accuracy budget of quantized classifiers: top-1 agreement with "
        "PyTorch on real data (default 0.99)",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        metavar="F",
        help="accuracy budget of other quantized models: cosine similarity (default 0.99)",
    )
    p.add_argument(
        "--sign-key",
        metavar="KEY.pem",
        default=None,
        help="sign the new bundle with this EC private key (default: $LABKIT_SIGN_KEY when set)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser(
        "verify", help="check a bundle's integrity and re-run its golden vectors on this machine"
    )
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--trusted-key",
        metavar="PUB.pem",
        action="append",
        default=None,
        help="refuse the bundle unless one of these public keys signed it (repeatable)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_verify)

    p = sub.add_parser(
        "sign",
        help="sign a bundle (OpenSSF model signing, offline); writes "
        "BUNDLE/signature.sig, changes nothing else; or a host profile (--profile)",
    )
    p.add_argument("bundle", metavar="BUNDLE", nargs="?", default=None)
    p.add_argument(
        "--profile",
        metavar="PROFILE.json",
        default=None,
        help="sign this host profile instead (writes PROFILE.json.sig): servers with the "
        "key as trusted then run its choice even in reduced precision",
    )
    p.add_argument(
        "--key",
        metavar="KEY.pem",
        default=None,
        help="EC private key in PEM (default: $LABKIT_SIGN_KEY)",
    )
    p.set_defaults(func=commands.cmd_sign)

    p = sub.add_parser("inspect", help="show a bundle's signature, variants and provenance")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--json", action="store_true", help="print the manifest")
    add_profile_dir_argument(p)
    p.set_defaults(func=commands.cmd_inspect)

    p = sub.add_parser("diff", help="explain what changed between two bundles")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_diff)

    p = sub.add_parser("bench", help="time every variant of a bundle on this machine")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=32, help="batch size for throughput")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("list", help="list the bundles in a store")
    p.add_argument("store", metavar="STORE", nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    add_profile_dir_argument(p)
    p.set_defaults(func=commands.cmd_list)

    add_tune_parser(sub)

    _add_optional(sub, "labkit.serve.cli", "add_serve_parser", "serve", "serve")
    _add_optional(sub, "labkit.serve.cli", "add_export_triton_parser", "export-triton", "serve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("LABKIT_DEBUG"))
    args.func = guard_terminal(args)  # manifest text is printed with control chars escaped
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`handoff inspect --json | head`): stop quietly, as CLIs do,
        # and point stdout at /dev/null so the interpreter's final flush cannot complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print("handoff: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (LabkitError, OSError) as exc:
        if debug:
            traceback.print_exc()
        message = str(exc).replace("\n", "\n  ")
        print(f"handoff: error: {message}", file=sys.stderr)
        return 1
    except Exception as exc:  # the user's script can raise anything; still one line  # noqa: BLE001
        if debug:
            traceback.print_exc()
        print(
            f"handoff: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
