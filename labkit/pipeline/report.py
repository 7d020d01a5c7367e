"""The bundle's human-readable ``report.md``."""

from __future__ import annotations

from typing import Any

from labkit.bundle import Manifest


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def _cost_and_engines(m: Manifest, bench: dict[str, Any]) -> list[str]:
    """Per-core throughput and cost of each variant; other engines timed beside them."""
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
        c, sp = b.get("cost") or {}, b.get("speedup") or {}
        lines.append(
            f"| {name} | {_fmt(b.get('throughput_per_s'), '.0f')} | "
            f"{_fmt(c.get('per_core_per_s'), '.0f')} | "
            f"{_fmt(c.get('cost_per_million'), '.4g')} | "
            f"{_fmt(sp.get('p50'), '.2f')}× | {_fmt(sp.get('throughput'), '.2f')}× |"
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
    for v in m.variants:
        p, b = v.parity or {}, v.benchmark or {}
        sp = v.speedup or {}
        lines.append(
            f"| `{v.name}` | {v.precision} | {'pass' if p.get('passed') else 'FAIL'} | "
            f"{_fmt(p.get('max_rel'))} | {p.get('metric') or ''} "
            f"{_fmt(p.get('metric_value'), '.4f')} "
            f"| {_fmt(b.get('p50_ms'), '.3f')} | {_fmt(sp.get('p50'), '.2f')}× | "
            f"{_fmt(sp.get('throughput'), '.2f')}× |"
        )
    kept = [(v.name, e) for v in m.variants if v.quantization for e in v.quantization.excluded]
    if kept:  # see labkit.pipeline.sensitivity
        lines += ["", "## Layers kept in fp32 (quantization sensitivity)", ""]
        lines += [f"- `{name}`: `{e.block}` — {e.reason}" for name, e in kept]
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
            f"Method: {bench.get('method', '')}.",
            f"CPU: {cpu.get('model')} ({', '.join(cpu.get('flags', []))}), "
            f"{env.get('threads')} threads.",
        ]
        lines += _cost_and_engines(m, bench)
    src = m.provenance.source
    if src:
        lines += [
            "",
            "## Provenance",
            "",
            f"Source `{src.path}` (sha256 {src.sha256[:16]}…), copy in `{src.copy}`.",
        ]
    return "\n".join(lines) + "\n"
