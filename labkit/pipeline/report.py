"""The bundle's human-readable ``report.md``."""

from __future__ import annotations

from typing import Any

from labkit.bundle.exporter_line import exporter_line


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def render(manifest: dict[str, Any], parity: dict[str, Any],
           bench: dict[str, Any] | None) -> str:
    m = manifest
    ch = m["change"]
    lines = [
        f"# {m['name']} {m['version']}",
        "",
        f"- Change: **{ch['kind']}**{' from ' + ch['from'] if ch.get('from') else ''} — "
        f"{ch['reason']}",
        f"- Default variant: `{m['default_variant']}`",
        f"- Task: {m.get('task') or '–'}; created {m['created']}",
        f"- Exporter: {exporter_line(m['provenance']['exporter'])}",
        "",
        "## Signature",
        "",
        "| | name | dtype | shape |",
        "|---|---|---|---|",
    ]
    for side in ("inputs", "outputs"):
        for t in m["signature"][side]:
            dims = ", ".join(str(d) for d in t["shape"])
            lines.append(f"| {side[:-1]} | `{t['name']}` | {t['dtype']} | [{dims}] |")
    lines += ["", "## Variants", "",
              "| variant | precision | parity | max rel err | metric | p50 ms | speed-up "
              "(batch 1) | speed-up (throughput) |",
              "|---|---|---|---|---|---|---|---|"]
    for v in m["variants"]:
        p, b = v["parity"], v.get("benchmark") or {}
        sp = b.get("speedup") or {}
        lines.append(
            f"| `{v['name']}` | {v['precision']} | {'pass' if p['passed'] else 'FAIL'} | "
            f"{_fmt(p['max_rel'])} | {p.get('metric') or ''} {_fmt(p.get('metric_value'), '.4f')} "
            f"| {_fmt(b.get('p50_ms'), '.3f')} | {_fmt(sp.get('p50'), '.2f')}× | "
            f"{_fmt(sp.get('throughput'), '.2f')}× |")
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
    src = m["provenance"].get("source")
    if src:
        lines += ["", "## Provenance", "",
                  f"Source `{src['path']}` (sha256 {src['sha256'][:16]}…), copy in "
                  f"`{src['copy']}`."]
    return "\n".join(lines) + "\n"
