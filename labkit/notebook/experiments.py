"""``labkit.experiment(train_fn, params=..., name=...)``: a sweep with the CPU cost beside
the accuracy (Experiment Manager's role, plus what it cannot show).

Each trial calls ``train_fn(**params)``, which returns the trained model and its metrics —
``{"model": m, "val_acc": 0.93, ...}`` or ``(m, {"val_acc": 0.93})`` — then measures the
model's batch-1 CPU latency with the same quick ONNX Runtime export ``labkit.summary`` uses.
Trials run one after another by default; ``workers=N`` trains in N worker processes (the
function must then be importable, not defined in the notebook) while latencies are still
measured one at a time in this process, so they do not compete for the cores.

Every finished trial is saved at once (:mod:`labkit.notebook.experiment_store`); an
interrupt (■) ends the sweep and keeps the finished trials. ``exp.best()`` picks a trial,
``exp.handoff(trial)`` — or the trial's button — registers its model and hands it off.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import InputError
from labkit.model_state import preserved
from labkit.notebook.experiment_store import ExperimentStore

__all__ = ["Experiment", "Trial", "experiment", "expand_params"]

_LOWER_IS_BETTER = ("loss", "error", "err", "mse", "mae", "perplexity")


@dataclass
class Trial:
    id: int
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency_ms: float | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str = ""
    model: Any = field(default=None, repr=False)  # kept in memory for handoff, never saved

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "params": self.params,
            "metrics": self.metrics,
            "elapsed_s": self.elapsed_s,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error": self.error,
        }


def expand_params(
    params: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """A grid ``{"hidden": [16, 64], "lr": [0.1]}`` (every combination) or a list of dicts."""
    if isinstance(params, Mapping):
        keys = list(params)
        values = []
        for k in keys:
            v = params[k]
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


def _split_result(out: Any) -> tuple[Any, dict[str, Any], Any]:
    """(model, metrics, example_inputs) from what ``train_fn`` returned."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        return out[0], dict(out[1]), None
    if isinstance(out, Mapping):
        metrics = {k: v for k, v in out.items() if k not in ("model", "example_inputs")}
        return out.get("model"), metrics, out.get("example_inputs")
    raise InputError(
        f"train_fn returned {type(out).__name__}; return "
        "{'model': model, 'metric': value, ...} or (model, {'metric': value})"
    )


def _train(
    train_fn: Callable[..., Any], params: dict[str, Any]
) -> tuple[Any, dict[str, Any], Any, float]:
    start = time.monotonic()
    out = train_fn(**params)
    model, metrics, inputs = _split_result(out)
    return model, metrics, inputs, time.monotonic() - start


def _latency(model: Any, example_inputs: Any) -> float | None:
    if model is None or example_inputs is None:
        return None
    from labkit.notebook.quick_onnx import quick_export
    from labkit.notebook.summary import split_inputs

    args, kw = split_inputs(model, example_inputs, None)
    try:
        with preserved(model):
            model.eval()
            return quick_export(model, args, kw).latency_ms(budget_s=0.3)
    except Exception:  # noqa: BLE001 - a trial whose model does not export has no latency
        return None


class Experiment:
    """The trials of one run; see :func:`experiment`."""

    def __init__(
        self,
        name: str,
        planned: list[dict[str, Any]],
        store: ExperimentStore,
        metric: str | None,
        example_inputs: Any,
        task: str | None,
    ) -> None:
        self.name = name
        self.planned = len(planned)
        self.trials: list[Trial] = []
        self.metric = metric
        self.example_inputs = example_inputs
        self.task = task
        self.running = False
        self.interrupted = False
        self._store = store
        self.path = store.path
        self.results: dict[int, Any] = {}  # trial id -> HandoffResult

    # -- choosing ---------------------------------------------------------------------------
    def _mode(self, metric: str) -> str:
        return "min" if any(w in metric.lower() for w in _LOWER_IS_BETTER) else "max"

    def best(
        self,
        metric: str | None = None,
        *,
        mode: str | None = None,
        max_latency_ms: float | None = None,
    ) -> Trial:
        """The best finished trial by ``metric`` (default: the experiment's), optionally
        among those at most ``max_latency_ms`` on this CPU."""
        metric = metric or self.metric
        if metric is None:
            raise InputError(
                "no metric to rank by: pass best(metric='val_acc') or experiment(..., metric=...)"
            )
        mode = mode or self._mode(metric)
        if mode not in ("max", "min"):
            raise InputError(f"mode={mode!r}: use 'max' or 'min'")
        ok = [
            t
            for t in self.trials
            if t.status == "ok"
            and isinstance(t.metrics.get(metric), (int, float))
            and math.isfinite(t.metrics[metric])
            and (
                max_latency_ms is None
                or (t.latency_ms is not None and t.latency_ms <= max_latency_ms)
            )
        ]
        if not ok:
            seen = sorted({k for t in self.trials for k in t.metrics})
            raise InputError(
                f"no finished trial has a finite {metric!r}"
                + (f" within {max_latency_ms} ms" if max_latency_ms else "")
                + f" (metrics seen: {', '.join(seen) or 'none'})"
            )
        sign = 1 if mode == "max" else -1
        return max(ok, key=lambda t: sign * float(t.metrics[metric]))

    def trial(self, trial_id: int) -> Trial:
        for t in self.trials:
            if t.id == trial_id:
                return t
        raise InputError(
            f"no trial #{trial_id} in {self.name} (trials: "
            f"{', '.join(str(t.id) for t in self.trials)})"
        )

    def handoff(
        self,
        trial: Trial | int | None = None,
        *,
        name: str | None = None,
        store: str | os.PathLike[str] | None = None,
        options: Any = None,
    ) -> Any:
        """Register the chosen trial's model (default: :meth:`best`) and hand it off."""
        import labkit

        chosen = (
            self.best()
            if trial is None
            else (trial if isinstance(trial, Trial) else self.trial(int(trial)))
        )
        if chosen.model is None:
            raise InputError(
                f"trial #{chosen.id} kept no model (train_fn returned none, or "
                "the experiment was loaded from disk): return {'model': ...}"
            )
        inputs = self.example_inputs
        if inputs is None:
            raise InputError(
                "no example_inputs to register the model with: pass "
                "experiment(..., example_inputs=x)"
            )
        bundle_name = (name or self.name).lower().replace("_", "-")
        spec = labkit.register(chosen.model, inputs, name=bundle_name, task=self.task)
        result = labkit.handoff(spec, store=store, options=options)
        self.results[chosen.id] = result
        return result

    # -- showing ----------------------------------------------------------------------------
    def text(self) -> str:
        lines = [
            f"experiment {self.name}: {len(self.trials)}/{self.planned} trials"
            + (" (interrupted)" if self.interrupted else "")
        ]
        for t in self.trials:
            m = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.metrics.items()
            )
            lat = f"{t.latency_ms:.3f} ms" if t.latency_ms is not None else "n/a"
            lines.append(f"  #{t.id} {t.params} {m} latency {lat} {t.status} {t.error}".rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        from labkit.notebook.experiment_view import table_html

        return table_html(self)

    def figure(self) -> Any:
        from labkit.notebook.experiment_view import figure

        return figure(self)

    # -- running ----------------------------------------------------------------------------
    def _finish(
        self, trial: Trial, out: tuple[Any, dict[str, Any], Any, float] | BaseException
    ) -> None:
        if isinstance(out, BaseException):
            trial.status = "failed"
            trial.error = f"{type(out).__name__}: {str(out).splitlines()[0] if str(out) else ''}"
        else:
            model, trial.metrics, inputs, trial.elapsed_s = out
            trial.model = model
            if self.example_inputs is None:
                self.example_inputs = inputs
            trial.latency_ms = _latency(
                model, inputs if inputs is not None else self.example_inputs
            )
            if self.metric is None:
                self.metric = next(
                    (k for k, v in trial.metrics.items() if isinstance(v, (int, float))), None
                )
        self.trials.append(trial)
        self._store.save_trial(trial.record())


def _in_kernel() -> bool:
    from labkit.notebook.progress import _in_kernel as check

    return check()


class _Live:
    """The notebook view: the table (static HTML, replaced after each trial), the plot
    (live, static once the sweep ends) and a row of "hand off this trial" buttons."""

    def __init__(self, exp: Experiment) -> None:
        import ipywidgets
        from IPython.display import display

        from labkit.notebook.experiment_view import figure, figure_bundle, table_bundle

        self.exp = exp
        self.ids = {k: f"labkit-exp-{k}-{uuid.uuid4().hex}" for k in ("table", "plot")}
        display(
            table_bundle(exp),
            raw=True,  # type: ignore[no-untyped-call]
            display_id=self.ids["table"],
        )
        # The plot is a live FigureWidget while trials run (JupyterLab's plotly renderer
        # draws a static figure once and ignores later updates of the same output), and
        # becomes the static figure when the sweep ends.
        self.plot: Any = None
        fig = figure(exp)
        if fig is not None:
            import plotly.graph_objects as go

            self.plot = go.FigureWidget(fig)
            display(self.plot, display_id=self.ids["plot"])  # type: ignore[no-untyped-call]
        else:
            display(
                figure_bundle(exp),
                raw=True,  # type: ignore[no-untyped-call]
                display_id=self.ids["plot"],
            )
        self.buttons = ipywidgets.HBox(layout={"flex_flow": "row wrap"})
        self.buttons.add_class("labkit-experiment-handoff")
        self.output = ipywidgets.Output()
        display(ipywidgets.VBox([self.buttons, self.output]))  # type: ignore[no-untyped-call]

    def update(self, final: bool = False) -> None:
        import ipywidgets
        from IPython.display import update_display

        from labkit.notebook.experiment_view import figure, figure_bundle, table_bundle

        update_display(
            table_bundle(self.exp),
            raw=True,  # type: ignore[no-untyped-call]
            display_id=self.ids["table"],
        )
        fig = figure(self.exp)
        if final or fig is None:
            update_display(
                figure_bundle(self.exp),
                raw=True,  # type: ignore[no-untyped-call]
                display_id=self.ids["plot"],
            )
        elif self.plot is None:
            import plotly.graph_objects as go

            self.plot = go.FigureWidget(fig)
            update_display(self.plot, display_id=self.ids["plot"])  # type: ignore[no-untyped-call]
        else:
            with self.plot.batch_update():
                self.plot.data = ()
                self.plot.add_traces(list(fig.data))
                self.plot.layout = fig.layout
        have = len(self.buttons.children)
        new = []
        for t in self.exp.trials[have:]:
            b = ipywidgets.Button(
                description=f"hand off trial #{t.id}",
                tooltip="register this trial's model and hand it off",
                disabled=t.model is None,
            )
            b.add_class("labkit-handoff-trial")
            b.on_click(lambda _b, tid=t.id: self._handoff(tid))
            new.append(b)
        self.buttons.children = (*self.buttons.children, *new)

    def _handoff(self, trial_id: int) -> None:
        from IPython.display import display

        with self.output:
            try:
                display(self.exp.handoff(trial_id))  # type: ignore[no-untyped-call]
            except Exception as exc:  # noqa: BLE001 - shown to the user, not raised in a callback
                print(f"hand off of trial #{trial_id} failed: {type(exc).__name__}: {exc}")


def experiment(
    train_fn: Callable[..., Any],
    params: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]],
    *,
    name: str,
    metric: str | None = None,
    example_inputs: Any = None,
    task: str | None = None,
    store: str | os.PathLike[str] = "experiments",
    workers: int = 0,
    widgets: bool | None = None,
) -> Experiment:
    """Run ``train_fn(**p)`` for every ``p`` in ``params``; see the module doc.

    ``metric`` ranks trials (default: the first numeric metric returned); ``example_inputs``
    (or an ``"example_inputs"`` key in what ``train_fn`` returns) is what the CPU latency is
    measured on and what a handed-off model is registered with.
    """
    if not callable(train_fn):
        raise InputError(f"train_fn must be a function, got {type(train_fn).__name__}")
    if workers < 0:
        raise InputError(f"workers={workers}: use 0 (sequential) or a number of processes")
    planned = expand_params(params)
    st = ExperimentStore(store, name)
    exp = Experiment(name, planned, st, metric, example_inputs, task)
    st.start(
        {
            "planned": planned,
            "metric": metric,
            "workers": workers,
            "train_fn": getattr(train_fn, "__qualname__", repr(train_fn)),
        }
    )
    live = _Live(exp) if (widgets is not False and _in_kernel()) else None
    exp.running = True
    try:
        if workers:
            _run_parallel(exp, train_fn, planned, workers, live)
        else:
            for i, p in enumerate(planned, start=1):
                trial = Trial(i, p)
                try:
                    out: Any = _train(train_fn, p)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failed trial does not end a sweep
                    out = exc
                exp._finish(trial, out)
                if live is not None:
                    live.update()
    except KeyboardInterrupt:
        exp.interrupted = True  # the finished trials are saved; the sweep ends here
    finally:
        exp.running = False
        if live is not None:
            live.update(final=True)
    return exp


def _run_parallel(
    exp: Experiment,
    train_fn: Callable[..., Any],
    planned: list[dict[str, Any]],
    workers: int,
    live: _Live | None,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork of a kernel holding threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {
            pool.submit(_train, train_fn, p): Trial(i, p) for i, p in enumerate(planned, start=1)
        }
        try:
            for fut in as_completed(futures):
                exc = fut.exception()
                exp._finish(futures[fut], exc if exc is not None else fut.result())
                if live is not None:
                    live.update()
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            raise
    exp.trials.sort(key=lambda t: t.id)


def load(
    name: str, *, store: str | os.PathLike[str] = "experiments", run: str | None = None
) -> list[dict[str, Any]]:
    """The saved trial records of an experiment's latest run (or ``run``)."""
    return ExperimentStore.load(Path(store), name, run)
