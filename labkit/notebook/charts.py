"""Plotly figures for the research workspace: training panels and accuracy-vs-latency.

Why plotly (over bqplot): one figure object serves both sides of the notebook. Live, it is a
``FigureWidget`` (anywidget-based in plotly >= 6, no extra JupyterLab extension to build);
saved, the same figure's JSON goes into the output as ``application/vnd.plotly.v1+json``, which
the ``jupyterlab-plotly`` renderer shipped in the plotly wheel draws without a kernel, so the
plot survives closing and reopening the notebook and headless execution (nbconvert,
``handoff export``). bqplot has no kernel-free rendering: a saved bqplot output is a dead widget.
Its figures also carry their own controls (log-scale toggle) that work in the static view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from labkit.errors import MissingDependencyError
from labkit.notebook.objective import infer_goal, pareto_front, words

__all__ = [
    "PANELS",
    "metric_panel",
    "pareto_figure",
    "speed_bars",
    "figure_json",
    "speed_figure",
    "static_bundle",
    "training_figure",
]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PANELS = ("loss", "accuracy", "learning rate", "other")
_SPLITS = ("train", "val", "valid", "validation", "test", "eval")
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise MissingDependencyError("plotly", "notebook") from None
    return go


def metric_panel(name: str) -> str:
    """Which panel a metric belongs to: losses share one y-axis, accuracies another."""
    low = name.lower()
    if low in ("lr", "learning_rate") or low.endswith("_lr") or "learning_rate" in low:
        return "learning rate"
    if "loss" in words(name):
        return "loss"
    if infer_goal(name) == "max":  # accuracy-like: the words of labkit.notebook.objective
        return "accuracy"
    return "other"


def split_of(name: str) -> tuple[str, str]:
    """``val_loss`` -> (``val``, ``loss``); train and validation of one metric pair up."""
    low = name.lower()
    for split in _SPLITS:
        for sep in ("_", "/", "-"):
            if low.startswith(split + sep):
                return (
                    "val" if split in ("val", "valid", "validation", "eval") else split,
                    name[len(split) + 1 :],
                )
    return "train", name


def training_figure(
    history: Mapping[str, Sequence[float]],
    elapsed: Sequence[float],
    *,
    title: str,
    diverged: Mapping[str, int],
    widget: bool = False,
) -> Any:
    """One subplot per panel in use; a validation line is dashed beside its train twin."""
    go = _plotly()
    from plotly.subplots import make_subplots

    panels = [p for p in PANELS if any(metric_panel(k) == p for k in history)] or ["loss"]
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        subplot_titles=panels,
        vertical_spacing=0.12 if len(panels) > 1 else 0.0,
    )
    if widget:
        fig = go.FigureWidget(fig)
    bases: dict[str, str] = {}
    for name, ys in history.items():
        split, base = split_of(name)
        color = bases.setdefault(base, _COLORS[len(bases) % len(_COLORS)])
        steps = list(range(1, len(ys) + 1))
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[y if math.isfinite(y) else None for y in ys],
                name=name,
                mode="lines",
                line={"color": color, "dash": "dash" if split == "val" else "solid"},
                connectgaps=True,
                customdata=list(elapsed[: len(ys)]),
                hovertemplate=f"{escape(name)}=%{{y:.4g}}<br>step %{{x}}, %{{customdata:.1f}} s"
                "<extra></extra>",
            ),
            row=panels.index(metric_panel(name)) + 1,
            col=1,
        )
    fig.update_xaxes(title_text="step", row=len(panels), col=1)
    warn = "; ".join(f"{k} diverged at step {s}" for k, s in diverged.items())
    secs = elapsed[-1] if elapsed else 0.0
    head = (
        f"{escape(title)} — step {max((len(v) for v in history.values()), default=0)}, {secs:.1f} s"
    )
    fig.update_layout(
        title={
            "text": head
            + (f"<br><span style='color:#d62728'>⚠ {escape(warn)}</span>" if warn else "")
        },
        height=220 + 180 * len(panels),
        margin={"t": 90 if warn else 70},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 1.0,
                "y": 1.0,
                "xanchor": "right",
                "yanchor": "bottom",
                "showactive": True,
                "buttons": [
                    {
                        "label": "linear",
                        "method": "relayout",
                        "args": [
                            {
                                f"yaxis{i or ''}.type": "linear"
                                for i in range(len(panels) + 1)
                                if i != 1
                            }
                        ],
                    },
                    {
                        "label": "log",
                        "method": "relayout",
                        "args": [
                            {
                                f"yaxis{i or ''}.type": "log"
                                for i in range(len(panels) + 1)
                                if i != 1
                            }
                        ],
                    },
                ],
            }
        ],
    )
    return fig


def pareto_figure(
    labels: Sequence[str],
    latency_ms: Sequence[float],
    values: Sequence[float],
    *,
    label: str,
    goal: str,
    title: str,
) -> Any:
    """A metric against measured CPU latency, the Pareto front (by ``goal``: "min" or "max")
    drawn as a step line; ``label`` is the axis title ("val_loss, lower is better")."""
    go = _plotly()
    pts = list(zip(latency_ms, values))
    front = pareto_front(pts, goal=goal)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=list(latency_ms),
            y=list(values),
            mode="markers+text",
            text=list(labels),
            textposition="top center",
            name="trials",
            marker={"size": 10, "color": "#1f77b4"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[pts[i][0] for i in front],
            y=[pts[i][1] for i in front],
            mode="lines+markers",
            line={"shape": "hv", "color": "#d62728"},
            marker={"size": 13, "symbol": "star", "color": "#d62728"},
            name="Pareto front",
        )
    )
    fig.update_layout(
        title={"text": escape(title)},
        height=380,
        xaxis={"title": {"text": "CPU latency, batch 1 (ms, ONNX Runtime)"}},
        yaxis={"title": {"text": escape(label)}},
    )
    return fig


SPEED_SERIES = (
    ("p50", "batch 1 (p50 latency)", "#1f77b4"),
    ("throughput", "throughput", "#ff7f0e"),
)


def speed_bars(result: Mapping[str, Any]) -> tuple[list[str], dict[str, list[float | None]]]:
    """Variant names and their speed-ups vs PyTorch eager per series, for the variants that
    were benchmarked; the default variant's label says so."""
    from labkit.result_text import speedup  # the one lenient reader of a result

    default = result.get("default_variant")
    labels: list[str] = []
    values: dict[str, list[float | None]] = {key: [] for key, _, _ in SPEED_SERIES}
    for v in result.get("variants") or []:
        if not isinstance(v, Mapping) or speedup(v) is None:
            continue
        name = str(v.get("name"))
        labels.append(f"{name} (default)" if v.get("name") == default else name)
        for key, _, _ in SPEED_SERIES:
            values[key].append(speedup(v, key))
    return labels, values


def speed_figure(result: Mapping[str, Any]) -> Any:
    """The handoff result's speed chart: speed-up per variant vs PyTorch eager (the dashed
    line at 1×), batch-1 and throughput side by side, the default variant outlined. None when
    no variant was benchmarked. The extension's result view draws this same figure's JSON."""
    labels, values = speed_bars(result)
    if not labels:
        return None
    go = _plotly()
    outline = [3 if label.endswith(" (default)") else 0 for label in labels]
    fig = go.Figure()
    for key, name, color in SPEED_SERIES:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values[key],
                name=name,
                meta=key,
                text=[f"{v:.2f}×" if v is not None else "" for v in values[key]],
                textposition="outside",
                marker={"color": color, "line": {"width": outline, "color": "#000000"}},
                hovertemplate=f"%{{x}}: %{{y:.2f}}× {name} vs PyTorch eager<extra></extra>",
            )
        )
    fig.add_hline(
        y=1.0,
        line={"dash": "dash", "color": "#7f7f7f"},
        annotation_text="PyTorch eager",
        annotation_position="top left",
    )
    top = max([v for vs in values.values() for v in vs if v is not None] + [1.0])
    fig.update_layout(
        title={"text": "speed-up vs PyTorch eager (higher is better)"},
        barmode="group",
        height=320,
        width=560,
        margin={"t": 50, "b": 40, "l": 50, "r": 20},
        yaxis={"title": {"text": "× PyTorch eager"}, "range": [0, top * 1.2]},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def figure_json(fig: Any) -> dict[str, Any]:
    """A figure as plain JSON data (no numpy arrays), as a display bundle or message holds it."""
    import json

    data: dict[str, Any] = json.loads(fig.to_json())
    return data


def static_bundle(fig: Any, html: str, text: str) -> dict[str, Any]:
    """A display bundle that survives without a kernel: plotly JSON + an HTML/text fallback."""
    return {PLOTLY_MIME: fig.to_plotly_json(), "text/html": html, "text/plain": text}
