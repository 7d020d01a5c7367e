"""What an experiment shows: a results table and accuracy vs CPU latency, static and live.

The table and the plot are *static* outputs (HTML; plotly JSON) replaced after every trial,
so what is on screen is also what the notebook saves and shows again after reopening.
The "hand off this trial" buttons are a widget below it (they need the kernel anyway).
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from labkit.notebook.charts import pareto_figure, pareto_front, static_bundle

if TYPE_CHECKING:
    from labkit.notebook.experiments import Experiment, Trial

__all__ = ["figure", "figure_bundle", "table_bundle", "table_html"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return f'<b style="color:#d62728">{v}</b>'
        return f"{v:.4g}"
    return escape(str(v))


def _plotted(exp: Experiment) -> list[Trial]:
    return [
        t
        for t in exp.trials
        if t.latency_ms is not None and isinstance(t.metrics.get(exp.metric or ""), (int, float))
    ]


def figure(exp: Experiment) -> Any | None:
    trials = _plotted(exp)
    if not trials or exp.metric is None:
        return None
    return pareto_figure(
        [f"#{t.id}" for t in trials],
        [float(t.latency_ms or 0) for t in trials],
        [float(t.metrics[exp.metric]) for t in trials],
        metric=exp.metric,
        title=f"{exp.name}: {exp.metric} vs CPU latency (★ Pareto front)",
    )


def table_html(exp: Experiment) -> str:
    params = list(dict.fromkeys(k for t in exp.trials for k in t.params))
    metrics = list(dict.fromkeys(k for t in exp.trials for k in t.metrics))
    plotted = _plotted(exp)
    front = {
        plotted[i].id
        for i in pareto_front(
            [(float(t.latency_ms or 0), float(t.metrics[exp.metric or ""])) for t in plotted]
        )
    }
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ["trial", *params, *metrics, "CPU latency (ms)", "elapsed (s)", "status"]
    )
    rows = []
    for t in exp.trials:
        star = " ★" if t.id in front else ""
        cells = [
            f"#{t.id}{star}",
            *(_fmt(t.params.get(k, "")) for k in params),
            *(_fmt(t.metrics.get(k, "")) for k in metrics),
            _fmt(t.latency_ms) if t.latency_ms is not None else "—",
            f"{t.elapsed_s:.1f}",
            escape(t.status) + (f": {escape(t.error)}" if t.error else ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    state = "running" if exp.running else ("interrupted" if exp.interrupted else "done")
    return (
        f'<div class="labkit-experiment"><b>experiment {escape(exp.name)}</b> — '
        f"{len(exp.trials)} of {exp.planned} trials, {state}; saved in "
        f"<code>{escape(str(exp.path))}</code>"
        f'<table class="labkit-table">{"<tr>" + head + "</tr>"}{"".join(rows)}</table>'
        "<small>★ on the Pareto front: no other trial is both faster and more accurate"
        "</small></div>"
    )


def table_bundle(exp: Experiment) -> dict[str, Any]:
    return {"text/html": table_html(exp), "text/plain": exp.text()}


def figure_bundle(exp: Experiment) -> dict[str, Any]:
    """The plot as its own output: a front end renders one type per output, and the
    plotly figure would hide the table if both were in one."""
    fig = figure(exp)
    if fig is None:
        return {"text/plain": "(no trial with a latency and the metric yet)"}
    best = exp.best() if exp.trials else None
    note = f"best {exp.metric}: #{best.id}" if best is not None else ""
    return static_bundle(fig, f"<p>{escape(note)}</p>", note)
