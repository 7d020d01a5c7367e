"""Running an experiment: train each trial, measure its CPU latency, save it, show it.

Each trial calls ``train_fn(**params)``, which returns the trained model and its metrics —
``{"model": m, "val_acc": 0.93, ...}`` or ``(m, {"val_acc": 0.93})`` — then measures the
model's batch-1 CPU latency with the same quick ONNX Runtime export ``labkit.summary`` uses,
and saves the record and the weights (:mod:`labkit.notebook.experiment_store`). Trials run
one after another by default; ``workers=N`` trains in N worker processes (the function must
then be importable, not defined in the notebook) while latencies are still measured one at a
time in this process, so they do not compete for the cores. An interrupt (■) ends the sweep
and keeps the finished trials.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from labkit.errors import InputError
from labkit.model_state import preserved
from labkit.notebook import experiment_view as view
from labkit.notebook.env import in_kernel
from labkit.notebook.experiment_model import Experiment, call_with
from labkit.notebook.experiment_store import ExperimentStore
from labkit.notebook.objective import objective
from labkit.notebook.search import Search, plan
from labkit.notebook.trials import Trial

__all__ = ["run_experiment"]

Outcome = tuple[Any, dict[str, Any], Any, float]


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


def _train(train_fn: Callable[..., Any], params: dict[str, Any]) -> Outcome:
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


def _is_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _save_weights(exp: Experiment, store: ExperimentStore, trial: Trial) -> None:
    """Save the trial's weights; with ``model_fn``, check at once that they load back into
    the architecture it builds (a mismatch found now, not after a restart)."""
    if not _is_module(trial.model):
        trial.note = "train_fn returned no torch module: nothing to save"
        return
    try:
        trial.weights, trial.weights_sha256 = store.save_weights(trial.id, trial.model)
    except Exception as exc:  # noqa: BLE001 - the trial stays usable in memory
        trial.note = f"weights not saved: {type(exc).__name__}: {str(exc)[:200]}"
        return
    if exp.model_fn is not None:
        try:
            store.load_weights(call_with(exp.model_fn, trial.params), trial)
        except Exception as exc:  # noqa: BLE001 - reported in the table and the record
            trial.note = f"model_fn cannot rebuild it: {str(exc)[:300]}"


def finish(
    exp: Experiment, store: ExperimentStore, trial: Trial, out: Outcome | BaseException
) -> None:
    """Record one trial's outcome: metrics, latency, weights; save it at once."""
    if isinstance(out, BaseException):
        trial.status = "failed"
        trial.error = f"{type(out).__name__}: {str(out).splitlines()[0] if str(out) else ''}"
    else:
        model, trial.metrics, inputs, trial.elapsed_s = out
        trial.model = model
        if exp.example_inputs is None and inputs is not None:
            exp.example_inputs = inputs
            store.save_inputs(inputs)  # so a reopened run can hand a trial off
        trial.latency_ms = _latency(model, inputs if inputs is not None else exp.example_inputs)
        _save_weights(exp, store, trial)
    exp.trials.append(trial)
    store.save_trial(trial.record())


class _Live:
    """The notebook view: the table (static HTML, replaced after each trial), the plot
    (a live FigureWidget while trials run, the static figure once the sweep ends) and the
    trials output the extension draws "hand off" buttons from."""

    def __init__(self, exp: Experiment) -> None:
        from IPython.display import display

        self.exp = exp
        self.ids = {k: f"labkit-exp-{k}-{uuid.uuid4().hex}" for k in ("table", "plot", "trials")}
        display(view.table_bundle(exp), raw=True, display_id=self.ids["table"])  # type: ignore[no-untyped-call]
        self.plot: Any = None
        display(view.figure_bundle(exp), raw=True, display_id=self.ids["plot"])  # type: ignore[no-untyped-call]
        display(view.trials_bundle(exp), raw=True, display_id=self.ids["trials"])  # type: ignore[no-untyped-call]

    def update(self, final: bool = False) -> None:
        from IPython.display import update_display

        exp = self.exp
        update_display(view.table_bundle(exp), raw=True, display_id=self.ids["table"])  # type: ignore[no-untyped-call]
        fig = view.figure(exp)
        # JupyterLab's plotly renderer draws a static figure once and ignores updates of the
        # same output: live, the plot is a FigureWidget; at the end, the static figure.
        if final or fig is None or not _widgets():
            update_display(view.figure_bundle(exp), raw=True, display_id=self.ids["plot"])  # type: ignore[no-untyped-call]
        elif self.plot is None:
            import plotly.graph_objects as go

            self.plot = go.FigureWidget(fig)
            update_display(self.plot, display_id=self.ids["plot"])  # type: ignore[no-untyped-call]
        else:
            with self.plot.batch_update():
                self.plot.data = ()
                self.plot.add_traces(list(fig.data))
                self.plot.layout = fig.layout
        update_display(view.trials_bundle(exp), raw=True, display_id=self.ids["trials"])  # type: ignore[no-untyped-call]


def _widgets() -> bool:
    try:
        import anywidget  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def _value(exp: Experiment, trial: Trial) -> float | None:
    return exp.objective.value(trial.metrics) if trial.status == "ok" else None


def run_experiment(
    train_fn: Callable[..., Any],
    params: Any,
    *,
    name: str,
    metric: str | None = None,
    goal: str | None = None,
    model_fn: Callable[..., Any] | None = None,
    example_inputs: Any = None,
    task: str | None = None,
    store: str = "experiments",
    workers: int = 0,
    widgets: bool | None = None,
) -> Experiment:
    if not callable(train_fn):
        raise InputError(f"train_fn must be a function, got {type(train_fn).__name__}")
    if model_fn is not None and not callable(model_fn):
        raise InputError(f"model_fn must be a function, got {type(model_fn).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"workers={workers!r}: use 0 (sequential) or a number of processes")
    goal_ = objective(metric, goal)  # before any training: a bad metric costs nothing
    search = plan(params)
    search.bind(goal_)
    st = ExperimentStore(store, name)
    exp = Experiment(
        st, goal_, search.planned, example_inputs=example_inputs, task=task, model_fn=model_fn
    )
    info: dict[str, Any] = {
        "search": search.describe(),
        "planned_count": search.planned,
        "metric": goal_.metric,
        "goal": goal_.goal,
        "task": task,
        "workers": workers,
        "train_fn": getattr(train_fn, "__qualname__", repr(train_fn)),
        "model_fn": getattr(model_fn, "__qualname__", None) if model_fn else None,
    }
    st.start(info)
    if example_inputs is not None:
        st.save_inputs(example_inputs)
    live = _Live(exp) if (widgets is not False and in_kernel()) else None
    exp.running = True
    try:
        if workers:
            _run_parallel(exp, st, train_fn, search, workers, live)
        else:
            _run_sequential(exp, st, train_fn, search, live)
    except KeyboardInterrupt:
        exp.interrupted = True  # the finished trials are saved; the sweep ends here
    finally:
        exp.running = False
        st.update_run(trials=len(exp.trials), interrupted=exp.interrupted)
        if live is not None:
            live.update(final=True)
    return exp


def _run_sequential(
    exp: Experiment,
    st: ExperimentStore,
    train_fn: Callable[..., Any],
    search: Search,
    live: _Live | None,
) -> None:
    i = 0
    while (asked := search.ask()) is not None:
        i += 1
        token, p = asked
        trial = Trial(i, p)
        try:
            out: Any = _train(train_fn, p)
        except KeyboardInterrupt:
            search.tell(token, None)
            raise
        except Exception as exc:  # noqa: BLE001 - one failed trial does not end a sweep
            out = exc
        finish(exp, st, trial, out)
        search.tell(token, _value(exp, trial))
        if live is not None:
            live.update()


def _run_parallel(
    exp: Experiment,
    st: ExperimentStore,
    train_fn: Callable[..., Any],
    search: Search,
    workers: int,
    live: _Live | None,
) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # no fork of a kernel holding threads
    count = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        running: dict[Any, tuple[Trial, Any]] = {}

        def submit() -> bool:
            nonlocal count
            asked = search.ask()
            if asked is None:
                return False
            count += 1
            token, p = asked
            running[pool.submit(_train, train_fn, p)] = (Trial(count, p), token)
            return True

        while len(running) < workers and submit():
            pass
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    trial, token = running.pop(fut)
                    exc = fut.exception()
                    finish(exp, st, trial, exc if exc is not None else fut.result())
                    search.tell(token, _value(exp, trial))
                    if live is not None:
                        live.update()
                    submit()
        except KeyboardInterrupt:
            for fut in running:
                fut.cancel()
            raise
    exp.trials.sort(key=lambda t: t.id)
