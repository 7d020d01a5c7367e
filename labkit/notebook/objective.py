"""Which way a metric is better: the one home of "lower is better" and "higher is better".

An experiment ranks its trials by one metric, and every view of it (the table's ★, the Pareto
front, ``best()``, the plot's axis label, the training plot's "best" column) must agree on the
direction. The direction is written (``goal="min"|"max"``) or read from the metric's name, by
whole words (``val_loss`` → ``val`` + ``loss``; ``valAcc`` → ``val`` + ``acc``), so ``acc``
in ``accumulated_steps`` does not count. A name with words of both kinds, or of neither, is
not guessed: the error says exactly what to write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labkit.bundle.origin import GOALS  # one vocabulary: what a bundle's provenance records
from labkit.errors import InputError

__all__ = [
    "GOALS",
    "MAXIMIZE_WORDS",
    "MINIMIZE_WORDS",
    "Objective",
    "infer_goal",
    "objective",
    "pareto_front",
    "words",
]

MINIMIZE_WORDS = frozenset(
    {
        "loss",
        "error",
        "errors",
        "err",
        "mse",
        "mae",
        "rmse",
        "nll",
        "perplexity",
        "ppl",
        "latency",
        "wer",
        "cer",
        "cost",
        "regret",
        "ms",
    }
)
MAXIMIZE_WORDS = frozenset(
    {
        "accuracy",
        "acc",
        "top1",
        "top5",
        "f1",
        "auc",
        "auroc",
        "precision",
        "recall",
        "iou",
        "map",
        "ap",
        "bleu",
        "rouge",
        "r2",
        "dice",
        "ndcg",
        "reward",
        "throughput",
        "agreement",
    }
)
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9]{2,})")


def words(name: str) -> list[str]:
    """``val_loss`` → ``["val", "loss"]``, ``valAcc`` → ``["val", "acc"]``."""
    return [w.lower() for w in _SPLIT.split(name) if w]


def infer_goal(name: str) -> str | None:
    """``"min"`` or ``"max"`` from the metric's name; None when the name does not say."""
    ws = set(words(name))
    low, high = bool(ws & MINIMIZE_WORDS), bool(ws & MAXIMIZE_WORDS)
    if low == high:
        return None
    return "min" if low else "max"


@dataclass(frozen=True)
class Objective:
    """The metric that ranks trials and which way is better."""

    metric: str
    goal: str  # "min" | "max"
    inferred: bool = False  # read from the name rather than written

    @property
    def better(self) -> str:
        return "lower is better" if self.goal == "min" else "higher is better"

    @property
    def label(self) -> str:
        """``val_loss, lower is better``: the plot's axis title and the table's caption."""
        return f"{self.metric}, {self.better}"

    def value(self, metrics: dict[str, Any]) -> float | None:
        """The trial's finite value of the metric, or None."""
        v = metrics.get(self.metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return float(v)

    def score(self, value: float) -> float:
        """Higher score is better, whatever the goal."""
        return value if self.goal == "max" else -value

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "goal": self.goal, "inferred": self.inferred}


def objective(metric: str | None, goal: str | None = None) -> Objective:
    """The objective for ``metric``; ``goal`` overrides what the name says."""
    if metric is None:
        raise InputError(
            "no metric to rank trials by: pass metric= with a key train_fn returns, e.g. "
            "metric='val_acc' (higher is better) or metric='val_loss' (lower is better); "
            "for other names add goal='max' or goal='min'"
        )
    if not isinstance(metric, str) or not metric:
        raise InputError(f"metric={metric!r} must be the name of a metric train_fn returns")
    if goal is not None:
        if goal not in GOALS:
            raise InputError(
                f"goal={goal!r}: use goal='min' (lower is better) or goal='max' (higher is better)"
            )
        return Objective(metric, goal, inferred=False)
    found = infer_goal(metric)
    if found is None:
        raise InputError(
            f"metric={metric!r}: its name does not say whether higher or lower is better; "
            f"write metric={metric!r}, goal='max' if higher is better, or "
            f"metric={metric!r}, goal='min' if lower is better"
        )
    return Objective(metric, found, inferred=True)


def pareto_front(points: Sequence[tuple[float, float]], *, goal: str = "max") -> list[int]:
    """Indices of the (latency, value) points no other point beats: no other is at least as
    fast and at least as good (by ``goal``), and strictly one of them. Sorted by latency."""
    if goal not in GOALS:
        raise InputError(f"goal={goal!r}: use 'min' or 'max'")
    sign = 1.0 if goal == "max" else -1.0
    pts = [(x, sign * y) for x, y in points]
    front = [
        i
        for i, (x, y) in enumerate(pts)
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for x2, y2 in pts)
    ]
    return sorted(front, key=lambda i: points[i][0])
