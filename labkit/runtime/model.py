"""A loaded bundle: verified first, then one engine session for the chosen candidate.

Which candidate: what the caller names, else this host's tuning profile (``handoff tune``),
else the default variant on ONNX Runtime with a thread count fitted to the model's cost.
"""

from __future__ import annotations

import logging
import math
import os
import queue
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labkit.bundle.integrity import VerifiedBundle, verify
from labkit.bundle.manifest import Manifest
from labkit.bundle.parts import Variant
from labkit.bundle.tolerance import Tolerance
from labkit.errors import InputError, LabkitError
from labkit.runtime import engines
from labkit.runtime.compare import accumulate, tolerance_for
from labkit.runtime.engines import Candidate, make_session
from labkit.runtime.machine import physical_cores
from labkit.runtime.signature import TensorSpec, bind, engine_error

if TYPE_CHECKING:
    from labkit.runtime.signing import TrustedKey

log = logging.getLogger("labkit.runtime")

# Below this much work per sample and thread, waking another thread costs more than it saves
# at batch 1: small models lost 1.5-3x with all 16 cores of a server (docs/performance.md).
FLOPS_PER_THREAD = 20e6
MS_PER_THREAD = 0.5  # the same, in thread-milliseconds of batch-1 time measured at handoff


@dataclass
class SelfTestReport:
    """Golden vectors re-run on this machine, judged by the bundle's own tolerance."""

    name: str
    version: str
    variant: str
    ok: bool
    failures: list[str]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tolerance: Tolerance | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "ok": self.ok,
            "failures": list(self.failures),
            "outputs": self.outputs,
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
        }


class Model:
    """Use :func:`load` to make one."""

    def __init__(
        self,
        bundle: VerifiedBundle,
        variant: str | None,
        threads: int | None,
        *,
        candidate: Candidate | None = None,
        tuning: dict[str, Any] | None = None,
    ):
        self._bundle = bundle
        self.manifest: Manifest = bundle.manifest
        entry = self.manifest.variant(candidate.variant if candidate else variant)
        self.variant: str = entry.name
        self.variant_info: Variant = entry
        cand = candidate or Candidate(self.variant, threads=threads)
        # An engine's own default thread count ignores the cgroup CPU quota: always say.
        self.candidate = cand if cand.threads else cand.with_threads(physical_cores(), cand.streams)
        # Where the candidate came from: {"profile": path | None, "note": str | None}.
        self.tuning: dict[str, Any] = tuning or {"profile": None, "note": None}
        self.inputs: list[TensorSpec] = list(self.manifest.signature.inputs)
        self.outputs: list[TensorSpec] = list(self.manifest.signature.outputs)
        self._bytes = bundle.read(entry.file)
        # One session per stream the tuning chose; concurrent predict() calls (a server's
        # worker threads) each take a free one, so that many run in parallel.
        self._sessions: queue.SimpleQueue[engines.Session] = queue.SimpleQueue()
        for _ in range(max(1, self.candidate.streams)):
            self._sessions.put(make_session(self._bytes, candidate=self.candidate))
        self._output_names = [t.name for t in self.outputs]

    @property
    def running(self) -> dict[str, Any]:
        """What actually runs: variant, engine (and its version), precision, threads,
        streams, and the Open Inference Protocol ``platform`` string of that engine."""
        c = self.candidate
        return {
            "variant": c.variant,
            "engine": c.engine,
            "engine_version": engines.get(c.engine).version(),
            "precision": c.precision,
            "threads": c.threads,
            "streams": c.streams,
            "platform": engines.platform(c.engine),
        }

    @property
    def platform(self) -> str:
        """``onnxruntime_onnx``, ``openvino_onnx``: the engine that runs, Triton's style."""
        return engines.platform(self.candidate.engine)

    @property
    def streams(self) -> int:
        """Parallel sessions the tuning chose: ``predict`` runs up to this many at once."""
        return self.candidate.streams

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def path(self) -> Path:
        return self._bundle.root

    @property
    def labels(self) -> list[str] | None:
        labels = self.manifest.labels
        return None if labels is None else list(labels)

    def predict(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run the model: positional arrays in signature order, or ``{name: array}``."""
        feed = bind(self.inputs, args, kwargs)
        session = self._sessions.get()
        try:
            results = session.run(self._output_names, feed)
        except InputError as exc:  # the engine's words; the signature says which input
            raise engine_error(self.inputs, feed, exc) from None
        finally:
            self._sessions.put(session)
        return dict(zip(self._output_names, results))

    def golden_inputs(self) -> dict[str, np.ndarray]:
        """The golden inputs, re-hashed as read and bounded by the signature ([golden]).
        Every reader of golden files goes through here or ``VerifiedBundle.read_npz``."""
        return self._bundle.read_npz(self.manifest.golden.inputs)

    def self_test(self) -> SelfTestReport:
        golden = self.manifest.golden
        inputs = self._bundle.read_npz(golden.inputs)
        expected = self._bundle.read_npz(golden.expected)
        got = self.predict({s.name: inputs[s.name] for s in self.inputs})
        stats = accumulate([(expected, got)], self._output_names)
        tol: Tolerance = tolerance_for(self.manifest, self.variant_info, self.candidate.exact)
        label = (
            self.variant
            if self.candidate.engine == engines.DEFAULT_ENGINE and self.candidate.exact
            else self.candidate.label
        )
        fails = tol.judge(stats, label)
        return SelfTestReport(
            self.name,
            self.version,
            self.variant,
            not fails,
            fails,
            {n: s.to_dict() for n, s in stats.items()},
            tol,
        )

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return (
            f"<labkit Model {self.name} {self.version} [{self.candidate.label}] ({ins}) -> "
            f"({outs})>"
        )


def _number(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0.0


def default_threads(manifest: Manifest, variant: str | None = None) -> int | None:
    """Threads for an untuned model: enough for its cost per sample, never all by habit.

    The cost is the larger of two estimates recorded at handoff: FLOPs per sample (at
    least 2 × parameters: PyTorch's FLOP counter misses fused kernels such as the
    TransformerEncoderLayer fast path) and the variant's batch-1 time there × its cores.
    """
    model = manifest.provenance.model or {}
    flops = max(_number(model.get("flops_per_sample")), 2 * _number(model.get("parameters")))
    bench = manifest.variant(variant).benchmark or {}
    work_ms = _number(bench.get("p50_ms")) * _number(manifest.provenance.cpu.get("cores"))
    if flops <= 0 and work_ms <= 0:
        return None  # unknown cost: ONNX Runtime's own default
    wanted = max(math.ceil(flops / FLOPS_PER_THREAD), math.ceil(work_ms / MS_PER_THREAD))
    return max(1, min(physical_cores(), wanted))


def _variant_for(manifest: Manifest, entry: Variant, engine: str, *, asked: bool) -> Variant:
    """A variant ``engine`` may run (``runs_on``) when the default one is another engine's
    (ONNX Runtime's fused graph): the first that runs there, the portable ``fp32``."""
    only = ", ".join(entry.runs_on or ())
    fits = [v.name for v in manifest.variants if v.runs_on_engine(engine)]
    if asked or not fits:
        raise LabkitError(
            f"variant {entry.name!r} is made for {only} only (runs_on), not {engine!r}; "
            + (f"variants for {engine}: {', '.join(fits)}" if fits else "no variant runs there")
        )
    log.info("default variant %r is for %s only: using %r on %s", entry.name, only, fits[0], engine)
    return manifest.variant(fits[0])


def load(
    path: str | os.PathLike[str],
    *,
    variant: str | None = None,
    threads: int | None = None,
    profile: str | os.PathLike[str] | None = "auto",
    engine: str | None = None,
    precision: str | None = None,
    trusted_keys: Sequence[str | os.PathLike[str] | TrustedKey] | None = None,
    allow_reduced_precision: bool = False,
    profile_dir: str | os.PathLike[str] | None = None,
) -> Model:
    """Verify the bundle at ``path`` (every rule, before any session exists), then load it.

    ``profile="auto"`` uses this host's tuning profile (in ``profile_dir``, else
    ``$LABKIT_PROFILE_DIR``, else beside the store) when it passes every check of
    :mod:`labkit.runtime.profile`; one that does not is ignored with a one-line note in
    ``model.tuning`` (and the log), never an error. ``None`` uses none, a path uses that
    file. ``variant``, ``threads``, ``engine`` and ``precision`` given here win over it.

    With ``trusted_keys`` (PEM public key paths), only a bundle signed by one of them over
    exactly its files is loaded ([signature-trust]); this needs ``labkit[sign]``. A profile
    may then only choose the signed arithmetic: exact precision, which on an engine other
    than the default is self-tested here against the variant's own tolerance. Reduced
    precision (``bf16``) needs ``allow_reduced_precision=True`` or a profile signed by one of
    the trusted keys (``handoff sign --profile``).
    """
    from labkit.runtime.profile import resolve

    vb = verify(path)
    keys = None
    if trusted_keys is not None:
        from labkit.runtime.signing import as_trusted_keys, check_signature

        keys = as_trusted_keys(trusted_keys)
        check_signature(vb, keys)
    prof, note = resolve(
        vb.root,
        vb.manifest,
        profile,
        directory=profile_dir,
        trusted_keys=keys,
        allow_reduced_precision=allow_reduced_precision,
    )
    if prof is not None and variant not in (None, prof.candidate.variant):
        note = (
            f"tuning profile {prof.path} ignored: it chose variant "
            f"{prof.candidate.variant!r}, variant={variant!r} was asked for"
        )
        prof = None
    model = None
    if prof is not None and engine is None and precision is None:
        chosen = prof.candidate
        cand = chosen.with_threads(threads or chosen.threads, chosen.streams)
        model, why = _profiled(vb, cand, check=keys is not None)
        if model is None:
            note = f"tuning profile {prof.path} ignored: {why}"
    if model is None:
        name = variant or (prof.candidate.variant if prof is not None else None)
        entry = vb.manifest.variant(name)
        wanted = engine or engines.DEFAULT_ENGINE
        if not entry.runs_on_engine(wanted):
            entry = _variant_for(vb.manifest, entry, wanted, asked=variant is not None)
        cand = Candidate(
            entry.name,
            wanted,
            precision or engines.EXACT,
            threads if threads else default_threads(vb.manifest, entry.name),
        )
        model = Model(vb, None, None, candidate=cand)
        prof = None
    if note:
        log.info(note)
    model.tuning = {"profile": str(prof.path) if prof else None, "note": note}
    return model


def _profiled(vb: VerifiedBundle, cand: Candidate, *, check: bool) -> tuple[Model | None, str]:
    """The model as a profile chose it, or (None, why not): a choice that fails to load
    here, or (``check``: under trusted keys) one on another engine than the default whose
    golden self-test misses the variant's tolerance, is ignored rather than fatal."""
    try:
        model = Model(vb, None, None, candidate=cand)
        if check and cand.engine != engines.DEFAULT_ENGINE:
            report = model.self_test()
            if not report.ok:
                return None, (
                    f"{cand.label} misses the signed variant's tolerance here: "
                    + "; ".join(report.failures)
                )
    except Exception as exc:  # noqa: BLE001 - an engine's errors are its own types
        first = (str(exc).strip().splitlines() or [""])[0]
        return None, f"{cand.label} failed to load here ({type(exc).__name__}: {first[:200]})"
    return model, ""
