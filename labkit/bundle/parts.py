"""The manifest's parts as frozen types: files, variants, golden set, fingerprint, change,
provenance. Each ``from_dict`` checks its own fields ([schema]); rules that relate parts to
each other ([variants], [golden], [listing]) are checked by :class:`~labkit.bundle.Manifest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.bundle._check import check_type, extra, fail, hex64, obj, optional, require
from labkit.bundle.changes import CHANGE_KINDS
from labkit.bundle.checks import EngineCheck, Quantization
from labkit.bundle.paths import check_path
from labkit.bundle.tolerance import Tolerance

Doc = Mapping[str, Any]


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int  # "bytes" in JSON

    @classmethod
    def from_dict(cls, d: Any, where: str) -> FileEntry:
        f = obj(d, where)
        path = check_path(require(f, "path", str, f"{where}."))
        sha = hex64(require(f, "sha256", str, f"{where}."), f"{where}.sha256")
        size = require(f, "bytes", int, f"{where}.")
        if size < 0:
            raise fail(f"{where}.bytes", "must be >= 0")
        return cls(path, sha, size)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.size}


_VARIANT_KEYS = (
    "name",
    "file",
    "sha256",
    "precision",
    "tolerance",
    "quantization",
    "optimization",
    "parity",
    "benchmark",
    "runs_on",
    "checks",
)


@dataclass(frozen=True)
class Variant:
    """One ONNX graph of the bundle and the tolerance its self-test is judged by."""

    name: str
    file: str
    sha256: str
    precision: str
    tolerance: Tolerance
    quantization: Quantization | None = None  # how it was quantized and judged; None: fp32
    optimization: Doc | None = None  # what the fp32 optimizer did
    parity: Doc | None = None  # ParityReport.summary(): passed, max_rel, metric…
    benchmark: Doc | None = None  # latency/throughput and "speedup" vs PyTorch
    # The engines whose arithmetic this graph is meant for (e.g. ["onnxruntime"] for a graph
    # with com.microsoft contrib ops); None = any engine (a portable graph, or a bundle
    # written before the field existed). Candidates pair a variant only with these engines.
    runs_on: tuple[str, ...] | None = None
    # Every (engine, precision) judged at handoff on the machine that made the bundle, passed
    # or rejected with the reason; None in bundles written before it was recorded.
    checks: tuple[EngineCheck, ...] | None = None
    extra: Doc = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Variant:
        v = obj(d, where)
        p = f"{where}."
        return cls(
            name=require(v, "name", str, p),
            file=check_path(require(v, "file", str, p)),
            sha256=require(v, "sha256", str, p),
            precision=require(v, "precision", str, p),
            tolerance=Tolerance.from_dict(require(v, "tolerance", dict, p), f"{p}tolerance"),
            quantization=_quantization(optional(v, "quantization", dict, p), f"{p}quantization"),
            optimization=optional(v, "optimization", dict, p),
            parity=optional(v, "parity", dict, p),
            benchmark=optional(v, "benchmark", dict, p),
            runs_on=_engine_names(optional(v, "runs_on", list, p), f"{p}runs_on"),
            checks=_checks(optional(v, "checks", list, p), f"{p}checks"),
            extra=extra(v, _VARIANT_KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "precision": self.precision,
            "tolerance": self.tolerance.to_dict(),
            "quantization": self.quantization.to_dict() if self.quantization else None,
            "optimization": self.optimization,
            "parity": self.parity,
            "benchmark": self.benchmark,
            "runs_on": list(self.runs_on) if self.runs_on is not None else None,
            "checks": None if self.checks is None else [c.to_dict() for c in self.checks],
        }

    def runs_on_engine(self, engine: str) -> bool:
        """Whether ``engine`` may run this graph (see ``runs_on``)."""
        return self.runs_on is None or engine in self.runs_on

    def passed(self) -> tuple[EngineCheck, ...]:
        """The engine configurations that passed at handoff (none recorded: empty)."""
        return tuple(c for c in self.checks or () if c.passed)

    def rejected(self) -> tuple[EngineCheck, ...]:
        """The engine configurations rejected at handoff, each with its ``reason``."""
        return tuple(c for c in self.checks or () if not c.passed)

    @property
    def speedup(self) -> Doc | None:
        """``{"p50": ×, "throughput": ×}`` against PyTorch eager, None when not benchmarked."""
        return (self.benchmark or {}).get("speedup")


def _quantization(value: dict[str, Any] | None, where: str) -> Quantization | None:
    return None if value is None else Quantization.from_dict(value, where)


def _checks(value: list[Any] | None, where: str) -> tuple[EngineCheck, ...] | None:
    if value is None:
        return None
    checks = tuple(EngineCheck.from_dict(c, f"{where}[{i}]") for i, c in enumerate(value))
    seen = [(c.engine, c.precision) for c in checks]
    if len(set(seen)) != len(seen):
        raise fail(where, "lists an (engine, precision) twice")
    return checks


def _engine_names(value: list[Any] | None, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not value or len(value) > 16:
        raise fail(where, "must list 1 to 16 engine names, or be absent for any engine")
    names = tuple(check_type(n, str, f"{where}[{i}]") for i, n in enumerate(value))
    if any(
        not n or len(n) > 64 or not n.replace("_", "").replace("-", "").isalnum() for n in names
    ):
        raise fail(where, f"engine names are short identifiers, got {list(names)!r}")
    if len(set(names)) != len(names):
        raise fail(where, f"lists an engine twice: {list(names)!r}")
    return names


@dataclass(frozen=True)
class Golden:
    inputs: str
    expected: str
    rows: int | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "golden") -> Golden:
        g = obj(d, where)
        p = f"{where}."
        rows = optional(g, "rows", int, p)
        return cls(
            check_path(require(g, "inputs", str, p)),
            check_path(require(g, "expected", str, p)),
            rows,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": self.inputs, "expected": self.expected}
        if self.rows is not None:
            out["rows"] = self.rows
        return out


@dataclass(frozen=True)
class Fingerprint:
    """SHA-256 digests that decide the version bump (see docs/bundle-format.md, Versions)."""

    architecture: str
    weights: str
    signature: str
    metadata: str

    @classmethod
    def from_dict(cls, d: Any, where: str = "fingerprint") -> Fingerprint:
        f = obj(d, where)
        keys = ("architecture", "weights", "signature", "metadata")
        a, w, s, m = (require(f, k, str, f"{where}.") for k in keys)
        return cls(a, w, s, m)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "weights": self.weights,
            "signature": self.signature,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Change:
    """How this version differs from the one before it (``from`` in JSON is ``previous``)."""

    kind: str  # first | major | minor | patch
    previous: str | None
    reason: str

    @classmethod
    def from_dict(cls, d: Any, where: str = "change") -> Change:
        c = obj(d, where)
        kind = require(c, "kind", str, f"{where}.")
        if kind not in CHANGE_KINDS:
            raise fail(f"{where}.kind", f"{kind!r} is not one of {list(CHANGE_KINDS)}")
        return cls(
            kind,
            require(c, "from", (str, type(None)), f"{where}."),
            require(c, "reason", str, f"{where}."),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.previous, "reason": self.reason}


FALLBACK_PREFIX = "dynamo exporter failed: "


@dataclass(frozen=True)
class Exporter:
    name: str  # "dynamo" | "torchscript"
    opset: int
    fallback_reason: str | None = None
    torch: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "provenance.exporter") -> Exporter:
        e = obj(d, where)
        p = f"{where}."
        return cls(
            require(e, "name", str, p),
            require(e, "opset", int, p),
            require(e, "fallback_reason", (str, type(None)), p),
            optional(e, "torch", str, p),
        )

    def describe(self) -> str:
        """One line for the export stage, ``report.md`` and ``handoff inspect``: a fallback
        from the dynamo exporter is said plainly, with its reason."""
        text = f"exported with the {self.name} exporter, opset {self.opset}"
        if self.fallback_reason:
            reason = self.fallback_reason.removeprefix(FALLBACK_PREFIX)
            text += f"; FELL BACK from the dynamo exporter, which failed: {reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "opset": self.opset,
            "fallback_reason": self.fallback_reason,
        }
        if self.torch is not None:
            out["torch"] = self.torch
        return out


@dataclass(frozen=True)
class Source:
    """The script or notebook the model came from, and its copy inside the bundle."""

    kind: str  # "script" | "notebook"
    path: str  # where it was, on the machine that made the bundle
    sha256: str
    copy: str  # a listed file under source/

    @classmethod
    def from_dict(cls, d: Any, where: str = "provenance.source") -> Source:
        s = obj(d, where)
        p = f"{where}."
        return cls(
            require(s, "kind", str, p),
            require(s, "path", str, p),
            hex64(require(s, "sha256", str, p), f"{p}sha256"),
            check_path(require(s, "copy", str, p)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "copy": self.copy}


_PROVENANCE_KEYS = (
    "source",
    "exporter",
    "libraries",
    "cpu",
    "options",
    "model",
    "stage_seconds",
)


@dataclass(frozen=True)
class Provenance:
    """How the bundle was made: source, exporter, library versions, CPU, options, model."""

    source: Source | None
    exporter: Exporter
    libraries: Mapping[str, str]
    cpu: Doc
    options: Doc | None = None  # HandoffOptions.to_dict()
    model: Doc | None = None  # class, parameters, flops_per_sample
    # Wall time of each handoff stage (freeze … benchmark), seconds; None: not recorded.
    stage_seconds: Mapping[str, float] | None = None
    extra: Doc = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, where: str = "provenance") -> Provenance:
        v = obj(d, where)
        p = f"{where}."
        src = require(v, "source", (dict, type(None)), p)
        libraries = require(v, "libraries", dict, p)
        for k, val in libraries.items():
            check_type(val, str, f"{p}libraries.{k}")
        return cls(
            source=None if src is None else Source.from_dict(src, f"{p}source"),
            exporter=Exporter.from_dict(require(v, "exporter", dict, p), f"{p}exporter"),
            libraries=libraries,
            cpu=require(v, "cpu", dict, p),
            options=optional(v, "options", dict, p),
            model=optional(v, "model", dict, p),
            stage_seconds=_seconds(optional(v, "stage_seconds", dict, p), f"{p}stage_seconds"),
            extra=extra(v, _PROVENANCE_KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "source": self.source.to_dict() if self.source else None,
            "exporter": self.exporter.to_dict(),
            "libraries": dict(self.libraries),
            "cpu": dict(self.cpu),
        }
        if self.options is not None:
            out["options"] = self.options
        if self.model is not None:
            out["model"] = self.model
        if self.stage_seconds is not None:
            out["stage_seconds"] = dict(self.stage_seconds)
        return out


def _seconds(value: Doc | None, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    out = {}
    for k, s in value.items():
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0 <= s < float("inf"):
            raise fail(f"{where}.{k}", f"must be a number of seconds >= 0, got {s!r}")
        out[k] = float(s)
    return out
