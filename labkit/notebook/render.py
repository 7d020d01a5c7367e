"""A handoff result (``HandoffResult.to_dict()``) as HTML (``_repr_html_``) and as the one
plain-text summary (``handoff export``, ``str(result)``).

Read leniently: any field may be missing and the page still renders what it has; only
fields that ``HandoffResult.to_dict()`` writes are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["render_result_html", "render_result_outputs", "render_result_text"]


def num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def pick(d: object, *keys: str) -> Any:
    """The first of ``keys`` present in mapping ``d`` (None otherwise)."""
    if isinstance(d, Mapping):
        for k in keys:
            if d.get(k) is not None:
                return d[k]
    return None


def fmt(value: object, digits: int = 3) -> str:
    v = num(value)
    if v is None:
        return "—" if value is None else escape(str(value))
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def parity_ok(variant: Mapping[str, Any]) -> bool | None:
    ok = pick(variant.get("parity"), "passed")
    return ok if isinstance(ok, bool) else None


def max_rel(variant: Mapping[str, Any]) -> float | None:
    return num(pick(variant.get("parity"), "max_rel"))


def p50_ms(variant: Mapping[str, Any]) -> float | None:
    return num(pick(variant.get("benchmark"), "p50_ms"))


def speedup(variant: Mapping[str, Any], kind: str = "p50") -> float | None:
    """Speed-up vs PyTorch eager, ``speedup.{p50,throughput}``: on the result's variant, or
    under ``benchmark`` in a manifest's variant."""
    nested = variant.get("speedup")
    if nested is None:
        nested = pick(variant.get("benchmark"), "speedup")
    return num(nested.get(kind)) if isinstance(nested, Mapping) else None


def _checks(variant: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The variant's engine configurations judged at handoff (``Variant.checks``): those
    that passed, and those rejected with the reason."""
    passed: list[str] = []
    rejected: list[tuple[str, str]] = []
    for c in variant.get("checks") or []:
        if isinstance(c, Mapping):
            cfg = f"{c.get('engine')}-{c.get('precision')}"
            if c.get("passed") is True:
                passed.append(cfg)
            else:
                rejected.append((cfg, str(c.get("reason"))))
    return passed, rejected


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
        passed, _ = _checks(v)
        rows.append(
            f"<tr><td>{name}</td><td>{escape(str(v.get('precision', '')))}</td>"
            f"<td>{escape(', '.join(passed)) or '—'}</td>"
            f"<td>{_badge(parity_ok(v))}</td><td>{fmt(max_rel(v))}</td>"
            f"<td>{fmt(pick(par, 'max_abs'))}</td>"
            f"<td>{escape(str(metric_name))} {fmt(metric)}</td>"
            f"<td>{fmt(p50_ms(v))}</td>"
            f"<td>{fmt(speedup(v))}×</td><td>{fmt(speedup(v, 'throughput'))}×</td>"
            "</tr>"
        )
    head = (
        "<tr><th>variant</th><th>precision</th><th>passed on</th><th>parity</th>"
        "<th>max rel err</th>"
        "<th>max abs err</th><th>metric</th><th>p50 ms</th><th>speed-up p50</th>"
        "<th>speed-up throughput</th></tr>"
    )
    return f'<table class="labkit-table">{head}{"".join(rows)}</table>'


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
    cfg = "".join(
        f"<li><b>{escape(str(v.get('name')))}/{escape(c)}</b>: {escape(why)}</li>"
        for v in variants
        for c, why in _checks(v)[1]
    )
    return (
        '<div class="labkit-result">'
        f"<h3>{escape(str(result.get('name')))} {escape(str(result.get('version')))}</h3>"
        f"<p><b>{escape(title(change))}</b>"
        f"{' — ' + escape(str(result['change_reason'])) if result.get('change_reason') else ''}"
        f"</p><p>default variant: <b>{escape(str(default))}</b><br>"
        f"bundle: <code>{escape(str(result.get('path')))}</code></p>"
        f"{_parity_table(variants, default if isinstance(default, str) else None)}"
        f"{'<p>left out:</p><ul>' + rej + '</ul>' if rej else ''}"
        f"{'<p>engine configurations rejected:</p><ul>' + cfg + '</ul>' if cfg else ''}"
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
    from labkit.notebook.charts import PLOTLY_MIME, speed_figure

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


def render_result_text(result: Mapping[str, Any]) -> str:
    """The handoff result as plain text: what was written, each variant, what was left out."""
    name, version, path = result.get("name"), result.get("version"), result.get("path")
    if result.get("change") == "none":
        return f"{name}: nothing changed since {version}; no new version written.\n  bundle: {path}"
    lines = [
        f"{name} {version}  ({result.get('change')}: {result.get('change_reason')})",
        f"  bundle: {path}",
        f"  report: {path}/report.md",
    ]
    default = result.get("default_variant")
    for v in result.get("variants") or []:
        if not isinstance(v, Mapping):
            continue
        sp, tp, err = speedup(v), speedup(v, "throughput"), max_rel(v)
        speed = (
            f"{sp:.2f}x batch-1 latency, {tp or 0:.2f}x throughput vs PyTorch eager"
            if sp is not None
            else "not benchmarked"
        )
        mark = "  <- default" if v.get("name") == default else ""
        err_text = f"{err:.2e}" if err is not None else "?"
        lines.append(f"  {v.get('name')!s:<13} parity max rel err {err_text}; {speed}{mark}")
        passed, rejected = _checks(v)
        if passed:
            lines.append(f"  {'':<13} passed on: {', '.join(passed)}")
        lines += [f"  {'':<13} rejected {cfg}: {why[:200]}" for cfg, why in rejected]
    for r in result.get("rejected") or []:
        if isinstance(r, Mapping):
            lines.append(f"  {r.get('name')!s:<13} left out: {str(r.get('reason'))[:200]}")
    return "\n".join(lines)
