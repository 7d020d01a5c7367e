"""An experiment run: its trials, how they rank, and how a trial becomes a bundle — in the
session that ran it, or reopened from the store after a kernel restart.

**How a trial's model comes back.** Each finished trial's trained weights are saved as a
state dict in safetensors (tensors only: no pickle, nothing runs on load). The architecture
is rebuilt by the researcher's own code, ``model_fn(**params)`` — a function returning the
untrained model for a trial's params (it is called with the params it names) — and the
weights are loaded into it strictly: every key and shape must match. This is PyTorch's own
recommended way to save models and what Lightning's ``load_from_checkpoint`` does (rebuild
from hyper-parameters, then load the state dict); pickling whole modules would run code from
a file on load, and ``torch.export`` would freeze the batch size the handoff needs free. In
the session that trained them, models are also kept in memory, so ``exp.handoff(n)`` needs
no ``model_fn`` until the kernel restarts.
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labkit.errors import InputError
from labkit.notebook import experiment_view as view
from labkit.notebook.experiment_store import ExperimentStore
from labkit.notebook.objective import Objective, objective
from labkit.notebook.trials import Trial

__all__ = ["Experiment", "find_open", "open_experiment"]


def call_with(fn: Callable[..., Any], params: dict[str, Any]) -> Any:
    """``fn(**params)``, passing only the params ``fn`` names (all of them if it takes
    ``**kwargs``): ``build(hidden, depth)`` ignores a trial's ``lr``."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(**params)
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return fn(**params)
    names = {
        n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return fn(**{k: v for k, v in params.items() if k in names})


class Experiment:
    """The trials of one run of :func:`labkit.experiment` (or reopened by
    ``labkit.experiment.load``)."""

    def __init__(
        self,
        store: ExperimentStore,
        goal: Objective,
        planned: int,
        *,
        example_inputs: Any = None,
        task: str | None = None,
        model_fn: Callable[..., Any] | None = None,
    ) -> None:
        self.name = store.name
        self.run = store.run_id
        self.root = str(store.root)
        self.path = store.path
        self.objective = goal
        self.planned = planned
        self.trials: list[Trial] = []
        self.example_inputs = example_inputs
        self.task = task
        self.model_fn = model_fn
        self.running = False
        self.interrupted = False
        self.results: dict[int, Any] = {}  # trial id -> HandoffResult
        self._store = store
        _remember(self)

    @property
    def metric(self) -> str:
        return self.objective.metric

    @property
    def bundle_name(self) -> str:
        """The bundle a hand off writes by default: the experiment's name, lower case."""
        return self.name.lower().replace("_", "-")

    # -- choosing ---------------------------------------------------------------------------
    def best(
        self,
        metric: str | None = None,
        *,
        goal: str | None = None,
        max_latency_ms: float | None = None,
    ) -> Trial:
        """The best finished trial by the experiment's metric (or ``metric``, whose direction
        comes from its name or ``goal``), optionally among those at most ``max_latency_ms``
        on this CPU."""
        o = (
            self.objective
            if metric is None and goal is None
            else objective(metric or self.metric, goal)
        )
        ok = [
            t
            for t in self.trials
            if t.status == "ok"
            and o.value(t.metrics) is not None
            and (
                max_latency_ms is None
                or (t.latency_ms is not None and t.latency_ms <= max_latency_ms)
            )
        ]
        if not ok:
            seen = sorted({k for t in self.trials for k in t.metrics})
            raise InputError(
                f"no finished trial has a finite {o.metric!r}"
                + (f" within {max_latency_ms} ms" if max_latency_ms else "")
                + f" (metrics seen: {', '.join(seen) or 'none'})"
            )
        return max(ok, key=lambda t: (o.score(o.value(t.metrics) or 0.0), -t.id))

    def trial(self, trial_id: int) -> Trial:
        for t in self.trials:
            if t.id == trial_id:
                return t
        raise InputError(
            f"no trial #{trial_id} in {self.name} run {self.run} (trials: "
            f"{', '.join(str(t.id) for t in self.trials) or 'none'})"
        )

    def _pick(self, trial: Trial | int | None) -> Trial:
        if trial is None:
            return self.best()
        return trial if isinstance(trial, Trial) else self.trial(int(trial))

    def model(self, trial: Trial | int) -> Any:
        """The trial's trained model: the one in memory, else rebuilt by ``model_fn`` with
        the saved weights loaded into it."""
        t = self._pick(trial)
        if t.model is not None:
            return t.model
        if t.weights is None:
            raise InputError(
                f"trial #{t.id} kept no model: "
                + (t.note or "train_fn returned none; return {'model': model, ...}")
            )
        if self.model_fn is None:
            raise InputError(
                f"trial #{t.id}'s weights are saved ({self.path / t.weights}) but this session "
                "cannot rebuild its model: reopen the run with labkit.experiment.load("
                f"{self.name!r}, run={self.run!r}, model_fn=build), where build(**params) "
                "returns the untrained model for a trial's params"
            )
        model = call_with(self.model_fn, t.params)
        self._store.load_weights(model, t)
        t.model = model
        return model

    def spec(self, trial: Trial | int | None = None, *, name: str | None = None) -> Any:
        """The trial's model registered for handoff, its provenance naming this trial."""
        from labkit.bundle.origin import ExperimentTrial
        from labkit.registry import register

        t = self._pick(trial)
        model = self.model(t)
        if self.example_inputs is None:
            raise InputError(
                "no example_inputs to register the model with: pass "
                "experiment(..., example_inputs=x) (or labkit.experiment.load(..., "
                "example_inputs=x))"
            )
        rec = t.record()
        spec = register(model, self.example_inputs, name=name or self.bundle_name, task=self.task)
        return replace(
            spec,
            experiment=ExperimentTrial(
                self.name,
                self.run,
                t.id,
                rec["params"],
                rec["metrics"],
                self.objective.metric,
                self.objective.goal,
            ),
        )

    def handoff(
        self,
        trial: Trial | int | None = None,
        *,
        name: str | None = None,
        store: str | os.PathLike[str] | None = None,
        options: Any = None,
        progress: Callable[..., None] | None = None,
    ) -> Any:
        """Hand the chosen trial (default: :meth:`best`) off, its stages shown in the cell;
        the bundle's provenance records the experiment, run, trial, params and metrics."""
        from labkit.notebook.handoff_view import handoff

        t = self._pick(trial)
        spec = self.spec(t, name=name)
        where = None if store is None else Path(store)
        result = handoff(spec, store=where, options=options, progress=progress)
        self.results[t.id] = result
        return result

    # -- showing ----------------------------------------------------------------------------
    def text(self) -> str:
        lines = [
            f"experiment {self.name} run {self.run}: {len(self.trials)}/{self.planned} trials"
            + (" (interrupted)" if self.interrupted else "")
            + f"; ranked by {self.objective.label}"
        ]
        best = view.best_trial(self)
        for t in self.trials:
            m = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.metrics.items()
            )
            lat = f"{t.latency_ms:.3f} ms" if t.latency_ms is not None else "n/a"
            mark = " (best)" if best is not None and t.id == best.id else ""
            lines.append(
                f"  #{t.id}{mark} {t.params} {m} latency {lat} {t.status} {t.error}".rstrip()
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return view.table_html(self)

    def outputs(self) -> list[dict[str, Any]]:
        """What a cell shows: the table, the plot, the trials (per-trial buttons)."""
        return [view.table_bundle(self), view.figure_bundle(self), view.trials_bundle(self)]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for output in self.outputs():
            display(output, raw=True)  # type: ignore[no-untyped-call]

    def figure(self) -> Any:
        return view.figure(self)

    def records(self) -> list[dict[str, Any]]:
        return [t.record() for t in self.trials]


# -- experiments open in this process (the per-trial button finds its run here) -------------


@dataclass
class _Handle:
    """What reopening a run needs beyond the store; the Experiment itself only weakly (its
    trained models stay collectable)."""

    ref: Any
    model_fn: Callable[..., Any] | None
    example_inputs: Any
    task: str | None


_OPEN: dict[tuple[str, str, str], _Handle] = {}


def _remember(exp: Experiment) -> None:
    _OPEN[(exp.root, exp.name, exp.run)] = _Handle(
        weakref.ref(exp), exp.model_fn, exp.example_inputs, exp.task
    )


def find_open(root: str, name: str, run: str) -> Experiment | None:
    handle = _OPEN.get((str(Path(root).expanduser().resolve()), name, run))
    exp = handle.ref() if handle is not None else None
    return exp if isinstance(exp, Experiment) else None


def open_experiment(
    root: str | os.PathLike[str],
    name: str,
    run: str | None = None,
    *,
    model_fn: Callable[..., Any] | None = None,
    example_inputs: Any = None,
    task: str | None = None,
) -> Experiment:
    """Reopen a saved run (default: the latest): its trials, metric and goal, example
    inputs and task from the store; ``model_fn`` rebuilds trial models (see module doc)."""
    store = ExperimentStore.open(root, name, run)
    info = store.info()
    handle = _OPEN.get((str(store.root), store.name, store.run_id))
    if handle is not None:  # this process ran or opened it before: keep what it knew
        model_fn = model_fn or handle.model_fn
        if example_inputs is None:
            example_inputs = handle.example_inputs
        task = task or handle.task
    goal = objective(_str(info, "metric"), _str(info, "goal"))
    if example_inputs is None and isinstance(info.get("example_inputs"), dict):
        example_inputs = store.load_inputs(info["example_inputs"])
    planned = info.get("planned_count")
    exp = Experiment(
        store,
        goal,
        planned if isinstance(planned, int) and not isinstance(planned, bool) else 0,
        example_inputs=example_inputs,
        task=task or _str(info, "task"),
        model_fn=model_fn,
    )
    exp.trials = store.trials()
    exp.planned = max(exp.planned, len(exp.trials))
    exp.interrupted = bool(info.get("interrupted")) or len(exp.trials) < exp.planned
    return exp


def _str(info: dict[str, Any], key: str) -> str | None:
    value = info.get(key)
    return value if isinstance(value, str) else None
