"""What a bundle claims about speed, and why its default variant is the default.

Two typed parts of the manifest ([speed]):

- :class:`Baseline`: how PyTorch eager, the denominator of every speed-up, was measured and
  whether that measurement held still. When it did not (``reliable`` false), no speed-up
  figure is recorded anywhere in the bundle: a collapsed eager run once produced "490×".
- :class:`DefaultRule`: the rule that picked ``default_variant`` and the numbers it was
  applied to (scores, noise, margin, the previous version's default), so that a reader
  sees why the default is what it is, and why it did or did not change.

Both are optional: bundles written before they existed, or handed off without a benchmark,
have no baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.bundle._check import check_type, fail, obj, require

_NUMBER = (int, float)


def _number(d: Mapping[str, Any], key: str, where: str) -> float:
    value = float(require(d, key, _NUMBER, where))
    if not value >= 0 or value == float("inf"):
        raise fail(f"{where}{key}", f"must be a finite number >= 0, got {value!r}")
    return value


def _nullable_number(d: Mapping[str, Any], key: str, where: str) -> float | None:
    """A required key whose value may be null."""
    if require(d, key, (*_NUMBER, type(None)), where) is None:
        return None
    return _number(d, key, where)


def _strings(value: list[Any], where: str) -> tuple[str, ...]:
    return tuple(check_type(s, str, f"{where}[{i}]") for i, s in enumerate(value))


@dataclass(frozen=True)
class Baseline:
    """How PyTorch eager was measured for the speed-ups, and whether it was consistent.

    Eager is the faster of its runs at each of ``threads`` in every round. The measurement is
    inconsistent when eager's time per row at batch ``batch`` exceeds its time at batch 1 by
    more than ``row_ratio_bound`` (batching never makes a model slower per row: eager was
    starved), or when its per-round times spread by more than ``spread_bound`` ((max − min) /
    median). An inconsistent measurement is taken again once; ``reliable`` false means the
    second was inconsistent too, and no speed-up was recorded.
    """

    method: str
    threads: tuple[int, ...]
    batch: int
    rounds: int
    attempts: int
    reliable: bool
    spread: float
    spread_bound: float
    row_ratio: float | None  # None when batch is 1
    row_ratio_bound: float
    problems: tuple[str, ...]  # what was inconsistent, with the numbers; () when reliable

    @classmethod
    def from_dict(cls, d: Any, where: str = "baseline") -> Baseline:
        b = obj(d, where)
        p = f"{where}."
        threads = require(b, "threads", list, p)
        out = cls(
            method=require(b, "method", str, p),
            threads=tuple(check_type(t, int, f"{p}threads[{i}]") for i, t in enumerate(threads)),
            batch=require(b, "batch", int, p),
            rounds=require(b, "rounds", int, p),
            attempts=require(b, "attempts", int, p),
            reliable=require(b, "reliable", bool, p),
            spread=_number(b, "spread", p),
            spread_bound=_number(b, "spread_bound", p),
            row_ratio=_nullable_number(b, "row_ratio", p),
            row_ratio_bound=_number(b, "row_ratio_bound", p),
            problems=_strings(require(b, "problems", list, p), f"{p}problems"),
        )
        if not out.threads or min(out.threads) < 1 or out.batch < 1 or out.attempts < 1:
            raise fail(where, "threads, batch and attempts must be >= 1")
        if out.reliable == bool(out.problems):
            raise fail(f"{p}problems", "must list the problems exactly when not reliable")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threads": list(self.threads),
            "batch": self.batch,
            "rounds": self.rounds,
            "attempts": self.attempts,
            "reliable": self.reliable,
            "spread": self.spread,
            "spread_bound": self.spread_bound,
            "row_ratio": self.row_ratio,
            "row_ratio_bound": self.row_ratio_bound,
            "problems": list(self.problems),
        }

    def describe(self) -> str:
        """One line for ``report.md`` and ``handoff inspect``."""
        counts = " and ".join(str(t) for t in self.threads)
        how = (
            f"the faster of {counts} threads in each of {self.rounds} rounds"
            if len(self.threads) > 1
            else f"at {counts} thread(s), {self.rounds} rounds"
        )
        text = f"PyTorch eager, {how} (measured {self.attempts}×): "
        if self.reliable:
            return text + "consistent"
        return text + "INCONSISTENT, speed-ups not recorded: " + "; ".join(self.problems)


@dataclass(frozen=True)
class DefaultRule:
    """Why ``default_variant`` is the default: the rule, and the numbers it was applied to.

    ``scores`` are each variant's geometric mean of its batch-1 and batch-N speed-ups over
    eager (empty when the numbers are missing or unreliable). The ``incumbent`` (the previous
    version's default when this version has that variant, else the exact fp32 variant) stays
    the default unless the best other variant's score beats it by more than ``margin`` (the
    measured round-to-round ``noise``, never less than a floor), or that variant was ahead
    by more than the floor in every round; ``rule`` says it in words, ``reason`` which
    applied.
    """

    rule: str
    chosen: str
    incumbent: str
    previous: str | None  # the default of the previous version of this model in the store
    previous_version: str | None
    reliable: bool  # whether the numbers were measured and consistent (see Baseline)
    reason: str
    scores: Mapping[str, float]  # {} when not measured or unreliable
    noise: float | None
    margin: float | None

    @classmethod
    def from_dict(cls, d: Any, where: str = "default_rule") -> DefaultRule:
        r = obj(d, where)
        p = f"{where}."
        scores = require(r, "scores", dict, p)
        return cls(
            rule=require(r, "rule", str, p),
            chosen=require(r, "chosen", str, p),
            incumbent=require(r, "incumbent", str, p),
            previous=require(r, "previous", (str, type(None)), p),
            previous_version=require(r, "previous_version", (str, type(None)), p),
            reliable=require(r, "reliable", bool, p),
            reason=require(r, "reason", str, p),
            scores={k: _number(scores, k, f"{p}scores.") for k in scores},
            noise=_nullable_number(r, "noise", p),
            margin=_nullable_number(r, "margin", p),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "chosen": self.chosen,
            "incumbent": self.incumbent,
            "previous": self.previous,
            "previous_version": self.previous_version,
            "reliable": self.reliable,
            "reason": self.reason,
            "scores": dict(self.scores),
            "noise": self.noise,
            "margin": self.margin,
        }
