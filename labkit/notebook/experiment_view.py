"""What an experiment shows: the results table, the metric-vs-CPU-latency plot and the
trials output the extension draws "hand off" buttons from.

All three are *static* outputs (HTML; plotly JSON; JSON data with an HTML fallback) replaced
after every trial, so what is on screen is also what the notebook saves and shows again after
reopening — no widget that needs the kernel's memory. Every view ranks by the experiment's
:class:`~labkit.notebook.objective.Objective`: the ★ (Pareto front), "best", the axis label.

This module reads an experiment through :class:`ExperimentLike` and never imports
``experiments`` (which imports it).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from html import escape
from typing import Any, Protocol

from labkit.notebook.charts import pareto_figure, static_bundle
from labkit.notebook.objective import Objective, pareto_front
from labkit.notebook.protocol import EXPERIMENT_MIME, ExperimentOutput, TrialRow
from labkit.notebook.trials import Trial

__all__ = [
    "ExperimentLike",
    "best_trial",
    "figure",
    "figure_bundle",
    "front_ids",
    "table_bundle",
    "table_html",
    "trials_bundle",
]


class ExperimentLike(Protocol):
    name: str
    run: str
    root: str
    planned: int
    trials: list[Trial]
    objective: Objective
    running: bool
    interrupted: bool

    @property
    def bundle_name(self) -> str: ...

    def text(self) -> str: ...


def _state(exp: ExperimentLike) -> str:
    return "running" if exp.running else ("interrupted" if exp.interrupted else "done")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return f'<b style="color:#d62728">{v}</b>'
        return f"{v:.4g}"
    return escape(str(v))


def _plotted(exp: ExperimentLike) -> list[Trial]:
    return [
        t
        for t in exp.trials
        if t.status == "ok"
        and t.latency_ms is not None
        and exp.objective.value(t.metrics) is not None
    ]


def front_ids(exp: ExperimentLike) -> set[int]:
    """Trials on the Pareto front of CPU latency and the objective."""
    plotted = _plotted(exp)
    pts = [(float(t.latency_ms or 0), exp.objective.value(t.metrics) or 0.0) for t in plotted]
    return {plotted[i].id for i in pareto_front(pts, goal=exp.objective.goal)}


def best_trial(exp: ExperimentLike) -> Trial | None:
    """The finished trial with the best value of the objective (ties: the first)."""
    o = exp.objective
    ranked = [(o.score(v), -t.id, t) for t in exp.trials if (v := o.value(t.metrics)) is not None]
    ranked = [r for r in ranked if r[2].status == "ok"]
    return max(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


def figure(exp: ExperimentLike) -> Any | None:
    trials = _plotted(exp)
    if not trials:
        return None
    o = exp.objective
    return pareto_figure(
        [f"#{t.id}" for t in trials],
        [float(t.latency_ms or 0) for t in trials],
        [o.value(t.metrics) or 0.0 for t in trials],
        label=o.label,
        goal=o.goal,
        title=f"{exp.name}: {o.metric} vs CPU latency (★ Pareto front)",
    )


def _missing_note(exp: ExperimentLike) -> str:
    ok = [t for t in exp.trials if t.status == "ok"]
    if not ok or any(exp.objective.value(t.metrics) is not None for t in ok):
        return ""
    seen = sorted({k for t in ok for k in t.metrics})
    return (
        f'<p style="color:#b35900">no trial returned a finite {escape(exp.objective.metric)!s}'
        f" (metrics returned: {escape(', '.join(seen) or 'none')}): pass metric= one of them"
        "</p>"
    )


def table_html(exp: ExperimentLike) -> str:
    o = exp.objective
    params = list(dict.fromkeys(k for t in exp.trials for k in t.params))
    metrics = list(dict.fromkeys(k for t in exp.trials for k in t.metrics))
    front, best = front_ids(exp), best_trial(exp)
    arrow = "↓" if o.goal == "min" else "↑"
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in [
            "trial",
            *params,
            *(f"{m} {arrow}" if m == o.metric else m for m in metrics),
            "CPU latency (ms)",
            "elapsed (s)",
            "weights",
            "status",
        ]
    )
    rows = []
    for t in exp.trials:
        mark = (" ★" if t.id in front else "") + (" best" if best and t.id == best.id else "")
        weights = "saved" if t.weights else ("in memory" if t.model is not None else "—")
        if t.note:
            weights += f" ({escape(t.note)})"
        cells = [
            f"#{t.id}{mark}",
            *(_fmt(t.params.get(k, "")) for k in params),
            *(
                f"<b>{_fmt(t.metrics.get(k, ''))}</b>"
                if k == o.metric
                else _fmt(t.metrics.get(k, ""))
                for k in metrics
            ),
            _fmt(t.latency_ms) if t.latency_ms is not None else "—",
            f"{t.elapsed_s:.1f}",
            weights,
            escape(t.status) + (f": {escape(t.error)}" if t.error else ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<div class="labkit-experiment"><b>experiment {escape(exp.name)}</b> — '
        f"{len(exp.trials)} of {exp.planned} trials, {_state(exp)}; ranked by "
        f"<b>{escape(o.label)}</b>; run <code>{escape(exp.run)}</code> saved in "
        f"<code>{escape(exp.root)}</code>"
        f"{_missing_note(exp)}"
        f'<table class="labkit-table">{"<tr>" + head + "</tr>"}{"".join(rows)}</table>'
        f"<small>★ on the Pareto front: no other trial is both faster and better by "
        f"{escape(o.metric)} ({escape(o.better)}); best: the best {escape(o.metric)}</small></div>"
    )


def table_bundle(exp: ExperimentLike) -> dict[str, Any]:
    return {"text/html": table_html(exp), "text/plain": exp.text()}


def figure_bundle(exp: ExperimentLike) -> dict[str, Any]:
    """The plot as its own output: a front end renders one type per output, and the
    plotly figure would hide the table if both were in one."""
    fig = figure(exp)
    if fig is None:
        return {"text/plain": f"(no finished trial with a CPU latency and {exp.objective.metric})"}
    best = best_trial(exp)
    note = f"best {exp.objective.label}: #{best.id}" if best is not None else ""
    return static_bundle(fig, f"<p>{escape(note)}</p>", note)


def output_data(exp: ExperimentLike) -> ExperimentOutput:
    o = exp.objective
    front, best = front_ids(exp), best_trial(exp)
    return ExperimentOutput(
        experiment=exp.name,
        run=exp.run,
        store=exp.root,
        metric=o.metric,
        goal=o.goal,
        label=o.label,
        state=_state(exp),
        planned=exp.planned,
        bundle_name=exp.bundle_name,
        trials=[
            TrialRow(
                id=t.id,
                params=t.record()["params"],
                metrics=t.record()["metrics"],
                latency_ms=t.latency_ms,
                status=t.status,
                weights_saved=t.weights is not None,
                pareto=t.id in front,
                best=best is not None and t.id == best.id,
            )
            for t in exp.trials
        ],
    )


def trials_bundle(exp: ExperimentLike) -> dict[str, Any]:
    """The trials as JSON for the extension's per-trial buttons; without the extension
    (another front end, a static viewer) the HTML says how to hand a trial off in code."""
    ready = [t.id for t in exp.trials if t.weights is not None or t.model is not None]
    load = escape(f"exp = labkit.experiment.load({exp.name!r}, run={exp.run!r}, model_fn=build)")
    hint = (
        f"hand off a trial: <code>exp.handoff({ready[0]})</code> — after a kernel restart, "
        f"<code>{load}</code> first (build(**params) returns the untrained model)"
        if ready
        else "no trial kept a model to hand off"
    )
    text = (
        f"hand off a trial: exp.handoff(N) (trials {', '.join(map(str, ready))})"
        if ready
        else "no trial kept a model to hand off"
    )
    return {
        EXPERIMENT_MIME: asdict(output_data(exp)),
        "text/html": f'<div class="labkit-experiment-trials"><small>{hint}</small></div>',
        "text/plain": text,
    }
