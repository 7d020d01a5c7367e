"""A handoff asked for and what it reports back: the one vocabulary of every front-end.

The Handoff button's comm, ``handoff export notebook.ipynb`` (which runs inside the
notebook's kernel) and ``handoff export file.py:fn`` all describe a handoff as a
:class:`HandoffRequest` and hear back a stream of :class:`HandoffEvent` (progress…, then one
result or one error per model). :func:`labkit.pipeline.runner.run_request` is the one runner.

Standard library only, on purpose: the kernel comm, the CLI's stage printer and the JSON
Schema generator (``scripts/gen_schema.py``, which also writes the TypeScript copy of these
constants) import it without loading the pipeline, torch or onnx.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from labkit.errors import HandoffRequestError

__all__ = [
    "STAGES",
    "STAGE_STATUSES",
    "ErrorInfo",
    "HandoffEvent",
    "HandoffRequest",
    "ProgressEvent",
    "RequestOptions",
    "MAX_SOURCE_BYTES",
    "SOURCE_SUFFIXES",
    "check_fraction",
    "recorded_source_path",
    "resolve_source",
    "resolve_store",
]

Stage = Literal["freeze", "export", "parity", "optimize", "benchmark", "bundle"]
STAGES: tuple[str, ...] = get_args(Stage)
# "skip": the stage did not run (e.g. nothing changed since the stored version).
StageStatus = Literal["start", "done", "fail", "info", "skip"]
STAGE_STATUSES: tuple[str, ...] = get_args(StageStatus)
_MAX_TEXT = 4096


def _check_keys(what: str, data: object, known: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise HandoffRequestError(f"{what} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise HandoffRequestError(
            f"{what} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return data


def _opt_str(what: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise HandoffRequestError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _bool(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise HandoffRequestError(f"{what} must be true or false, got {value!r}")
    return value


def check_fraction(what: str, value: object) -> float | None:
    """A budget fraction in [0, 1] (or None); ``what`` names it as the user wrote it."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise HandoffRequestError(f"{what} {value!r} must be between 0 and 1, e.g. {what} 0.99")
    return float(value)


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a stage; ``elapsed_s`` (on done/fail) is measured where the stage ran."""

    stage: str  # one of STAGES, or "notebook" while a notebook runs
    status: str = field(metadata={"enum": STAGE_STATUSES})
    message: str = ""
    fraction: float | None = None
    elapsed_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ProgressEvent:
        d = _check_keys("progress event", data, {f.name for f in fields(cls)})
        status = d.get("status")
        if status not in STAGE_STATUSES:
            raise HandoffRequestError(
                f"progress status {status!r} is not one of {', '.join(STAGE_STATUSES)}"
            )
        num = {k: d.get(k) for k in ("fraction", "elapsed_s")}
        for k, v in num.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise HandoffRequestError(f"progress {k} must be a number, got {v!r}")
        return cls(
            str(d.get("stage", "")),
            status,
            str(d.get("message") or ""),
            None if num["fraction"] is None else float(num["fraction"]),
            None if num["elapsed_s"] is None else float(num["elapsed_s"]),
        )


@dataclass(frozen=True)
class RequestOptions:
    """What a user may choose about a handoff, JSON-safe; the runner turns it into
    :class:`labkit.pipeline.HandoffOptions` in one place."""

    quantize: bool = True
    benchmark: bool = True
    quick: bool = False  # a short benchmark
    name: str | None = None  # bundle name, overrides the registered name
    calibration: str | None = None  # .npz with one array per input
    min_top1: float | None = None  # accuracy budget of quantized classifiers
    min_cosine: float | None = None  # accuracy budget of other quantized models

    def __post_init__(self) -> None:
        check_fraction("min_top1", self.min_top1)
        check_fraction("min_cosine", self.min_cosine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> RequestOptions:
        d = _check_keys("options", data, {f.name for f in fields(cls)})
        return cls(
            quantize=_bool("options.quantize", d.get("quantize", True)),
            benchmark=_bool("options.benchmark", d.get("benchmark", True)),
            quick=_bool("options.quick", d.get("quick", False)),
            name=_opt_str("options.name", d.get("name")),
            calibration=_opt_str("options.calibration", d.get("calibration")),
            min_top1=check_fraction("options.min_top1", d.get("min_top1")),
            min_cosine=check_fraction("options.min_cosine", d.get("min_cosine")),
        )


@dataclass(frozen=True)
class HandoffRequest:
    """Which registered model(s) to hand off, to which store, recording which source file.

    ``model`` None means the only registered model, or every one when ``all_models``
    (``handoff export notebook.ipynb``); ``store`` None means ``$LABKIT_STORE``, else
    ``./bundles``; relative paths are resolved against the kernel's working directory.
    """

    model: str | None = None
    store: str | None = None
    source: str | None = None  # the notebook or script, copied into the bundle
    all_models: bool = False
    options: RequestOptions = field(default_factory=RequestOptions)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: object) -> HandoffRequest:
        d = _check_keys("handoff request", data, {f.name for f in fields(cls)})
        return cls(
            model=_opt_str("model", d.get("model")),
            store=_opt_str("store", d.get("store")),
            source=_opt_str("source", d.get("source")),
            all_models=_bool("all_models", d.get("all_models", False)),
            options=RequestOptions.from_dict(d.get("options") or {}),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """A failed handoff: ``type`` is the error class (or a request-level kind such as
    ``ModelNotChosen``), ``stage`` the stage that failed, if one did."""

    type: str
    message: str
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EventKind = Literal["progress", "result", "error"]


@dataclass(frozen=True)
class HandoffEvent:
    """The one thing a running handoff reports: progress, a result (one per model), or the
    error that ended it. ``result`` is ``HandoffResult.to_dict()``, ``store`` the store it
    is in, ``headline`` one line saying what happened (``labkit.pipeline.runner.headline``)."""

    kind: EventKind
    progress: ProgressEvent | None = None
    result: dict[str, Any] | None = None
    store: str | None = None
    headline: str | None = None
    error: ErrorInfo | None = None

    @classmethod
    def of_progress(cls, event: ProgressEvent) -> HandoffEvent:
        return cls("progress", progress=event)

    @classmethod
    def of_result(cls, result: dict[str, Any], store: str, headline: str) -> HandoffEvent:
        return cls("result", result=result, store=store, headline=headline)

    @classmethod
    def of_error(cls, etype: str, message: str, stage: str | None = None) -> HandoffEvent:
        return cls("error", error=ErrorInfo(etype, message, stage))

    def to_dict(self) -> dict[str, Any]:
        if self.progress is not None:
            return {"kind": self.kind, "progress": self.progress.to_dict()}
        if self.error is not None:
            return {"kind": self.kind, "error": self.error.to_dict()}
        return {
            "kind": self.kind,
            "result": self.result,
            "store": self.store,
            "headline": self.headline,
        }

    @classmethod
    def from_dict(cls, data: object) -> HandoffEvent:
        d = _check_keys("handoff event", data, {f.name for f in fields(cls)})
        kind = d.get("kind")
        if kind == "progress":
            return cls.of_progress(ProgressEvent.from_dict(d.get("progress")))
        if kind == "result" and isinstance(d.get("result"), dict):
            return cls.of_result(
                d["result"], str(d.get("store") or ""), str(d.get("headline") or "")
            )
        err = d.get("error")
        if kind == "error" and isinstance(err, dict) and isinstance(err.get("message"), str):
            return cls.of_error(
                str(err.get("type") or "Error"),
                err["message"],
                _opt_str("error.stage", err.get("stage")),
            )
        raise HandoffRequestError(
            f"handoff event of kind {kind!r} is malformed: needs progress, result or error"
        )


def resolve_store(given: str | None, cwd: Path) -> Path:
    """The store a request means: ``given``, else ``$LABKIT_STORE``, else ``bundles``;
    relative paths are taken from ``cwd`` (the kernel's, or the shell's, folder)."""
    from labkit.bundle.store import default_store

    path = Path(given).expanduser() if given else default_store()
    return (path if path.is_absolute() else cwd / path).resolve()


# What a handoff may copy into a bundle as its source ([source] in docs/bundle-format.md):
# the researcher's notebook or script, never any file a request names (a hostile page could
# name the system's password file through the comm).
SOURCE_SUFFIXES = (".py", ".ipynb")
MAX_SOURCE_BYTES = 32 << 20


def _source_refused(given: str, why: str) -> HandoffRequestError:
    return HandoffRequestError(
        f"source {given!r} {why}; a handoff copies only a .py script or an .ipynb notebook "
        f"of at most {MAX_SOURCE_BYTES >> 20} MiB from under the working directory"
    )


def resolve_source(given: str | None, cwd: Path) -> Path | None:
    """The notebook or script on disk for a (possibly server-relative) path, if found.

    JupyterLab names a notebook relative to the server's root, the kernel runs in the
    notebook's folder: so the bare file name in ``cwd`` is tried first. Only a ``.py`` or
    ``.ipynb`` regular file of at most MAX_SOURCE_BYTES whose real path (links resolved) lies
    under ``cwd`` is accepted; anything else is a HandoffRequestError. The bytes are read
    later through the bundle layer's safe reader, which checks the descriptor again.
    """
    if not given:
        return None
    path = Path(given).expanduser()
    if path.suffix not in SOURCE_SUFFIXES:
        raise _source_refused(given, "is neither a .py nor an .ipynb file")
    root = cwd.resolve()
    candidates = [path] if path.is_absolute() else [cwd / path.name, cwd / path]
    for candidate in candidates:
        if not os.path.lexists(candidate):
            continue
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise _source_refused(given, f"is not under the working directory {root}")
        try:
            st = os.stat(real)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise _source_refused(given, "is not a regular file")
        if st.st_size > MAX_SOURCE_BYTES:
            raise _source_refused(given, f"is {st.st_size} bytes")
        return real
    return None


def recorded_source_path(path: Path, cwd: Path | None = None) -> str:
    """How provenance names a source: relative to the project (the working directory) when
    it lies under it, else by its file name alone, so a bundle never records the
    researcher's home or folder layout."""
    real, root = path.resolve(), (cwd or Path.cwd()).resolve()
    if root in real.parents:
        return real.relative_to(root).as_posix()
    return real.name
