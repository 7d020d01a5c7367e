"""The bundle's human-readable ``report.md``."""

from __future__ import annotations

from typing import Any

from labkit.bundle import Manifest, Tolerance
from labkit.pipeline.options import STAGES

UNRELIABLE = "unreliable"


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def _x(speedup: Any, key: str, reliable: bool) -> str:
    """A speed-up cell: the figure, or why there is none (never a number over a baseline
    that did not hold; see labkit/bundle/speed.py)."""
    if not reliable:
        return UNRELIABLE
    value = (speedup or {}).get(key)
    return "–" if value is None else f"{value:.2f}×"


def _reliable(m: Manifest) -> bool:
    return m.baseline is None or m.baseline.reliable


def _default_rule(m: Manifest) -> list[str]:
    rule = m.default_rule
    if rule is None:
        return []
    lines = ["", "## Default variant", "", f"`{rule.chosen}`: {rule.reason}.", ""]
    if rule.scores:
        lines.append(
            "Scores: "
            + ", ".join(f"`{k}` {v:.2f}" for k, v in rule.scores.items())
            + (f"; noise {rule.noise:.1%}" if rule.noise is not None else "")
            + (f", margin {rule.margin:.1%}" if rule.margin is not None else "")
            + "."
        )
    prev = f"`{rule.previous}` in {rule.previous_version}" if rule.previous else "none"
    lines += [
        f"Previous default: {prev}; numbers reliable: {'yes' if rule.reliable else 'no'}.",
        "",
        f"Rule: {rule.rule}.",
    ]
    return lines


def _stage_times(m: Manifest) -> list[str]:
    seconds = m.provenance.stage_seconds
    if not seconds:
        return []
    lines = ["", "## Handoff time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds[stage]:.1f} |" for stage in STAGES if stage in seconds]
    lines.append(f"| **total before writing** | **{sum(seconds.values()):.1f}** |")
    return lines


def _cost_and_engines(m: Manifest, bench: dict[str, Any]) -> list[str]:
    """Per-core throughput and cost of each variant; other engines timed beside them."""
    ok = _reliable(m)
    rows = [(f"`{v.name}`", v.benchmark or {}) for v in m.variants]
    rows += [(f"`{label}`", b) for label, b in (bench.get("engines") or {}).items()]
    lines = [
        "",
        "### Throughput per core and cost",
        "",
        "| variant / engine | throughput /s | per core /s | cost per million | speed-up "
        "(batch 1) | speed-up (throughput) |",
        "|---|---|---|---|---|---|",
    ]
    for name, b in rows:
        c, sp = b.get("cost") or {}, b.get("speedup")
        lines.append(
            f"| {name} | {_fmt(b.get('throughput_per_s'), '.0f')} | "
            f"{_fmt(c.get('per_core_per_s'), '.0f')} | "
            f"{_fmt(c.get('cost_per_million'), '.4g')} | "
            f"{_x(sp, 'p50', ok)} | {_x(sp, 'throughput', ok)} |"
        )
    price = next((b["cost"]["price_per_core_hour"] for _, b in rows if b.get("cost")), None)
    lines.append("")
    lines.append(
        f"Cost at {price} per core-hour."
        if price is not None
        else "Set `$LABKIT_PRICE_PER_CORE_HOUR` to see the cost per million inferences."
    )
    if bench.get("engines"):
        lines.append(
            "Other engines were timed here, not shipped: the bundle holds ONNX graphs "
            "only, and `handoff tune` decides on the deployment host, within the "
            "bundle's golden checks, whether one of them runs it."
        )
    if bench.get("engines_not_timed"):
        lines.append(
            "Not timed at handoff (at most "
            f"{len(bench.get('engines') or {})} other-engine configurations are): "
            + ", ".join(f"`{c}`" for c in bench["engines_not_timed"])
            + "; `handoff tune` times them on the deployment host."
        )
    return lines


def _judged_by(t: Tolerance) -> str:
    text = f"rel ≤ {t.rel:g}"
    if t.metric and t.min_metric is not None:
        text += f", {t.metric} ≥ {t.min_metric:g}"
    return text


def _configurations(m: Manifest) -> list[str]:
    """Every (variant, engine, precision) judged here: the ones that passed as a table, the
    rejected ones only as a list with their reasons (they were not timed)."""
    passed = [(v.name, c) for v in m.variants for c in v.passed()]
    rejected = [(v.name, c) for v in m.variants for c in v.rejected()]
    if not passed and not rejected:
        return []
    lines = [
        "",
        "## Engine configurations that passed parity here",
        "",
        "| configuration | judged by | judged on | max rel err | metric |",
        "|---|---|---|---|---|",
    ]
    for name, c in passed:
        lines.append(
            f"| `{name}/{c.config}` | {_judged_by(c.tolerance)} | {c.judged_on} | "
            f"{_fmt(c.max_rel)} | {c.metric or ''} {_fmt(c.metric_value, '.4f')} |"
        )
    if rejected:
        lines += ["", "### Rejected configurations (not timed, not offered)", ""]
        lines += [f"- `{name}/{c.config}`: {c.reason}" for name, c in rejected]
    return lines


def render(m: Manifest, parity: dict[str, Any], bench: dict[str, Any] | None) -> str:
    ch = m.change
    exporter = m.provenance.exporter
    lines = [
        f"# {m.name} {m.version}",
        "",
        f"- Change: **{ch.kind}**{' from ' + ch.previous if ch.previous else ''} — {ch.reason}",
        f"- Default variant: `{m.default_variant}`",
        f"- Task: {m.task or '–'}; created {m.created}",
        f"- Exporter: {exporter.describe()}",
        "",
        "## Signature",
        "",
        "| | name | dtype | shape |",
        "|---|---|---|---|",
    ]
    for side, tensors in (("input", m.signature.inputs), ("output", m.signature.outputs)):
        for t in tensors:
            dims = ", ".join(str(d) for d in t.shape)
            lines.append(f"| {side} | `{t.name}` | {t.dtype} | [{dims}] |")
    lines += [
        "",
        "## Variants",
        "",
        "| variant | precision | parity | max rel err | metric | p50 ms | speed-up "
        "(batch 1) | speed-up (throughput) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok = _reliable(m)
    for v in m.variants:
        p, b = v.parity or {}, v.benchmark or {}
        lines.append(
            f"| `{v.name}` | {v.precision} | {'pass' if p.get('passed') else 'FAIL'} | "
            f"{_fmt(p.get('max_rel'))} | {p.get('metric') or ''} "
            f"{_fmt(p.get('metric_value'), '.4f')} "
            f"| {_fmt(b.get('p50_ms'), '.3f')} | {_x(v.speedup, 'p50', ok)} | "
            f"{_x(v.speedup, 'throughput', ok)} |"
        )
    lines += _configurations(m)
    kept = [(v.name, e) for v in m.variants if v.quantization for e in v.quantization.excluded]
    if kept:  # see labkit.pipeline.sensitivity
        lines += ["", "## Layers kept in fp32 (quantization sensitivity)", ""]
        lines += [f"- `{name}`: `{e.block}` — {e.reason}" for name, e in kept]
    lines += _default_rule(m)
    rejected = parity.get("rejected") or []
    if rejected:
        lines += ["", "## Left out", ""]
        lines += [f"- `{r['name']}`: {r['reason']}" for r in rejected]
    if bench:
        eager = bench.get("pytorch-eager", {})
        env = bench.get("environment", {})
        cpu = env.get("cpu", {})
        lines += [
            "",
            "## Benchmark",
            "",
            f"PyTorch eager: p50 {_fmt(eager.get('p50_ms'), '.3f')} ms, throughput "
            f"{_fmt(eager.get('throughput_per_s'), '.1f')}/s.",
            f"Baseline: {m.baseline.describe() if m.baseline else '–'}.",
            f"Method: {bench.get('method', '')}.",
            f"CPU: {cpu.get('model')} ({', '.join(cpu.get('flags', []))}), "
            f"{env.get('threads')} threads.",
        ]
        lines += _cost_and_engines(m, bench)
    lines += _stage_times(m)
    src, trial = m.provenance.source, m.provenance.experiment
    if src or trial:
        lines += ["", "## Provenance", ""]
    if src:
        lines.append(f"Source `{src.path}` (sha256 {src.sha256[:16]}…), copy in `{src.copy}`.")
    if trial:
        lines.append(f"From {trial.describe()}.")
    return "\n".join(lines) + "\n"
