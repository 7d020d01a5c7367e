"""A handoff result (``HandoffResult.to_dict()``) as HTML (``_repr_html_``) and as the one
plain-text summary (``handoff export``, ``str(result)``).

Read leniently: any field may be missing and the page still renders what it has; only
fields that ``HandoffResult.to_dict()`` writes are read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render_result_html", "render_result_text"]



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
            "</tr>")
    head = ("<tr><th>variant</th><th>precision</th><th>parity</th><th>max rel err</th>"
            "<th>max abs err</th><th>metric</th><th>p50 ms</th><th>speed-up p50</th>"
            "<th>speed-up throughput</th></tr>")
    return f'<table class="labkit-table">{head}{"".join(rows)}</table>'


def _set_errors(result: Mapping[str, Any], variant: str) -> tuple[list[str], list[float]]:
    """Max relative error per parity input set (example, generated b=N, real data)."""
    report = pick(pick(result.get("parity"), "variants"), variant)
    labels: list[str] = []
    values: list[float] = []
    for s in (report or {}).get("sets") or []:
        errs = [num(o.get("max_rel")) for o in (s.get("outputs") or {}).values()
                if isinstance(o, Mapping)]
        found = [e for e in errs if e is not None]
        if found:
            labels.append(str(s.get("label", "?")))
            values.append(max(found))
    return labels, values


def _charts(variants: list[Mapping[str, Any]], result: Mapping[str, Any],
            default: str | None) -> str:
    out = []
    bench = result.get("benchmark")
    base_name = pick(bench, "baseline")
    base = num(pick(pick(bench, str(base_name)) if base_name else None, "p50_ms"))
    lat = [(str(v.get("name")), p50_ms(v)) for v in variants]
    if lat and all(ms is not None for _, ms in lat):
        labels = ([str(base_name)] if base is not None else []) + [n for n, _ in lat]
        values = ([base] if base is not None else []) + [ms or 0.0 for _, ms in lat]
        out.append(bar_chart(labels, [float(x) for x in values], unit=" ms",
                             title="batch-1 latency p50 (lower is better)"))
    errs = [max_rel(v) for v in variants]
    if errs and all(e is not None for e in errs):
        tol = num(pick(variants[0].get("tolerance"), "rel"))
        out.append(bar_chart([str(v.get("name")) for v in variants], [e or 0.0 for e in errs],
                             log=True, marker=tol,
                             title="max relative error (dashed: fp32 tolerance)"))
    if default:
        labels, values = _set_errors(result, default)
        if values:
            out.append(bar_chart(labels, values, log=True,
                                 title=f"error per input set ({default})"))
    return "".join(f'<div style="display:inline-block;margin:4px;vertical-align:top">{c}</div>'
                   for c in out)


def render_result_html(result: Mapping[str, Any]) -> str:
    """The handoff result as a self-contained HTML fragment (inline SVG, no scripts)."""
    # Lazily: importing labkit.bundle loads numpy, which `import labkit.notebook` must not.
    from labkit.bundle.changes import title

    variants = [v for v in result.get("variants") or [] if isinstance(v, Mapping)]
    change = str(result.get("change") or "")
    default = result.get("default_variant")
    rejected = [r for r in result.get("rejected") or [] if isinstance(r, Mapping)]
    rej = "".join(f"<li><b>{escape(str(r.get('name')))}</b>: {escape(str(r.get('reason')))}</li>"
                  for r in rejected)
    return (
        '<div class="labkit-result">'
        f"<h3>{escape(str(result.get('name')))} {escape(str(result.get('version')))}</h3>"
        f"<p><b>{escape(title(change))}</b>"
        f"{' — ' + escape(str(result['change_reason'])) if result.get('change_reason') else ''}"
        f"</p><p>default variant: <b>{escape(str(default))}</b><br>"
        f"bundle: <code>{escape(str(result.get('path')))}</code></p>"
        f"{_parity_table(variants, default if isinstance(default, str) else None)}"
        f"{_charts(variants, result, default if isinstance(default, str) else None)}"
        f"{'<p>left out:</p><ul>' + rej + '</ul>' if rej else ''}"
        "</div>"
    )


# The result view is plain HTML (it is also embedded by the extension, which runs no
# scripts), so its bars stay small inline SVG rather than plotly figures.
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def bar_chart(labels: Sequence[str], values: Sequence[float], *, unit: str = "",
              title: str = "", log: bool = False, marker: float | None = None,
              width: int = 420) -> str:
    """Horizontal bars; ``log`` uses a log10 axis (for errors spanning decades)."""
    if not values:
        return ""
    row, left, top = 22, 130, 22 if title else 6
    height = top + row * len(values) + 8

    def scale(v: float) -> float:
        if log:
            lo = math.log10(min(x for x in [*values, marker or math.inf] if x > 0) / 10)
            hi = math.log10(max([*values, marker or 0.0]) * 2)
            return 0.0 if v <= 0 else (math.log10(v) - lo) / max(hi - lo, 1e-9)
        return v / max([*values, marker or 0.0, 1e-12])

    span = width - left - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" class="labkit-chart">']
    if title:
        parts.append(f'<text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>')
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * row
        w = max(scale(v) * span, 1.0)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" font-size="11" '
                     f'text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                     f'fill="{_COLORS[i % len(_COLORS)]}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="11">'
                     f'{escape(_short(v))}{escape(unit)}</text>')
    if marker is not None and marker > 0:
        x = left + scale(marker) * span
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 4}" '
                     'stroke="#d62728" stroke-dasharray="4 2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _short(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-2 or abs(v) >= 1e5:
        return f"{v:.2e}"
    return f"{v:.3g}"


def render_result_text(result: Mapping[str, Any]) -> str:
    """The handoff result as plain text: what was written, each variant, what was left out."""
    name, version, path = result.get("name"), result.get("version"), result.get("path")
    if result.get("change") == "none":
        return (f"{name}: nothing changed since {version}; no new version written.\n"
                f"  bundle: {path}")
    lines = [f"{name} {version}  ({result.get('change')}: {result.get('change_reason')})",
             f"  bundle: {path}", f"  report: {path}/report.md"]
    default = result.get("default_variant")
    for v in result.get("variants") or []:
        if not isinstance(v, Mapping):
            continue
        sp, tp, err = speedup(v), speedup(v, "throughput"), max_rel(v)
        speed = (f"{sp:.2f}x batch-1 latency, {tp or 0:.2f}x throughput vs PyTorch eager"
                 if sp is not None else "not benchmarked")
        mark = "  <- default" if v.get("name") == default else ""
        err_text = f"{err:.2e}" if err is not None else "?"
        lines.append(f"  {v.get('name')!s:<13} parity max rel err {err_text}; {speed}{mark}")
    for r in result.get("rejected") or []:
        if isinstance(r, Mapping):
            lines.append(f"  {r.get('name')!s:<13} left out: {str(r.get('reason'))[:200]}")
    return "\n".join(lines)
