"""The engine seam: what runs a bundle's ONNX bytes, at which precision.

A *candidate* is one way to run a bundle: (variant, engine, precision, threads, streams).
Engines receive only bytes that were verified against the manifest, never a path, so the
integrity guarantees of the bundle hold whatever engine runs it. ONNX Runtime is always
there (the default); OpenVINO is an optional extra, imported only when it is used.

Precision is the engine's arithmetic, not the variant's: ``fp32`` runs the graph as stored
(an int8 variant stays int8), ``bf16`` lets the engine compute in bfloat16. Only ``fp32``
is *exact*; anything else is judged like a quantized variant (:mod:`.judging`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.bundle.manifest import Manifest
    from labkit.bundle.parts import Variant

EXACT = "fp32"
DEFAULT_ENGINE = "onnxruntime"


class Session(Protocol):
    """What an engine hands back: ONNX Runtime's ``run`` shape, nothing more."""

    def run(
        self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]: ...


class Engine(Protocol):
    """An engine. It MAY also set ``isolated = True``: then a handoff judges it in a
    process of its own (:mod:`labkit.runtime.isolated`) rather than the researcher's."""

    name: str

    def available(self) -> bool: ...

    def version(self) -> str | None: ...

    def precisions(self, variant: Variant, cpu: Mapping[str, Any]) -> tuple[str, ...]:
        """The precisions this engine offers for ``variant`` on a CPU like ``cpu``."""
        ...

    def session(
        self, model_bytes: bytes, *, precision: str = EXACT, threads: int | None = None
    ) -> Session: ...


@dataclass(frozen=True)
class Candidate:
    """One way to run a bundle on this host."""

    variant: str
    engine: str = DEFAULT_ENGINE
    precision: str = EXACT
    threads: int | None = None
    streams: int = 1

    @property
    def exact(self) -> bool:
        return self.precision == EXACT

    @property
    def label(self) -> str:
        """``int8-static/openvino-fp32`` plus ``@2t`` / ``x2`` for threads and streams."""
        out = f"{self.variant}/{self.engine}-{self.precision}"
        if self.threads:
            out += f"@{self.threads}t"
        if self.streams > 1:
            out += f"x{self.streams}"
        return out

    def with_threads(self, threads: int | None, streams: int = 1) -> Candidate:
        return Candidate(self.variant, self.engine, self.precision, threads, streams)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        threads = d.get("threads")
        return cls(
            str(d["variant"]),
            str(d.get("engine", DEFAULT_ENGINE)),
            str(d.get("precision", EXACT)),
            int(threads) if threads else None,
            int(d.get("streams", 1)),
        )


def speed_prior(c: Candidate, quantized_graph: bool) -> int:
    """How likely a configuration is to be fast before anything is timed on this host, lower
    first: 0 reduced precision (an engine offers it only where the CPU computes it natively,
    e.g. bf16 on AVX-512 BF16/AMX), 1 a quantized graph run as stored, 2 exact fp32. What
    the handoff times first when it cannot time every engine, and what ``handoff tune``
    screens first when its budget cannot reach every candidate."""
    if not c.exact:
        return 0
    return 1 if quantized_graph else 2


_ENGINES: dict[str, Engine] = {}


def register(engine: Engine) -> None:
    """Make an engine available by name (the built-in ones register themselves)."""
    _ENGINES[engine.name] = engine


def unregister(name: str) -> None:
    _ENGINES.pop(name, None)


def get(name: str) -> Engine:
    _builtins()
    if name not in _ENGINES:
        raise LabkitError(f"unknown engine {name!r}; known engines: {', '.join(sorted(_ENGINES))}")
    return _ENGINES[name]


def engines() -> list[Engine]:
    """Every registered engine whose package is installed, the default first."""
    _builtins()
    found = [e for e in _ENGINES.values() if e.available()]
    return sorted(found, key=lambda e: (e.name != DEFAULT_ENGINE, e.name))


def versions() -> dict[str, str]:
    """Engine name → version of every available engine (what a host profile is keyed on)."""
    return {e.name: v for e in engines() if (v := e.version()) is not None}


def platform(name: str) -> str:
    """The Open Inference Protocol ``platform`` of a model run by engine ``name``, in
    Triton's ``<backend>_<format>`` style: ``onnxruntime_onnx``, ``openvino_onnx``."""
    return f"{name}_onnx"


def make_session(model_bytes: bytes, candidate: Candidate) -> Session:
    return get(candidate.engine).session(
        model_bytes, precision=candidate.precision, threads=candidate.threads
    )


def candidates(
    manifest: Manifest, cpu: Mapping[str, Any], *, engine_names: Sequence[str] | None = None
) -> list[Candidate]:
    """Every (variant, engine, precision) this host could run the bundle with: a variant
    only with the engines it ``runs_on``."""
    per_variant = {
        v.name: configurations(v, cpu, engine_names=engine_names) for v in manifest.variants
    }
    # Engine-major order (the default engine's candidates first), as tuning expects.
    return [
        c
        for e in engines()
        for v in manifest.variants
        for c in per_variant[v.name]
        if c.engine == e.name
    ]


def configurations(
    variant: Variant, cpu: Mapping[str, Any], *, engine_names: Sequence[str] | None = None
) -> list[Candidate]:
    """Every (engine, precision) this host offers for one variant, the default engine
    first: only engines the variant ``runs_on``. The handoff judges each of these."""
    return [
        Candidate(variant.name, e.name, p)
        for e in engines()
        if (engine_names is None or e.name in engine_names) and variant.runs_on_engine(e.name)
        for p in e.precisions(variant, cpu)
    ]


def _builtins() -> None:
    # Registered on first use so that importing labkit.runtime stays cheap; the engine
    # modules themselves import their packages lazily.
    if "onnxruntime" not in _ENGINES:
        from labkit.runtime.engines.openvino import OpenVINOEngine
        from labkit.runtime.engines.ort import ORTEngine

        register(ORTEngine())
        _ENGINES.setdefault("openvino", OpenVINOEngine())


__all__ = [
    "DEFAULT_ENGINE",
    "EXACT",
    "Candidate",
    "Engine",
    "Session",
    "candidates",
    "configurations",
    "engines",
    "get",
    "make_session",
    "platform",
    "register",
    "speed_prior",
    "unregister",
    "versions",
]
