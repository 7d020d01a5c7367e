"""The ``handoff`` subcommands. Only ``export`` needs torch; the rest run on the runtime."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff.export_options import request_options
from handoff.progress import StagePrinter
from labkit.bundle.manifest import SIGNATURE_NAME
from labkit.errors import LabkitError
from labkit.request import HandoffRequest, resolve_store

if TYPE_CHECKING:
    from labkit.bundle.manifest import Manifest


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_export(args: argparse.Namespace) -> int:
    printer = StagePrinter()
    if args.sign_key:
        _sign_with(args.sign_key)
    # Resolved here, against the shell's folder: a notebook's kernel runs in the notebook's.
    request = HandoffRequest(
        store=str(resolve_store(args.store, Path.cwd())),
        all_models=True,
        options=request_options(args),
    )
    # With --json, stdout carries only the result: the user's prints go to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        results = _export(args.source, request, printer)
    if args.json:
        _print_json(results[0] if len(results) == 1 else results)
    else:
        for r in results:
            _print_result(r)
    return 0


def _sign_with(key: str) -> None:
    """``--sign-key`` travels as ``$LABKIT_SIGN_KEY``, the one channel every handoff reads
    (this process, the notebook's kernel and the notebook's own ``labkit.handoff`` cells)."""
    from labkit.runtime.signing import SIGN_KEY_ENV

    if not Path(key).is_file():
        raise LabkitError(f"--sign-key {key}: no such file")
    # Resolved here: a notebook's kernel runs in the notebook's folder.
    os.environ[SIGN_KEY_ENV] = str(Path(key).resolve())


def _export(source: str, request: HandoffRequest, printer: StagePrinter) -> list[dict[str, Any]]:
    if source.endswith(".ipynb"):
        from handoff.sources import run_notebook

        return run_notebook(
            Path(source), replace(request, source=str(Path(source).resolve())), on_event=printer
        )
    from handoff.sources import spec_from_script
    from labkit.pipeline.runner import run_request

    spec, path = spec_from_script(source)
    results = run_request(
        replace(request, source=str(path.resolve())), printer, specs={spec.name: spec}
    )
    return [r.to_dict() for r in results]


def _print_result(r: dict[str, Any]) -> None:
    from labkit.notebook.render import render_result_text

    print(render_result_text(r))
    if r.get("signed_by"):
        print(f"  signed with key sha256:{r['signed_by'][:16]}… ({SIGNATURE_NAME})")


def cmd_verify(args: argparse.Namespace) -> int:
    from labkit.runtime import Model, verify

    keys = _trusted_keys(args.trusted_key)
    vb = verify(args.bundle)  # once; each variant's bytes are re-hashed as they are read
    signer = None
    if keys is not None:  # before any session exists, like load(trusted_keys=...)
        from labkit.runtime.signing import check_signature

        signer = check_signature(vb, keys)
    m = vb.manifest
    reports = [Model(vb, v.name, None).self_test() for v in m.variants]
    ok = all(r.ok for r in reports)
    if args.json:
        _print_json(
            {
                "ok": ok,
                "name": m.name,
                "version": m.version,
                "files": len(m.files),
                "signed_by": signer.fingerprint if signer else None,
                "self_test": [r.to_dict() for r in reports],
            }
        )
    else:
        print(
            f"{m.name} {m.version}: integrity OK ({len(m.files)} files, sha256 "
            "checked, no links, nothing unlisted)"
        )
        if signer is not None:
            print(
                f"  signature OK: signed by trusted key sha256:{signer.fingerprint[:16]}… "
                f"({signer.path}), over exactly these files"
            )
        for r in reports:
            status = "OK" if r.ok else "FAILED"
            worst = max((o["max_rel"] for o in r.outputs.values()), default=0.0)
            print(
                f"  self-test {r.variant:<13} {status} (max rel err {worst:.2e}, "
                f"tolerance {r.tolerance.rel if r.tolerance else float('nan'):.2e})"
            )
            for f in r.failures:
                print(f"    {f}")
    if not ok:
        print("handoff: error: golden vectors do not reproduce on this machine", file=sys.stderr)
        return 1
    return 0


def _trusted_keys(paths: list[str] | None) -> Any:
    """``--trusted-key`` given → the loaded keys (even to refuse everything); else None."""
    if not paths:
        return None
    from labkit.runtime.signing import load_trusted_keys

    return load_trusted_keys(paths)


def cmd_sign(args: argparse.Namespace) -> int:
    from labkit.runtime.signing import SIGN_KEY_ENV, sign_bundle, sign_profile

    key = args.key or os.environ.get(SIGN_KEY_ENV)
    if not key:
        raise LabkitError(f"no signing key: pass --key KEY.pem or set ${SIGN_KEY_ENV}")
    if (args.bundle is None) == (args.profile is None):
        raise LabkitError("give a BUNDLE to sign, or --profile PROFILE.json (not both)")
    if args.profile is not None:
        out, fingerprint = sign_profile(args.profile, key)
        print(f"{out}: profile signed with key sha256:{fingerprint[:16]}…")
        return 0
    replaced = (Path(args.bundle) / SIGNATURE_NAME).exists()
    fingerprint = sign_bundle(args.bundle, key)
    print(
        f"{Path(args.bundle) / SIGNATURE_NAME}: signed with key sha256:{fingerprint[:16]}…"
        + (" (replaced the previous signature)" if replaced else "")
    )
    print(f"  check it: handoff verify {args.bundle} --trusted-key PUBLIC_KEY.pem")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from labkit.bundle import read_manifest
    from labkit.runtime.signing import signature_info

    m = read_manifest(Path(args.bundle))
    if args.json:
        sys.stdout.write(m.to_json().decode())
        return 0
    print(f"{m.name} {m.version}  (created {m.created}, task {m.task or '-'})")
    ch = m.change
    print(
        f"  change: {ch.kind}" + (f" from {ch.previous}" if ch.previous else "") + f": {ch.reason}"
    )
    for side, tensors in (("input", m.signature.inputs), ("output", m.signature.outputs)):
        for t in tensors:
            print(f"  {side:<6} {t}")
    unreliable = m.baseline is not None and not m.baseline.reliable
    for v in m.variants:
        sp = v.speedup
        speed = f", {sp['p50']:.2f}x batch-1 latency vs eager" if sp else ""
        speed = ", speed-up unreliable" if unreliable else speed
        mark = "  <- default" if v.name == m.default_variant else ""
        parity = v.parity or {}
        print(
            f"  variant {v.name:<13} {v.precision:<5} parity "
            f"{'pass' if parity.get('passed') else 'FAIL'} (max rel "
            f"{parity.get('max_rel', float('nan')):.2e}){speed}{mark}"
        )
        if v.checks is not None:  # what passed parity where the bundle was made
            print(f"    passed on: {', '.join(c.config for c in v.passed()) or 'none'}")
            for c in v.rejected():
                print(f"    rejected {c.config}: {c.reason}")
        elif v.runs_on is not None:
            print(f"    runs on: {', '.join(v.runs_on)}")
    for line in _speed_lines(m):
        print(f"  {line}")
    exporter, src = m.provenance.exporter, m.provenance.source
    print(f"  exporter: {exporter.describe()}")
    if src:
        print(f"  source: {src.path} (sha256 {src.sha256[:16]}…)")
    print(f"  files: {len(m.files)}, {sum(f.size for f in m.files)} bytes")
    sig = signature_info(args.bundle)
    print(f"  signature: {sig.describe() if sig else 'none (unsigned)'}")
    print(f"  tuning: {_tuning(Path(args.bundle), m, args.profile_dir)}")
    return 0


def _speed_lines(m: Manifest) -> list[str]:
    """Why the default is the default, how eager was measured, how long each stage took."""
    out = []
    rule = m.default_rule
    if rule is not None:
        out.append(f"default: {rule.chosen}: {rule.reason}")
        if rule.scores:
            numbers = ", ".join(f"{k} {v:.2f}" for k, v in rule.scores.items())
            noise = f"; noise {rule.noise:.1%}" if rule.noise is not None else ""
            margin = f", margin {rule.margin:.1%}" if rule.margin is not None else ""
            out.append(f"  scores: {numbers}{noise}{margin}")
        prev = f"{rule.previous} in {rule.previous_version}" if rule.previous else "none"
        out.append(f"  previous default: {prev}; numbers reliable: {rule.reliable}")
        out.append(f"  rule: {rule.rule}")
    if m.baseline is not None:
        out.append(f"baseline: {m.baseline.describe()}")
    seconds = m.provenance.stage_seconds
    if seconds:
        from labkit.request import STAGES

        each = ", ".join(f"{k} {seconds[k]:.1f}s" for k in STAGES if k in seconds)
        out.append(f"handoff time: {sum(seconds.values()):.1f}s ({each})")
    return out


def _tuning(root: Path, m: Manifest, profile_dir: str | None = None) -> str:
    """The host profile load() and serve would use here, or why there is none (a bad one
    reads "ignored: reason"; resolve() never raises)."""
    from labkit.runtime.profile import resolve

    prof, note = resolve(root, m, "auto", directory=profile_dir)
    return prof.describe() if prof else (note or "none for this host (run 'handoff tune')")


def cmd_diff(args: argparse.Namespace) -> int:
    from labkit.bundle import read_manifest
    from labkit.bundle.diff import diff
    from labkit.runtime.drift import output_drift

    d = diff(read_manifest(Path(args.a)), read_manifest(Path(args.b)))
    d["outputs"] = output_drift(args.a, args.b)
    if args.json:
        _print_json(d)
        return 0
    if d["downgrade"]:
        print(
            f"{d['from']} → {d['to']}: downgrade to an older version — it undoes a "
            f"{d['change']} update ({d['verdict']})"
        )
    else:
        print(f"{d['from']} → {d['to']}: {d['change']} — {d['verdict']}")
    print(f"  {d['reason']}")
    for c in d["signature_changes"]:
        print(f"  signature: {c}")
    flags = [
        k.replace("_changed", "")
        for k in ("architecture_changed", "weights_changed", "metadata_changed")
        if d[k]
    ]
    print(f"  changed: {', '.join(flags) or 'nothing'}")
    if d["default_variant"][0] != d["default_variant"][1]:
        print(f"  default variant: {d['default_variant'][0]} → {d['default_variant'][1]}")
    out = d["outputs"]
    if not out["compared"]:
        print(f"  outputs: not compared: {out['reason']}")
    else:
        va, vb = out["variants"]
        print(f"  outputs on {out['inputs']} (default variants {va} → {vb}):")
        for name, o in out["outputs"].items():
            print(
                f"    {name}: max abs difference {o['max_abs']:.3g}, max rel difference "
                f"{o['max_rel']:.3g}"
            )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.runtime.bench import bench_bundle

    rep = bench_bundle(
        Path(args.bundle), rounds=args.rounds, batch=args.batch, threads=args.threads
    )
    if args.json:
        _print_json(rep)
        return 0
    for line in bench_lines(rep):
        print(line)
    return 0


def bench_lines(rep: dict[str, Any]) -> list[str]:
    """The bench table: batch-1 latency and throughput, each speed-up labelled."""
    env, base = rep["environment"], rep["baseline"]
    batch = next(iter(rep["variants"].values()))["throughput_batch"]
    lines = [
        f"{env['cpu']['model']}, {env['threads']} threads; interleaved rounds, medians",
        f"  {'':<14}{'batch-1 latency (ms)':^27}{'throughput':>12}  speed-up vs {base}",
        f"  {'variant':<14}{'p50':>9}{'p90':>9}{'p99':>9}{f'rows/s @{batch}':>12}"
        f"  {'batch-1':>8}{'throughput':>12}",
    ]
    for name, s in rep["variants"].items():
        sp = s[f"speedup_vs_{base}"]
        lines.append(
            f"  {name:<14}{s['p50_ms']:>9.3f}{s['p90_ms']:>9.3f}{s['p99_ms']:>9.3f}"
            f"{s['throughput_per_s']:>12.0f}  {sp['p50']:>7.2f}x"
            f"{sp['throughput']:>11.2f}x"
        )
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    from labkit.bundle import Store, default_store
    from labkit.bundle.listing import list_bundles

    store = Store(args.store or default_store())
    if not store.root.is_dir():
        print(
            f"handoff: error: no store at {store.root}: the directory does not exist"
            + ("" if args.store else " (pass STORE or set $LABKIT_STORE)"),
            file=sys.stderr,
        )
        return 2
    rows: list[dict[str, Any]] = []
    for e in list_bundles(store):
        if e.manifest is None:
            rows.append({"name": e.name, "version": e.version, "error": e.problem})
            continue
        rows.append(
            {
                "name": e.name,
                "version": e.version,
                "default_variant": e.manifest.default_variant,
                "speedup_p50": e.speedup_p50,
                "parity": e.parity_ok,
                "change": e.manifest.change.kind,
                "tuning": _tuning(store.path(e.name, e.version), e.manifest, args.profile_dir),
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no bundles in {store.root}")
        return 0
    print(f"{'NAME':<24}{'VERSION':<10}{'DEFAULT':<14}{'SPEED-UP':>8}  {'PARITY':<11}CHANGE")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<24}{r['version']:<10}UNREADABLE: {r['error']}")
            continue
        sp = f"{r['speedup_p50']:.2f}x" if r["speedup_p50"] else "-"
        print(
            f"{r['name']:<24}{r['version']:<10}{r['default_variant']:<14}{sp:>8}  "
            f"{'pass' if r['parity'] else 'FAIL':<11}{r['change']}"
        )
        print(f"{'':<34}tuning: {r['tuning']}")
    print("SPEED-UP: the default variant's batch-1 latency speed-up over PyTorch eager")
    return 0
