"""The bundle's human-readable ``report.md``."""

from __future__ import annotations

from typing import Any

from labkit.bundle import Manifest


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def render(m: Manifest, parity: dict[str, Any], bench: dict[str, Any] | None) -> str:
    ch = m.change
    exporter = m.provenance.exporter
    lines = [
        f"# {m.name} {m.version}",
        "",
        f"- Change: **{ch.kind}**{' from ' + ch.previous if ch.previous else ''} — "
        f"{ch.reason}",
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
    lines += ["", "## Variants", "",
              "| variant | precision | parity | max rel err | metric | p50 ms | speed-up "
              "(batch 1) | speed-up (throughput) |",
              "|---|---|---|---|---|---|---|---|"]
    for v in m.variants:
        p, b = v.parity or {}, v.benchmark or {}
        sp = v.speedup or {}
        lines.append(
            f"| `{v.name}` | {v.precision} | {'pass' if p.get('passed') else 'FAIL'} | "
            f"{_fmt(p.get('max_rel'))} | {p.get('metric') or ''} "
            f"{_fmt(p.get('metric_value'), '.4f')} "
            f"| {_fmt(b.get('p50_ms'), '.3f')} | {_fmt(sp.get('p50'), '.2f')}× | "
            f"{_fmt(sp.get('throughput'), '.2f')}× |")
    kept = [(v.name, e) for v in m.variants
            for e in (v.quantization or {}).get("excluded") or []]
    if kept:  # see labkit.pipeline.sensitivity
        lines += ["", "## Layers kept in fp32 (quantization sensitivity)", ""]
        lines += [f"- `{name}`: `{e['block']}` — {e['reason']}" for name, e in kept]
    rejected = parity.get("rejected") or []
    if rejected:
        lines += ["", "## Left out", ""]
        lines += [f"- `{r['name']}`: {r['reason']}" for r in rejected]
    if bench:
        eager = bench.get("pytorch-eager", {})
        env = bench.get("environment", {})
        cpu = env.get("cpu", {})
        lines += ["", "## Benchmark", "",
                  f"PyTorch eager: p50 {_fmt(eager.get('p50_ms'), '.3f')} ms, throughput "
                  f"{_fmt(eager.get('throughput_per_s'), '.1f')}/s.",
                  f"Method: {bench.get('method', '')}.",
                  f"CPU: {cpu.get('model')} ({', '.join(cpu.get('flags', []))}), "
                  f"{env.get('threads')} threads."]
    src = m.provenance.source
    if src:
        lines += ["", "## Provenance", "",
                  f"Source `{src.path}` (sha256 {src.sha256[:16]}…), copy in `{src.copy}`."]
    return "\n".join(lines) + "\n"
