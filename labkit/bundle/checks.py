"""What a variant was judged by at handoff: each engine configuration's parity check, and a
quantized variant's record (options, the inputs it was judged on, layers kept in fp32).

These are parts of :class:`~labkit.bundle.parts.Variant`; like every part, ``from_dict``
checks its own fields ([schema]) and ``to_dict`` is the one writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.bundle._check import check_type, extra, fail, obj, optional, require
from labkit.bundle.tolerance import Tolerance

Doc = Mapping[str, Any]

#: What a parity verdict was reached on: ``real`` the user's own data (``parity_inputs``),
#: ``generated`` the examples and inputs generated from them (no real data was given),
#: ``all`` every input set (exact arithmetic is held to its tolerance on everything).
JUDGED_ON = ("real", "generated", "all")


def _judged_on(value: str | None, where: str) -> str | None:
    if value is not None and value not in JUDGED_ON:
        raise fail(where, f"{value!r} is not one of {list(JUDGED_ON)}")
    return value


def _number(d: Doc, key: str, where: str) -> float | None:
    value = optional(d, key, (int, float), where)
    return None if value is None else float(value)


@dataclass(frozen=True)
class EngineCheck:
    """One way of running a variant (engine, precision) judged at handoff on the machine
    that made the bundle: passed, or rejected with the reason. Only passed ones were timed."""

    engine: str
    precision: str
    passed: bool
    tolerance: Tolerance  # what it was judged by: the variant's tolerance or accuracy budget
    judged_on: str  # one of JUDGED_ON
    max_rel: float | None = None  # None: it did not run
    metric: str | None = None
    metric_value: float | None = None
    reason: str | None = None  # why it was rejected; None when it passed

    @classmethod
    def from_dict(cls, d: Any, where: str) -> EngineCheck:
        c = obj(d, where)
        p = f"{where}."
        passed = require(c, "passed", bool, p)
        reason = optional(c, "reason", str, p)
        if not passed and not reason:
            raise fail(f"{p}reason", "a rejected configuration must say why")
        return cls(
            engine=require(c, "engine", str, p),
            precision=require(c, "precision", str, p),
            passed=passed,
            tolerance=Tolerance.from_dict(require(c, "tolerance", dict, p), f"{p}tolerance"),
            judged_on=str(_judged_on(require(c, "judged_on", str, p), f"{p}judged_on")),
            max_rel=_number(c, "max_rel", p),
            metric=optional(c, "metric", str, p),
            metric_value=_number(c, "metric_value", p),
            reason=reason,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "precision": self.precision,
            "passed": self.passed,
            "tolerance": self.tolerance.to_dict(),
            "judged_on": self.judged_on,
            "max_rel": self.max_rel,
            "metric": self.metric,
            "metric_value": self.metric_value,
            "reason": self.reason,
        }

    @property
    def config(self) -> str:
        """``openvino-bf16``: the engine and precision, as candidate labels spell them."""
        return f"{self.engine}-{self.precision}"


@dataclass(frozen=True)
class ExcludedLayer:
    """A block (the nodes of one module) kept in fp32 because quantizing it alone broke the
    budget: what it measured then."""

    block: str
    nodes: tuple[str, ...]
    reason: str
    metric: str | None = None
    metric_value: float | None = None
    max_rel: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ExcludedLayer:
        e = obj(d, where)
        p = f"{where}."
        nodes = require(e, "nodes", list, p)
        return cls(
            block=require(e, "block", str, p),
            nodes=tuple(check_type(n, str, f"{p}nodes[{i}]") for i, n in enumerate(nodes)),
            reason=require(e, "reason", str, p),
            metric=optional(e, "metric", str, p),
            metric_value=_number(e, "metric_value", p),
            max_rel=_number(e, "max_rel", p),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "nodes": list(self.nodes),
            "reason": self.reason,
            "metric": self.metric,
            "metric_value": self.metric_value,
            "max_rel": self.max_rel,
        }


_QUANT_KEYS = ("options", "judged_on", "excluded")


@dataclass(frozen=True)
class Quantization:
    """How a quantized variant was made and judged. ``extra`` keeps the rest of the record
    (``ops``, ``calibration_batches``, ``sensitivity``, ``rescued`` …)."""

    options: Doc  # the Quantize options it was made with
    judged_on: str | None = None  # one of JUDGED_ON; None in bundles written before it
    excluded: tuple[ExcludedLayer, ...] = ()
    extra: Doc = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Quantization:
        q = obj(d, where)
        p = f"{where}."
        excluded = optional(q, "excluded", list, p) or []
        return cls(
            options=require(q, "options", dict, p),
            judged_on=_judged_on(optional(q, "judged_on", str, p), f"{p}judged_on"),
            excluded=tuple(
                ExcludedLayer.from_dict(e, f"{p}excluded[{i}]") for i, e in enumerate(excluded)
            ),
            extra=extra(q, _QUANT_KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "options": dict(self.options),
            "judged_on": self.judged_on,
            "excluded": [e.to_dict() for e in self.excluded],
        }

    @property
    def mode(self) -> str | None:
        """``dynamic`` or ``static`` (``Quantize.mode``)."""
        mode = self.options.get("mode")
        return mode if isinstance(mode, str) else None
