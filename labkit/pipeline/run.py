"""``run()``: the one place that chains the stages, owns temp dirs and reports progress."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import onnx

from labkit.bundle import Baseline, Fingerprint, Signature, Store, write_bundle
from labkit.bundle.tolerance import metric_for_task
from labkit.errors import LabkitError, ParityError
from labkit.model_state import preserved
from labkit.pipeline import default_rule, graph, recipes
from labkit.pipeline.assemble import assemble, metadata
from labkit.pipeline.benchmark import benchmark, other_engines
from labkit.pipeline.export import export
from labkit.pipeline.freeze import freeze, golden_set
from labkit.pipeline.judge import passed_candidates
from labkit.pipeline.options import STAGES, HandoffOptions, ProgressEvent
from labkit.pipeline.parity import check_parity, fp32_tolerance, session_predictor
from labkit.pipeline.result import HandoffResult
from labkit.pipeline.variants import optimize
from labkit.registry import ModelSpec
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
            fingerprint = Fingerprint.from_dict(graph.fingerprint(raw, metadata(spec)))
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
            ctx = recipes.Context(
                ref,
                info.path,
                tmp,
                options,
                tol,
                options.budget.tolerance(tol.metric or metric_for_task(spec.task)),
                emit=lambda msg: rep.emit("optimize", "info", msg),
            )
            outcome = optimize(ctx, recipes.selected(options), golden, exported_parity=raw_parity)
            variants = outcome.variants
        bench = None
        with rep.stage("benchmark"):
            if options.benchmark:
                bench = benchmark(
                    spec,
                    outcome.paths,
                    ref.sets[0].inputs,
                    options.bench,
                    tmp,
                    on_round=lambda i, n: rep.emit("benchmark", "info", f"round {i}/{n}", i / n),
                    # Only configurations that passed parity here are timed.
                    extra=other_engines(passed_candidates(variants)),
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
        with rep.stage("bundle"):
            plan = st.plan(name, fingerprint)  # again: another handoff may have landed
            made = assemble(
                spec=spec,
                name=name,
                plan=plan,
                ref=ref,
                golden=golden,
                info=info,
                signature=signature,
                fingerprint=fingerprint,
                exported_parity=raw_parity,
                outcome=outcome,
                variants=variants,
                rule=rule,
                baseline=baseline,
                stage_seconds=dict(rep.seconds),  # the bundle stage is still running
                bench=bench,
                options=options,
                source=src,
            )
            path = write_bundle(
                st.root, name, plan.version, made.files, made.manifest, modes=made.modes
            )
            rep.emit("bundle", "info", f"wrote {path}")
            signed_by = None
            if key:
                signed_by = sign_bundle(path, key)
                rep.emit("bundle", "info", f"signed with key sha256:{signed_by[:16]}…")
    return HandoffResult(
        st.manifest(name, plan.version),
        path,
        plan,
        rejected=outcome.rejected,
        parity=made.parity,
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
