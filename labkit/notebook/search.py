"""Which params an experiment tries: a grid, a list, random search, or Optuna.

``params`` of :func:`labkit.experiment` is a grid ``{"hidden": [16, 64], "lr": [1e-3]}``
(every combination), a list of dicts, or a search over a *space* whose values are lists
(choices) or ranges::

    space = {"hidden": [16, 64, 256], "lr": loguniform(1e-4, 1e-1), "depth": integers(1, 3)}
    labkit.experiment(train, random(space, trials=12, seed=0), ...)   # drawn up front, seeded
    labkit.experiment(train, optuna(space, trials=20), ...)           # labkit[tune]

Random search draws every trial before the first runs (seeded: the same seed, the same
trials). Optuna (TPE by default) asks for the next params after each result, told with the
experiment's metric and goal; a failed trial or a missing/non-finite metric is told as failed.
"""

from __future__ import annotations

import itertools
import math
import random as _random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.errors import InputError, MissingDependencyError
from labkit.notebook.objective import Objective

__all__ = [
    "Integers",
    "Planned",
    "Search",
    "Uniform",
    "expand_params",
    "integers",
    "loguniform",
    "optuna",
    "plan",
    "random",
    "uniform",
]


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    log: bool = False

    def draw(self, rng: _random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def describe(self) -> dict[str, Any]:
        return {"kind": "loguniform" if self.log else "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Integers:
    low: int
    high: int  # inclusive
    log: bool = False

    def draw(self, rng: _random.Random) -> int:
        if self.log:
            return max(
                self.low, min(self.high, round(Uniform(self.low, self.high, True).draw(rng)))
            )
        return rng.randint(self.low, self.high)

    def describe(self) -> dict[str, Any]:
        return {"kind": "integers", "low": self.low, "high": self.high, "log": self.log}


def _bounds(low: Any, high: Any, what: str, *, positive: bool = False) -> None:
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{what}({low!r}, {high!r}): bounds must be finite numbers")
    if not low < high:
        raise InputError(f"{what}({low!r}, {high!r}): low must be below high")
    if positive and low <= 0:
        raise InputError(f"{what}({low!r}, {high!r}): a log scale needs low > 0")


def uniform(low: float, high: float) -> Uniform:
    """A float drawn evenly between ``low`` and ``high``."""
    _bounds(low, high, "uniform")
    return Uniform(float(low), float(high))


def loguniform(low: float, high: float) -> Uniform:
    """A float drawn evenly on a log scale (learning rates, weight decay)."""
    _bounds(low, high, "loguniform", positive=True)
    return Uniform(float(low), float(high), log=True)


def integers(low: int, high: int, *, log: bool = False) -> Integers:
    """An integer from ``low`` to ``high``, both included."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise InputError(f"integers({low!r}, {high!r}): bounds must be integers")
    _bounds(low, high, "integers", positive=log)
    return Integers(low, high, log)


Space = Mapping[str, "Sequence[Any] | Uniform | Integers"]


def _check_space(space: Any) -> dict[str, Any]:
    if not isinstance(space, Mapping) or not space:
        raise InputError("a search space is a dict {'name': [choices] or uniform(...), ...}")
    out: dict[str, Any] = {}
    for k, v in space.items():
        if isinstance(v, (Uniform, Integers)):
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and v:
            out[str(k)] = list(v)
        else:
            raise InputError(
                f"space[{k!r}] = {v!r}: give a non-empty list of choices, or uniform(a, b), "
                "loguniform(a, b) or integers(a, b)"
            )
    return out


class Search:
    """Where an experiment's params come from: ask for the next, tell how it went."""

    kind = "search"
    planned = 0

    def bind(self, objective: Objective) -> None:
        """Learn which metric to tell and which way is better (before the first ask)."""

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        raise NotImplementedError

    def tell(self, token: Any, value: float | None) -> None:
        """The result of the params ``ask`` gave with ``token``; None: failed or no value."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "planned": self.planned}


class Planned(Search):
    """Params known before the first trial: a grid, a list or a random draw."""

    def __init__(self, params: list[dict[str, Any]], kind: str, **info: Any) -> None:
        self.params = params
        self.kind = kind
        self.planned = len(params)
        self._next = iter(enumerate(params))
        self._info = info

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        nxt = next(self._next, None)
        return None if nxt is None else (nxt[0], dict(nxt[1]))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "planned": self.params, **self._info}


def expand_params(
    params: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """A grid ``{"hidden": [16, 64], "lr": [0.1]}`` (every combination) or a list of dicts."""
    if isinstance(params, Mapping):
        keys = list(params)
        values = []
        for k in keys:
            v = params[k]
            if isinstance(v, (Uniform, Integers)):
                raise InputError(
                    f"params[{k!r}] is a range: a grid needs lists; for ranges use "
                    "labkit.experiment.random(space, trials=N) or .optuna(space, trials=N)"
                )
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise InputError(
                    f"params[{k!r}] = {v!r} is not a list of values: write "
                    f"{{{k!r}: [{v!r}]}} for a single value"
                )
            values.append(list(v))
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    trials = [dict(p) for p in params]
    if not trials:
        raise InputError("params is empty: give a grid {'name': [values]} or a list of dicts")
    return trials


def plan(params: Any) -> Search:
    """``params`` as given to ``labkit.experiment`` → a :class:`Search`."""
    if isinstance(params, Search):
        return params
    planned = expand_params(params)
    return Planned(planned, "grid" if isinstance(params, Mapping) else "list")


def random(space: Space, *, trials: int, seed: int = 0) -> Planned:
    """``trials`` params drawn at random from ``space`` (seeded, all drawn up front)."""
    checked = _check_space(space)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InputError(f"trials={trials!r}: give how many trials to draw, 1 or more")
    rng = _random.Random(seed)
    drawn = [
        {
            k: (v.draw(rng) if isinstance(v, (Uniform, Integers)) else rng.choice(v))
            for k, v in checked.items()
        }
        for _ in range(trials)
    ]
    return Planned(drawn, "random", seed=seed, space=_describe_space(checked))


def _describe_space(space: dict[str, Any]) -> dict[str, Any]:
    return {k: v.describe() if isinstance(v, (Uniform, Integers)) else v for k, v in space.items()}


class OptunaSearch(Search):
    """Optuna's ask-and-tell interface: each trial's params come from the results so far."""

    kind = "optuna"

    def __init__(self, space: dict[str, Any], trials: int, seed: int, sampler: Any) -> None:
        self._optuna = _import_optuna()
        self.space = space
        self.planned = trials
        self.seed = seed
        self._sampler = sampler
        self._study: Any = None
        self._asked = 0

    def bind(self, objective: Objective) -> None:
        o = self._optuna
        sampler = self._sampler or o.samplers.TPESampler(seed=self.seed)
        with _quiet(o):
            self._study = o.create_study(
                direction="minimize" if objective.goal == "min" else "maximize", sampler=sampler
            )

    def _distributions(self) -> dict[str, Any]:
        d = self._optuna.distributions
        out = {}
        for k, v in self.space.items():
            if isinstance(v, Uniform):
                out[k] = d.FloatDistribution(v.low, v.high, log=v.log)
            elif isinstance(v, Integers):
                out[k] = d.IntDistribution(v.low, v.high, log=v.log)
            else:
                out[k] = d.CategoricalDistribution(v)
        return out

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        if self._study is None:
            raise InputError("the Optuna search was not bound to an objective (internal)")
        if self._asked >= self.planned:
            return None
        self._asked += 1
        with _quiet(self._optuna):
            t = self._study.ask(self._distributions())
        return t, dict(t.params)

    def tell(self, token: Any, value: float | None) -> None:
        o = self._optuna
        with _quiet(o):
            if value is None:
                self._study.tell(token, state=o.trial.TrialState.FAIL)
            else:
                self._study.tell(token, value)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "trials": self.planned,
            "seed": self.seed,
            "sampler": type(self._sampler).__name__ if self._sampler else "TPESampler",
            "space": _describe_space(self.space),
        }


class _quiet:
    """Optuna logs every told trial at INFO; the table says it already. Put back after."""

    def __init__(self, o: Any) -> None:
        self._o = o
        self._old = 0

    def __enter__(self) -> None:
        self._old = self._o.logging.get_verbosity()
        self._o.logging.set_verbosity(self._o.logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self._o.logging.set_verbosity(self._old)


def _import_optuna() -> Any:
    try:
        import optuna as o
    except ImportError:
        raise MissingDependencyError("optuna", "tune") from None
    return o


def optuna(space: Space, *, trials: int, seed: int = 0, sampler: Any = None) -> OptunaSearch:
    """``trials`` params chosen by Optuna (TPE, seeded; or ``sampler``) from ``space``."""
    checked = _check_space(space)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InputError(f"trials={trials!r}: give how many trials to run, 1 or more")
    for k, v in checked.items():
        if isinstance(v, list) and not all(
            v_ is None or isinstance(v_, (bool, int, float, str)) for v_ in v
        ):
            raise InputError(f"space[{k!r}]: Optuna's choices are None, bool, int, float or str")
    return OptunaSearch(checked, trials, seed, sampler)
