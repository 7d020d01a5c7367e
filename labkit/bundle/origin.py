"""Where a bundle's model came from when it was one trial of an experiment
(``labkit.experiment``): the experiment, its run, the trial, its params and metrics, and the
metric the trials were ranked by. Part of :class:`~labkit.bundle.parts.Provenance`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.bundle._check import fail, obj, require

__all__ = ["GOALS", "ExperimentTrial"]

GOALS = ("min", "max")


@dataclass(frozen=True)
class ExperimentTrial:
    """The experiment trial a bundle's model is (``provenance.experiment``)."""

    name: str  # the experiment
    run: str  # its run id (a folder of the experiment store)
    trial: int
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    metric: str  # what the trials were ranked by
    goal: str  # "min" (lower is better) or "max"

    @classmethod
    def from_dict(cls, d: Any, where: str = "provenance.experiment") -> ExperimentTrial:
        e = obj(d, where)
        p = f"{where}."
        trial = require(e, "trial", int, p)
        if trial < 1:
            raise fail(f"{p}trial", f"must be 1 or more, got {trial}")
        goal = require(e, "goal", str, p)
        if goal not in GOALS:
            raise fail(f"{p}goal", f"{goal!r} is not one of {list(GOALS)}")
        return cls(
            name=require(e, "name", str, p),
            run=require(e, "run", str, p),
            trial=trial,
            params=require(e, "params", dict, p),
            metrics=require(e, "metrics", dict, p),
            metric=require(e, "metric", str, p),
            goal=goal,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run": self.run,
            "trial": self.trial,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "metric": self.metric,
            "goal": self.goal,
        }

    def describe(self) -> str:
        """One line for ``report.md`` and ``handoff inspect``."""
        value = self.metrics.get(self.metric)
        better = "lower is better" if self.goal == "min" else "higher is better"
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        return (
            f"experiment {self.name}, run {self.run}, trial #{self.trial} "
            f"{dict(self.params)}: {self.metric} = {shown} ({better})"
        )
