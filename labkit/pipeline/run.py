"""``run()``: the one place that chains the stages, owns temp dirs and reports progress."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from labkit.bundle import (
    Baseline,
    Change,
    Exporter,
    Fingerprint,
    Golden,
    Manifest,
    Provenance,
    Signature,
    Source,
    Store,
    Tolerance,
    Variant,
    write_bundle,
)
from labkit.bundle._json import dumps_canonical
from labkit.bundle.tolerance import metric_for_task
from labkit.errors import LabkitError, ParityError
from labkit.model_state import preserved
from labkit.pipeline import default_rule, graph, report
from labkit.pipeline.benchmark import benchmark, other_engines
from labkit.pipeline.export import export
from labkit.pipeline.freeze import InputSet, Reference, describe, freeze, golden_set
from labkit.pipeline.optimize import choose_candidates, optimize_fp32, quantize
from labkit.pipeline.options import STAGES, HandoffOptions, ProgressEvent
from labkit.pipeline.parity import check_parity, fp32_tolerance, session_predictor
from labkit.pipeline.result import HandoffResult
from labkit.pipeline.sensitivity import rescue
from labkit.registry import ModelSpec
from labkit.runtime.compare import accumulate
from labkit.runtime.machine import cpu_info, library_versions
from labkit.runtime.signing import SIGN_KEY_ENV, sign_bundle

Progress = Callable[[ProgressEvent], None]


class _Reporter:
    def __init__(self, callback: Progress | None) -> None:
        self._cb = callback
        self.seconds: dict[str, float] = {}  # wall time of each stage that finished

    def emit(
        self, stage: str, status: str, message: str = "", fraction: float | None = None
    ) -> None:
        if self._cb is not None:
            self._cb(ProgressEvent(stage, status, message, fraction))

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        self.emit(stage, "start")
        t0 = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.emit(stage, "fail", str(exc) or type(exc).__name__)
            raise
        self.seconds[stage] = round(time.perf_counter() - t0, 2)
        self.emit(stage, "done")


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _metadata(spec: ModelSpec) -> dict[str, Any]:
    return {
        "task": spec.task,
        "labels": list(spec.labels) if spec.labels else None,
        "tolerance": spec.tolerance,
    }


def _self_test_tolerance(
    base: Tolerance, golden: InputSet, predictor: Any, names: list[str]
) -> Tolerance:
    """INT8: what this machine measured on the golden set, with a margin (fp32 keeps the
    parity tolerance itself)."""
    stats = accumulate([(golden.outputs, predictor(golden.inputs))], names)
    rel = max(s.max_rel for s in stats.values())
    metric = base.metric
    if metric is None:
        return Tolerance(max(2 * rel, 1e-3))
    observed = min(s.metric(metric) for s in stats.values())
    return Tolerance(max(2 * rel, 1e-3), metric, max(0.0, observed - 2 / max(golden.batch_size, 1)))


def _source_entry(source: Path | None) -> tuple[Source | None, dict[str, bytes]]:
    if source is None:
        return None, {}
    data = Path(source).read_bytes()
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(source).name)
    safe = safe.lstrip("._-") or "source"
    copy = f"source/{safe}"
    kind = "notebook" if safe.endswith(".ipynb") else "script"
    return (
        Source(kind, str(Path(source).resolve()), hashlib.sha256(data).hexdigest(), copy),
        {copy: data},
    )


def run(
    spec: ModelSpec,
    *,
    store: str | Path | None = None,
    options: HandoffOptions | None = None,
    progress: Progress | None = None,
    source: str | Path | None = None,
    sign_key: str | os.PathLike[str] | None = None,
) -> HandoffResult:
    """Hand ``spec`` off: freeze → export → parity → optimize → benchmark → bundle.

    ``sign_key`` (a PEM EC private key; default ``$LABKIT_SIGN_KEY``, ``""`` for none) signs
    the new bundle with OpenSSF model signing once it is written (``labkit[sign]``).
    The researcher's module is left exactly as it was, whether the handoff succeeds or not
    (:func:`labkit.model_state.preserved`).
    """
    with preserved(spec.model):
        return _run(spec, store, options, progress, source, sign_key)


def _run(
    spec: ModelSpec,
    store: str | Path | None,
    options: HandoffOptions | None,
    progress: Progress | None,
    source: str | Path | None,
    sign_key: str | os.PathLike[str] | None,
) -> HandoffResult:
    options = options or HandoffOptions()
    key = _sign_key(sign_key)
    name = options.name or spec.name
    st = Store(store)
    rep = _Reporter(progress)
    src = Path(source) if source is not None else spec.source
    with tempfile.TemporaryDirectory(prefix="labkit-handoff-") as tmp_str:
        tmp = Path(tmp_str)
        with rep.stage("freeze"):
            for note in spec.notes:
                rep.emit("freeze", "info", note)
            ref = freeze(spec, batch_sizes=options.parity_batch_sizes, seed=options.seed)
            golden = golden_set(ref)
        with rep.stage("export"):
            info = export(spec, tmp / "exported.onnx", opset=options.opset)
            rep.emit("export", "info", info.describe())
            raw = onnx.load(str(info.path))
            signature = Signature.from_dict(graph.signature(raw))
            fingerprint = Fingerprint.from_dict(graph.fingerprint(raw, _metadata(spec)))
        outputs = list(spec.output_names)
        with rep.stage("parity"):
            tol = fp32_tolerance(ref)
            raw_parity = check_parity(
                ref, session_predictor(info.path.read_bytes(), outputs), tol, variant="fp32"
            )
            if not raw_parity.passed:
                raise ParityError(
                    f"the exported fp32 graph does not match PyTorch (tolerance rel "
                    f"{tol.rel:g}):\n  " + "\n  ".join(raw_parity.failures),
                    raw_parity,
                )
            plan = st.plan(name, fingerprint)
            if plan.kind == "none":
                rep.emit("parity", "info", f"identical to {name} {plan.version}: no new version")
        if plan.kind == "none":
            for stage in STAGES[3:]:
                rep.emit(stage, "skip", f"identical to {plan.version}")
            return HandoffResult(
                st.manifest(name, plan.version),
                st.path(name, plan.version),
                plan,
                parity=raw_parity.to_dict(),
            )
        with rep.stage("optimize"):
            variants, paths, rejected, parity_reports = _optimize(
                ref, info.path, tmp, options, golden, outputs, rep
            )
        bench = None
        with rep.stage("benchmark"):
            if options.benchmark:
                bench = benchmark(
                    spec,
                    paths,
                    ref.sets[0].inputs,
                    options.bench,
                    tmp,
                    on_round=lambda i, n: rep.emit("benchmark", "info", f"round {i}/{n}", i / n),
                    extra=other_engines(variants),
                )
                variants = [replace(v, benchmark=bench["variants"][v.name]) for v in variants]
            else:
                rep.emit("benchmark", "info", "skipped (benchmark=False)")
        baseline = Baseline.from_dict(bench["eager_check"]) if bench else None
        rule = default_rule.choose(
            variants,
            bench,
            reliable=baseline is not None and baseline.reliable,
            previous=st.manifest(name, plan.previous).default_variant if plan.previous else None,
            previous_version=plan.previous,
        )
        default = rule.chosen
        with rep.stage("bundle"):
            plan = st.plan(name, fingerprint)  # again: another handoff may have landed
            files: dict[str, bytes] = {
                "golden/inputs.npz": _npz(golden.inputs),
                "golden/expected.npz": _npz(golden.outputs),
            }
            for v in variants:
                files[v.file] = paths[v.name].read_bytes()
            source_entry, source_files = _source_entry(src)
            files.update(source_files)
            parity_doc = {
                "fp32_export": raw_parity.to_dict(),
                "variants": {k: r.to_dict() for k, r in parity_reports.items()},
                "rejected": rejected,
                "reference": describe(ref),
            }
            manifest = Manifest(
                name=name,
                version=plan.version,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                task=spec.task,
                labels=tuple(spec.labels) if spec.labels else None,
                signature=signature,
                variants=tuple(variants),
                default_variant=default,
                baseline=baseline,
                default_rule=rule,
                fingerprint=fingerprint,
                golden=Golden("golden/inputs.npz", "golden/expected.npz", golden.batch_size),
                change=Change(plan.kind, plan.previous, plan.reason),
                provenance=Provenance(
                    source=source_entry,
                    exporter=Exporter.from_dict(info.to_dict()),
                    cpu=cpu_info(),
                    libraries=library_versions(
                        "labkit", "torch", "onnx", "onnxscript", "onnxruntime", "numpy"
                    ),
                    options=options.to_dict(),
                    model={
                        "class": type(spec.model).__name__,
                        "parameters": ref.parameters,
                        "flops_per_sample": ref.flops_per_sample,
                    },
                    stage_seconds=dict(rep.seconds),  # the bundle stage is still running
                ),
            )
            files["reports/parity.json"] = dumps_canonical(parity_doc)
            files["reports/benchmark.json"] = dumps_canonical(bench or {"skipped": True})
            files["report.md"] = report.render(manifest, parity_doc, bench).encode()
            path = write_bundle(st.root, name, plan.version, files, manifest)
            rep.emit("bundle", "info", f"wrote {path}")
            signed_by = None
            if key:
                signed_by = sign_bundle(path, key)
                rep.emit("bundle", "info", f"signed with key sha256:{signed_by[:16]}…")
    return HandoffResult(
        st.manifest(name, plan.version),
        path,
        plan,
        rejected=rejected,
        parity=parity_doc,
        benchmark=bench,
        signed_by=signed_by,
    )


def _sign_key(sign_key: str | os.PathLike[str] | None) -> str | None:
    """The key to sign with, checked before the (long) handoff starts, not after it."""
    key = os.fspath(sign_key) if sign_key is not None else os.environ.get(SIGN_KEY_ENV, "")
    if key and not Path(key).is_file():
        origin = "sign_key" if sign_key is not None else f"${SIGN_KEY_ENV}"
        raise LabkitError(
            f"{origin} {key}: no such file; give the path of a PEM EC private "
            "key, or unset it to hand off without signing"
        )
    return key or None


def _optimize(
    ref: Reference,
    exported: Path,
    tmp: Path,
    options: HandoffOptions,
    golden: InputSet,
    outputs: list[str],
    rep: _Reporter,
) -> tuple[list[Variant], dict[str, Path], list[dict[str, Any]], dict[str, Any]]:
    """The variants that passed (with the temp file of each) and the rejected ones."""
    tol = fp32_tolerance(ref)
    fp32_path = tmp / "fp32.onnx"
    fp32_info = optimize_fp32(exported, fp32_path)
    fp32_bytes = fp32_path.read_bytes()
    predictor = session_predictor(fp32_bytes, outputs)
    fp32_parity = check_parity(ref, predictor, tol, variant="fp32")
    if not fp32_parity.passed and fp32_info.get("fusion"):
        # The fusions are judged like any graph: failing parity, the unfused one is used.
        rep.emit("optimize", "info", "fused graph failed parity; using the unfused graph")
        fp32_info = {
            **optimize_fp32(exported, fp32_path, fuse=False),
            "fusion_rejected": "; ".join(fp32_parity.failures)[:500],
        }
        fp32_bytes = fp32_path.read_bytes()
        predictor = session_predictor(fp32_bytes, outputs)
        fp32_parity = check_parity(ref, predictor, tol, variant="fp32")
    if not fp32_parity.passed:
        raise ParityError(
            "the optimized fp32 graph does not match PyTorch:\n  "
            + "\n  ".join(fp32_parity.failures),
            fp32_parity,
        )
    variants = [
        Variant(
            "fp32",
            "models/fp32.onnx",
            hashlib.sha256(fp32_bytes).hexdigest(),
            "fp32",
            tol,
            optimization=fp32_info,
            parity=fp32_parity.summary(),
        )
    ]
    paths = {"fp32": fp32_path}
    reports: dict[str, Any] = {"fp32": fp32_parity}
    rejected: list[dict[str, Any]] = []
    if not options.quantize:
        return variants, paths, rejected, reports
    candidates = options.candidates
    if candidates is None:
        candidates = tuple(choose_candidates(onnx.load(str(exported))))
    calibration = _calibration(ref, options)
    for q in candidates:
        rep.emit("optimize", "info", f"quantizing: {q.name}")
        out = tmp / f"{q.name}.onnx"
        try:
            qinfo = quantize(exported, out, q, calibration, tmp)
        except (LabkitError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
            rejected.append({"name": q.name, "reason": f"quantization failed: {exc}"})
            continue
        budget = options.budget.tolerance(tol.metric or metric_for_task(ref.spec.task))
        qbytes = out.read_bytes()
        qpred = session_predictor(qbytes, outputs)
        rep_q = check_parity(ref, qpred, budget, variant=q.name, real_data_only=True)
        if not rep_q.passed and (
            fix := rescue(exported, out, q, calibration, tmp, ref, outputs, budget)
        ):  # sensitive layers kept fp32
            qinfo, qpred, rep_q, qbytes = fix.info, fix.predictor, fix.report, out.read_bytes()
        reports[q.name] = rep_q
        if not rep_q.passed:
            rejected.append(
                {
                    "name": q.name,
                    "reason": "outside its accuracy budget: " + "; ".join(rep_q.failures),
                }
            )
            continue
        variants.append(
            Variant(
                q.name,
                f"models/{q.name}.onnx",
                hashlib.sha256(qbytes).hexdigest(),
                "int8",
                _self_test_tolerance(budget, golden, qpred, outputs),
                quantization=qinfo,
                parity=rep_q.summary(),
            )
        )
        paths[q.name] = out
    return variants, paths, rejected, reports


def _calibration(ref: Reference, options: HandoffOptions) -> list[dict[str, np.ndarray]]:
    if options.calibration is None:
        return [s.inputs for s in ref.sets]
    from labkit.pipeline.calibration import load_calibration

    return load_calibration(options.calibration, ref)
