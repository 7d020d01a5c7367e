"""Tiny dependency-free SVG charts (bars and lines) for notebook HTML."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bar_chart", "line_chart"]

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


def line_chart(series: Mapping[str, Sequence[float]], *, width: int = 480,
               height: int = 200, title: str = "") -> str:
    """One polyline per series, each scaled to its own range (loss and accuracy differ)."""
    left, top, bottom = 8, 22, 18
    plot_w, plot_h = width - left - 120, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'class="labkit-chart">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
             'fill="none" stroke="#ccc"/>']
    if title:
        parts.append(f'<text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>')
    for i, (name, ys) in enumerate(series.items()):
        pts = [y for y in ys if math.isfinite(y)]
        if not pts:
            continue
        lo, hi = min(pts), max(pts)
        n = max(len(ys) - 1, 1)
        coords = " ".join(
            f"{left + plot_w * j / n:.1f},{top + plot_h * (1 - (y - lo) / ((hi - lo) or 1)):.1f}"
            for j, y in enumerate(ys) if math.isfinite(y))
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                     f'points="{coords}"/>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{top + 14 + 16 * i}" font-size="11" '
                     f'fill="{color}">{escape(name)} {escape(_short(pts[-1]))}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="10">step 0 … '
                 f'{max((len(v) for v in series.values()), default=0)}</text></svg>')
    return "".join(parts)


def _short(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-2 or abs(v) >= 1e5:
        return f"{v:.2e}"
    return f"{v:.3g}"
