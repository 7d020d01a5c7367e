"""``labkit.experiment(train_fn, params, name=..., metric=...)``: a sweep with the CPU cost
beside the metric (Experiment Manager's role, plus what it cannot show), durable across
kernel restarts.

- ``metric`` ranks the trials; which way is better comes from its name (``val_loss``: lower;
  ``val_acc``: higher) or ``goal="min"|"max"``. There is no default: a sweep ranked by the
  wrong number is worse than an error before the first trial, so the error says what to write.
- ``params``: a grid ``{"hidden": [16, 64]}``, a list of dicts, ``labkit.experiment.random(
  space, trials=N)`` or ``labkit.experiment.optuna(space, trials=N)`` (``labkit[tune]``), with
  ``space`` values lists or ``labkit.experiment.uniform/loguniform/integers(a, b)``.
- Every finished trial is saved at once with its weights; ``exp.handoff(trial)`` (or the
  trial's button) hands it off; after a restart ``labkit.experiment.load(name,
  model_fn=build)`` reopens the run and ``build(**params)`` rebuilds each trial's model
  (:mod:`labkit.notebook.experiment_model` says why this way).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from labkit.notebook import search as _search
from labkit.notebook.experiment_model import Experiment, open_experiment
from labkit.notebook.experiment_run import run_experiment
from labkit.notebook.search import Search, expand_params
from labkit.notebook.trials import Trial

__all__ = ["Experiment", "Trial", "expand_params", "experiment", "load"]


def load(
    name: str,
    *,
    store: str | os.PathLike[str] = "experiments",
    run: str | None = None,
    model_fn: Callable[..., Any] | None = None,
    example_inputs: Any = None,
    task: str | None = None,
) -> Experiment:
    """Reopen a saved run of experiment ``name`` (default: its latest run): the trials,
    metric and goal, example inputs and task come from the store; ``model_fn(**params)``
    rebuilds a trial's model so its saved weights can be handed off."""
    return open_experiment(
        store, name, run, model_fn=model_fn, example_inputs=example_inputs, task=task
    )


class _ExperimentEntry:
    """``labkit.experiment``: call it to run a sweep; its attributes reopen one (``load``)
    and describe searches (``random``, ``optuna``, ``uniform``, ``loguniform``,
    ``integers``)."""

    load = staticmethod(load)
    random = staticmethod(_search.random)
    optuna = staticmethod(_search.optuna)
    uniform = staticmethod(_search.uniform)
    loguniform = staticmethod(_search.loguniform)
    integers = staticmethod(_search.integers)

    def __call__(
        self,
        train_fn: Callable[..., Any],
        params: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]] | Search,
        *,
        name: str,
        metric: str | None = None,
        goal: str | None = None,
        model_fn: Callable[..., Any] | None = None,
        example_inputs: Any = None,
        task: str | None = None,
        store: str | os.PathLike[str] = "experiments",
        workers: int = 0,
        widgets: bool | None = None,
    ) -> Experiment:
        """Run ``train_fn(**p)`` for every ``p`` of ``params``, ranked by ``metric``.

        ``goal``: "min" or "max" when the metric's name does not say. ``model_fn(**p)``
        returns the untrained model of a trial (to hand trials off after a restart; checked
        on every trial). ``example_inputs`` (or an ``"example_inputs"`` key in what
        ``train_fn`` returns) is what the CPU latency is measured on and what a handed-off
        model is registered with. ``store``: the experiments folder; ``workers``: processes.
        """
        return run_experiment(
            train_fn,
            params,
            name=name,
            metric=metric,
            goal=goal,
            model_fn=model_fn,
            example_inputs=example_inputs,
            task=task,
            store=os.fspath(store),
            workers=workers,
            widgets=widgets,
        )

    def __repr__(self) -> str:
        return "<labkit.experiment: call to run a sweep; .load(name) reopens one>"


experiment = _ExperimentEntry()
experiment.__doc__ = __doc__
