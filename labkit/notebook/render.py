"""A handoff result (``HandoffResult.to_dict()``) as HTML and as notebook outputs.

Registered as IPython display formatters by :mod:`labkit.notebook.activation` (the pipeline
never imports this). Read leniently, with the readers and the decision wording of
:mod:`labkit.result_text` (the one home of the plain text): any field may be
missing and the page still renders what it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from labkit.notebook.charts import PLOTLY_MIME, speed_figure
from labkit.result_text import (
    decision_lines,
    max_rel,
    num,
    p50_ms,
    parity_ok,
    pick,
    render_text,
    speedup,
)

__all__ = ["render_result_html", "render_result_outputs", "render_result_text"]

render_result_text = render_text  # the plain text has one home: labkit.result_text


def fmt(value: object, digits: int = 3) -> str:
    v = num(value)
    if v is None:
        return "—" if value is None else escape(str(value))
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def _badge(ok: bool | None) -> str:
    if ok is None:
        return "—"
    color, text = ("#2ca02c", "pass") if ok else ("#d62728", "FAIL")
    return f'<span style="color:{color};font-weight:bold">{text}</span>'


def _parity_table(variants: list[Mapping[str, Any]], default: str | None) -> str:
    rows = []
    for v in variants:
        par = v.get("parity") or {}
        metric_name = pick(par, "metric") or ""
        metric = pick(par, "metric_value")
        name = escape(str(v.get("name")))
        if v.get("name") == default:
            name = f"<b>{name}</b> (default)"
        rows.append(
            f"<tr><td>{name}</td><td>{escape(str(v.get('precision', '')))}</td>"
            f"<td>{_badge(parity_ok(v))}</td><td>{fmt(max_rel(v))}</td>"
            f"<td>{fmt(pick(par, 'max_abs'))}</td>"
            f"<td>{escape(str(metric_name))} {fmt(metric)}</td>"
            f"<td>{fmt(p50_ms(v))}</td>"
            f"<td>{fmt(speedup(v))}×</td><td>{fmt(speedup(v, 'throughput'))}×</td>"
            "</tr>"
        )
    head = (
        "<tr><th>variant</th><th>precision</th><th>parity</th><th>max rel err</th>"
        "<th>max abs err</th><th>metric</th><th>p50 ms</th><th>speed-up p50</th>"
        "<th>speed-up throughput</th></tr>"
    )
    return f'<table class="labkit-table">{head}{"".join(rows)}</table>'


def _section(title: str, items: str, css: str) -> str:
    return f'<p>{title}:</p><ul class="{css}">{items}</ul>' if items else ""


def render_result_html(result: Mapping[str, Any]) -> str:
    """The handoff result as a self-contained HTML fragment (no scripts): what was written,
    the parity and speed table, what was left out. The speed chart is a plotly figure beside
    it (``labkit.notebook.charts.speed_figure``, shown by ``HandoffResult._ipython_display_``)."""
    # Lazily: importing labkit.bundle loads numpy, which `import labkit.notebook` must not.
    from labkit.bundle.changes import title

    variants = [v for v in result.get("variants") or [] if isinstance(v, Mapping)]
    change = str(result.get("change") or "")
    default = result.get("default_variant")
    rejected = [r for r in result.get("rejected") or [] if isinstance(r, Mapping)]
    rej = "".join(
        f"<li><b>{escape(str(r.get('name')))}</b>: {escape(str(r.get('reason')))}</li>"
        for r in rejected
    )
    decided = "".join(f"<li>{escape(line)}</li>" for line in decision_lines(result))
    origin = result.get("experiment")
    if isinstance(origin, Mapping):
        decided = (
            f"<li>from experiment {escape(str(origin.get('name')))}, run "
            f"{escape(str(origin.get('run')))}, trial #{escape(str(origin.get('trial')))}"
            "</li>" + decided
        )
    return (
        '<div class="labkit-result">'
        f"<h3>{escape(str(result.get('name')))} {escape(str(result.get('version')))}</h3>"
        f"<p><b>{escape(title(change))}</b>"
        f"{' — ' + escape(str(result['change_reason'])) if result.get('change_reason') else ''}"
        f"</p><p>default variant: <b>{escape(str(default))}</b><br>"
        f"bundle: <code>{escape(str(result.get('path')))}</code></p>"
        f"{_parity_table(variants, default if isinstance(default, str) else None)}"
        f"{_section('what the handoff decided', decided, 'labkit-decisions')}"
        f"{'<p>left out:</p><ul>' + rej + '</ul>' if rej else ''}"
        "</div>"
    )


def render_result_outputs(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The handoff result as notebook outputs: the HTML/text summary, then the speed chart.

    Two outputs, not one bundle: a front end shows one mimetype per output, and JupyterLab
    would pick the plotly figure over the HTML and hide the version, path and parity table.
    The chart is plotly JSON (JupyterLab draws it without a kernel, so it survives
    reopening), with a text line for front ends that cannot draw it.
    """
    from labkit.errors import MissingDependencyError

    outputs = [{"text/html": render_result_html(result), "text/plain": render_result_text(result)}]
    try:
        fig = speed_figure(result)
    except MissingDependencyError:  # the table still says it all; a display must not fail
        fig = None
    if fig is not None:
        outputs.append(
            {PLOTLY_MIME: fig.to_plotly_json(), "text/plain": "(speed-up chart: plotly figure)"}
        )
    return outputs
