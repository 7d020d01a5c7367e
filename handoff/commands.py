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
from labkit.errors import LabkitError, NotFoundError
from labkit.request import HandoffRequest, resolve_store

if TYPE_CHECKING:
    from labkit.bundle.manifest import Manifest


def _local(location: str) -> Path:
    """A bundle argument on this host: a path as given, or a remote ``STORE/NAME/VERSION``
    (s3://, gs://, file://) pulled into the local cache and verified there."""
    from labkit.runtime.remote import local_bundle

    return local_bundle(location)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_export(args: argparse.Namespace) -> int:
    from labkit.bundle.location import is_remote

    if args.store and is_remote(args.store):
        raise LabkitError(
            f"--store {args.store}: a handoff writes a local store (versions are assigned "
            "there); export, then publish with 'handoff push STORE/NAME/VERSION "
            f"{args.store}'"
        )
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
        raise NotFoundError(f"--sign-key {key}: no such file")
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
    # The script the user named is the project's source: its folder stands in for the
    # working directory when it lies outside the shell's ([source]).
    real, here = path.resolve(), Path.cwd().resolve()
    results = run_request(
        replace(request, source=str(real)),
        printer,
        specs={spec.name: spec},
        cwd=here if here in real.parents else real.parent,
    )
    return [r.to_dict() for r in results]


def _print_result(r: dict[str, Any]) -> None:
    from labkit.result_text import render_text

    print(render_text(r))
    if r.get("signed_by"):
        print(f"  signed with key sha256:{r['signed_by'][:16]}… ({SIGNATURE_NAME})")


def cmd_verify(args: argparse.Namespace) -> int:
    from labkit.runtime import Model, verify

    keys = _trusted_keys(args.trusted_key)
    vb = verify(_local(args.bundle))  # once; each variant's bytes are re-hashed as they are read
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
    from labkit.bundle.location import is_remote
    from labkit.runtime.profile import sign_profile
    from labkit.runtime.signing import SIGN_KEY_ENV, sign_bundle

    if is_remote(args.bundle):
        raise LabkitError(
            f"{args.bundle}: sign the local bundle, then 'handoff push' it (a published "
            "version is never changed in place; pushing adds a new signature to it)"
        )
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
    if args.json:
        _print_json(
            {
                "ok": True,
                "signature": str(Path(args.bundle) / SIGNATURE_NAME),
                "key_fingerprint": fingerprint,
                "replaced": replaced,
            }
        )
        return 0
    print(
        f"{Path(args.bundle) / SIGNATURE_NAME}: signed with key sha256:{fingerprint[:16]}…"
        + (" (replaced the previous signature)" if replaced else "")
    )
    print(f"  check it: handoff verify {args.bundle} --trusted-key PUBLIC_KEY.pem")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from labkit.bundle import read_manifest
    from labkit.runtime.signing import signature_info

    root = _local(args.bundle)
    m = read_manifest(root)
    if args.json:
        # The manifest's own fields, plus two about this host that are not in it.
        doc = json.loads(m.to_json())
        doc["signing"] = _signing_status(root)
        doc["tuning"] = _tuning_status(root, m, args.profile_dir)
        _print_json(doc)
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
    from labkit.result_text import decision_lines

    for line in decision_lines(m.to_dict()):  # what the handoff decided, with its numbers
        print(f"  {line}")
    for line in _speed_lines(m):
        print(f"  {line}")
    exporter, src = m.provenance.exporter, m.provenance.source
    print(f"  exporter: {exporter.describe()}")
    if src:
        print(f"  source: {src.path} (sha256 {src.sha256[:16]}…)")
    if m.provenance.experiment:
        print(f"  from {m.provenance.experiment.describe()}")
    print(f"  files: {len(m.files)}, {sum(f.size for f in m.files)} bytes")
    sig = signature_info(root)
    print(f"  signature: {sig.describe() if sig else 'none (unsigned)'}")
    print(f"  tuning: {_tuning(root, m, args.profile_dir)}")
    for line in _aliases_of(args.bundle, m):
        print(f"  {line}")
    return 0


def _aliases_of(location: str, m: Manifest) -> list[str]:
    """The aliases of the bundle's store that point (or pointed) here, with history."""
    from handoff.store_cmds import alias_lines
    from labkit.bundle.location import is_remote, split_bundle_url
    from labkit.runtime.remote import open_store

    try:
        if is_remote(location):
            store_url, name, _ = split_bundle_url(location)
        else:
            path = Path(location).resolve()
            store_url, name = str(path.parent.parent), path.parent.name
        if name != m.name:
            return []
        return alias_lines(open_store(store_url).aliases(m.name), m.version)
    except LabkitError as exc:
        return [f"aliases: unreadable: {exc}"]


def _signing_status(root: Path) -> dict[str, Any]:
    """Whether the bundle carries a signature and which key it names (not checked here)."""
    from labkit.runtime.signing import signature_info

    sig = signature_info(root)
    return {
        "signed": sig is not None,
        "key_fingerprint": sig.key_fingerprint if sig else None,
        "checked": False,
        "error": sig.error if sig else None,
        "describe": sig.describe() if sig else "none (unsigned)",
    }


def _tuning_status(root: Path, m: Manifest, profile_dir: str | None = None) -> dict[str, Any]:
    """The host profile load() and serve would use here: used, ignored (why) or none."""
    from labkit.runtime.profile import resolve

    prof, note = resolve(root, m, "auto", directory=profile_dir)
    return {
        "status": "used" if prof else ("ignored" if note else "none"),
        "profile": str(prof.path) if prof else None,
        "candidate": prof.candidate.to_dict() if prof else None,
        "note": note,
        "describe": _describe_tuning(prof, note),
    }


def _speed_lines(m: Manifest) -> list[str]:
    """How eager was measured and how long each stage took (the default rule's words are
    :func:`labkit.result_text.decision_lines`)."""
    out = []
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

    return _describe_tuning(*resolve(root, m, "auto", directory=profile_dir))


def _describe_tuning(prof: Any, note: str | None) -> str:
    return prof.describe() if prof else (note or "none for this host (run 'handoff tune')")


def cmd_diff(args: argparse.Namespace) -> int:
    from labkit.runtime.drift import bundle_diff, diff_lines

    d = bundle_diff(_local(args.a), _local(args.b))
    if args.json:
        _print_json(d)
        return 0
    for line in diff_lines(d):
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from labkit.runtime.bench import bench_bundle

    rep = bench_bundle(
        _local(args.bundle), rounds=args.rounds, batch=args.batch, threads=args.threads
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
    from handoff.store_cmds import alias_lines
    from labkit.bundle import default_store
    from labkit.bundle.listing import list_bundles
    from labkit.bundle.location import is_remote
    from labkit.runtime.remote import open_store

    location = str(args.store or default_store())
    store = open_store(location)
    if not is_remote(location) and not Path(store.root).is_dir():
        raise NotFoundError(
            f"no store at {store.root}: the directory does not exist"
            + ("" if args.store else " (pass STORE or set $LABKIT_STORE)")
        )
    rows: list[dict[str, Any]] = []
    aliases: dict[str, dict[str, Any]] = {}
    notes: dict[str, list[str]] = {}
    for e in list_bundles(store):
        if e.name not in notes:
            try:
                aliases[e.name] = store.aliases(e.name)
                notes[e.name] = alias_lines(aliases[e.name], last=3)
            except (LabkitError, OSError) as exc:
                aliases[e.name], notes[e.name] = {}, [f"aliases: unreadable: {exc}"]
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
                "tuning": _list_tuning(store, e.name, e.version, e.manifest, args.profile_dir),
                "aliases": {
                    a: al.to_dict() for a, al in aliases[e.name].items() if al.version == e.version
                },
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no bundles in {store.root}")
        return 0
    print(
        f"{'NAME':<24}{'VERSION':<10}{'DEFAULT':<14}{'SPEED-UP':>8}  {'PARITY':<11}"
        f"{'CHANGE':<8}ALIASES"
    )
    for i, r in enumerate(rows):
        if "error" in r:
            print(f"{r['name']:<24}{r['version']:<10}UNREADABLE: {r['error']}")
        else:
            sp = f"{r['speedup_p50']:.2f}x" if r["speedup_p50"] else "-"
            print(
                f"{r['name']:<24}{r['version']:<10}{r['default_variant']:<14}{sp:>8}  "
                f"{'pass' if r['parity'] else 'FAIL':<11}{r['change']:<8}"
                + ", ".join(sorted(r["aliases"]))
            )
            print(f"{'':<34}tuning: {r['tuning']}")
        if i + 1 == len(rows) or rows[i + 1]["name"] != r["name"]:  # after a model's rows
            for line in notes.get(r["name"], []):
                print(f"  {line}")
    print("SPEED-UP: the default variant's batch-1 latency speed-up over PyTorch eager")
    return 0


def _list_tuning(
    store: Any, name: str, version: str, m: Manifest, profile_dir: str | None = None
) -> str:
    """Local stores: the profile beside the bundle. Remote: the one beside the cached copy."""
    from labkit.bundle import Store

    if isinstance(store, Store):
        return _tuning(store.path(name, version), m, profile_dir)
    cached = store.cache.root / name / version
    return _tuning(cached, m, profile_dir) if cached.is_dir() else "not pulled to this host yet"
