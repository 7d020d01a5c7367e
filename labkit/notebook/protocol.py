"""The message protocol between the JupyterLab extension and the kernel.

The constants (version, target, request types, with the stage list of
:mod:`labkit.request`) are written into ``extension/src/generated/contract.ts`` by
``scripts/gen_schema.py``, and a test keeps that file current: change them here only, and bump
:data:`PROTOCOL_VERSION` whenever a message changes shape. Messages travel over a Jupyter
comm whose target is :data:`TARGET`. Every message is an envelope carrying the protocol
version, so either side refuses a peer it does not speak to::

    frontend → kernel  {"protocol": 2, "kind": "request",  "id": "r1", "type": "handoff",
                        "payload": HandoffRequest}
    kernel → frontend  {"protocol": 2, "kind": "progress", "id": "r1",
                        "payload": ProgressEvent}
    kernel → frontend  {"protocol": 2, "kind": "reply",    "id": "r1", "ok": true,
                        "payload": {...}}       # handoff: {"result": ..., "store": ...}
    kernel → frontend  {"protocol": 2, "kind": "reply",    "id": "r1", "ok": false,
                        "error": ErrorInfo}      # {"type", "message", "stage"}

A handoff's :class:`~labkit.request.HandoffEvent` stream maps onto these: progress events
become progress messages, the result the reply, an error the error reply. A
``handoff_trial`` request (the per-trial button of an experiment's output) is answered the
same way: progress messages, then a :class:`HandoffReply` or an error reply.

An experiment shows its trials as a display output of mimetype :data:`EXPERIMENT_MIME`
whose data is an :class:`ExperimentOutput` (with an HTML fallback). It is saved in the
notebook, so the extension can draw a "hand off" button per trial after the notebook is
reopened or the kernel restarted: the button sends a :class:`TrialHandoffRequest` built from
that data.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from labkit.errors import HandoffRequestError
from labkit.request import ProgressEvent, RequestOptions

__all__ = [
    "EXPERIMENT_MIME",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "TARGET",
    "BundleSummary",
    "BundlesReply",
    "DiffReply",
    "ExperimentOutput",
    "HandoffReply",
    "HelloReply",
    "ModelInfo",
    "ModelsReply",
    "TensorInfo",
    "TrialHandoffRequest",
    "TrialRow",
    "ProtocolError",
    "ReportReply",
    "Request",
    "error_reply",
    "optional_str",
    "parse_request",
    "progress_message",
    "reply",
    "request_id",
]

# 2: the handoff payload is a HandoffRequest; progress has "skip" and elapsed_s.
# 3: "handoff_trial" (TrialHandoffRequest), and the experiment output (EXPERIMENT_MIME);
#    "bundle_report" and "bundle_diff" (the Bundles panel's report and diff).
PROTOCOL_VERSION = 3
TARGET = "labkit.handoff"
REQUEST_TYPES = (
    "hello",
    "list_models",
    "handoff",
    "list_bundles",
    "handoff_trial",
    "bundle_report",
    "bundle_diff",
)
EXPERIMENT_MIME = "application/vnd.labkit.experiment+json"
TRIAL_STATUSES = ("ok", "failed")
RUN_STATES = ("running", "done", "interrupted")
_MAX_ID = 128
_MAX_TEXT = 4096
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ProtocolError(ValueError):
    """A message that does not follow this protocol (shape, version or type)."""


@dataclass(frozen=True)
class Request:
    id: str
    type: str
    payload: dict[str, Any] = field(default_factory=dict)


# Reply payloads, one type per request: the JSON Schema and the extension's TypeScript
# interfaces are generated from them (scripts/gen_schema.py).


@dataclass(frozen=True)
class HelloReply:
    """Who answers: the kernel's protocol and labkit versions, default store and folder."""

    protocol: int
    labkit_version: str
    store: str
    cwd: str


@dataclass(frozen=True)
class TensorInfo:
    shape: list[int] | None
    dtype: str


@dataclass(frozen=True)
class ModelInfo:
    """A model registered in the kernel, as the Handoff dialog lists it."""

    name: str
    task: str | None
    inputs: list[TensorInfo]
    parameters: int | None
    model_class: str


@dataclass(frozen=True)
class ModelsReply:
    models: list[ModelInfo]
    store: str
    hint: str


@dataclass(frozen=True)
class BundleSummary:
    """One bundle name in a store, as the side panel shows it: its versions and a summary
    of the latest (``labkit.notebook.bundles.list_bundles`` writes it)."""

    name: str
    versions: list[str]
    latest: str
    path: str
    default_variant: str | None
    speedup: float | None  # batch-1 p50 speed-up of the default variant
    parity_ok: bool | None
    problem: str | None = None  # why the latest version could not be read
    version: str | None = None
    created: str | None = None
    variants: list[str] | None = None


@dataclass(frozen=True)
class BundlesReply:
    """The bundles of one store."""

    store: str
    bundles: list[BundleSummary]


@dataclass(frozen=True)
class ReportReply:
    """A bundle's ``report.md`` (read from the verified bundle), for the Bundles panel."""

    name: str
    version: str
    path: str
    markdown: str


@dataclass(frozen=True)
class DiffReply:
    """What changed from ``from_version`` to ``to_version`` of one bundle: ``diff`` is
    ``handoff diff --json`` (``labkit.runtime.drift.bundle_diff``), ``lines`` what
    ``handoff diff`` prints."""

    name: str
    from_version: str
    to_version: str
    diff: dict[str, Any]
    lines: list[str]


@dataclass(frozen=True)
class HandoffReply:
    """A finished handoff: ``result`` is ``HandoffResult.to_dict()``, ``headline`` says in
    one line what happened (e.g. "no new version: identical to 1.0.0"), ``figure`` the speed
    chart as plotly JSON (``labkit.notebook.charts.speed_figure``; None when no variant was
    benchmarked or plotly is not installed), so the extension draws the kernel's figure."""

    result: dict[str, Any]
    store: str
    headline: str
    figure: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrialRow:
    """One trial as an experiment's output lists it. ``weights_saved``: its trained weights
    are in the experiment store, so it can be handed off after a kernel restart (the model is
    rebuilt by ``model_fn``); ``pareto`` and ``best`` follow the experiment's goal."""

    id: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    latency_ms: float | None
    status: str = field(metadata={"enum": TRIAL_STATUSES})
    weights_saved: bool
    pareto: bool
    best: bool


@dataclass(frozen=True)
class ExperimentOutput:
    """The data of an experiment's trials output (mimetype ``EXPERIMENT_MIME``): what the
    extension needs to draw a "hand off" button per trial and send a ``handoff_trial``
    request (``experiment``, ``run`` and ``store`` identify the run on disk)."""

    experiment: str
    run: str
    store: str  # the experiments store (absolute path in the kernel's file system)
    metric: str
    goal: str  # "min" | "max" (labkit.bundle.origin.GOALS; the schema says so)
    label: str  # "val_loss, lower is better"
    state: str = field(metadata={"enum": RUN_STATES})
    planned: int
    bundle_name: str  # the bundle name a hand off writes unless options.name says otherwise
    trials: list[TrialRow]


@dataclass(frozen=True)
class TrialHandoffRequest:
    """Hand off one trial of an experiment run (the per-trial button). The kernel uses the
    run if this kernel has it open, else reopens it from ``store``; ``bundle_store`` is where
    the bundle goes (like ``HandoffRequest.store``), ``source`` the notebook to copy in."""

    experiment: str
    run: str
    trial: int
    store: str | None = None
    bundle_store: str | None = None
    source: str | None = None
    options: RequestOptions = field(default_factory=RequestOptions)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: object) -> TrialHandoffRequest:
        if not isinstance(data, dict):
            raise HandoffRequestError("handoff_trial payload must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HandoffRequestError(
                f"handoff_trial request has unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        trial = data.get("trial")
        if isinstance(trial, bool) or not isinstance(trial, int) or trial < 1:
            raise HandoffRequestError(
                f"handoff_trial: trial must be a trial id >= 1, got {trial!r}"
            )
        text = {}
        for key in ("experiment", "run", "store", "bundle_store", "source"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > _MAX_TEXT):
                raise HandoffRequestError(f"handoff_trial: {key} must be a string")
            text[key] = value or None
        if text["experiment"] is None or text["run"] is None:
            raise HandoffRequestError("handoff_trial: experiment and run are required")
        return cls(
            experiment=text["experiment"],
            run=text["run"],
            trial=trial,
            store=text["store"],
            bundle_store=text["bundle_store"],
            source=text["source"],
            options=RequestOptions.from_dict(data.get("options") or {}),
        )


def _id_of(data: object) -> str | None:
    """Best-effort request id, so even a refusal can be matched to its request."""
    if isinstance(data, dict):
        rid = data.get("id")
        if isinstance(rid, str) and 0 < len(rid) <= _MAX_ID:
            return rid
    return None


def parse_request(data: object) -> Request:
    """Validate a frontend message; raise :class:`ProtocolError` saying what is wrong."""
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(data).__name__}")
    version = data.get("protocol")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"protocol version {version!r} is not supported: this kernel's labkit speaks "
            f"version {PROTOCOL_VERSION}. Install matching versions of labkit and its "
            "JupyterLab extension, then restart the kernel and reload the page."
        )
    if data.get("kind") != "request":
        raise ProtocolError(f"kind must be 'request', got {data.get('kind')!r}")
    rid = data.get("id")
    if not isinstance(rid, str) or not 0 < len(rid) <= _MAX_ID:
        raise ProtocolError(f"id must be a non-empty string of at most {_MAX_ID} characters")
    rtype = data.get("type")
    if rtype not in REQUEST_TYPES:
        raise ProtocolError(
            f"unknown request type {rtype!r}; expected one of {', '.join(REQUEST_TYPES)}"
        )
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError(f"payload must be a JSON object, got {type(payload).__name__}")
    return Request(rid, rtype, payload)


def optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise ProtocolError(f"payload.{key} must be a string, got {type(value).__name__}")
    return value


def reply(rid: str | None, payload: Any) -> dict[str, Any]:
    """The success reply; ``payload`` is one of the reply types above (or a plain dict)."""
    body = payload if isinstance(payload, dict) else asdict(payload)
    return {"protocol": PROTOCOL_VERSION, "kind": "reply", "id": rid, "ok": True, "payload": body}


def error_reply(
    rid: str | None, etype: str, message: str, *, stage: str | None = None
) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "kind": "reply",
        "id": rid,
        "ok": False,
        "error": {
            "type": etype,
            "message": _ANSI.sub("", message)[: _MAX_TEXT * 4],
            "stage": stage,
        },
    }


def progress_message(rid: str, event: ProgressEvent) -> dict[str, Any]:
    payload = event.to_dict()
    payload["message"] = _ANSI.sub("", event.message)[:_MAX_TEXT]
    return {"protocol": PROTOCOL_VERSION, "kind": "progress", "id": rid, "payload": payload}


def request_id(data: object) -> str | None:
    return _id_of(data)
