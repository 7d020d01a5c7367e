"""A handoff result as plain text, and what the handoff decided, in words: the one home of
both (``str(result)``, ``handoff export``, ``handoff inspect``; the notebook's HTML uses the
same :func:`decision_lines`).

Reads ``HandoffResult.to_dict()`` — or a manifest's ``to_dict()``, which has the same
variant fields — leniently: any field may be missing (a result from an older labkit, a
manifest written before a field existed) and what is there is still shown. Standard
library only (like :mod:`labkit.request`): the pipeline, the CLI's runtime-only commands and
the notebook import it without loading anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "decision_lines",
    "max_rel",
    "num",
    "p50_ms",
    "parity_ok",
    "pick",
    "render_text",
    "speedup",
]

JUDGED_ON_WORDS = {
    "real": "judged on your real data (parity_inputs)",
    "generated": (
        "judged on the example inputs and inputs generated from them, not real data "
        "(pass parity_inputs=[real batches] to judge it on real data)"
    ),
    "all": "judged on every input set",
}


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


def _g(value: object) -> str:
    v = num(value)
    return "?" if v is None else f"{v:.3g}"


def _default_line(result: Mapping[str, Any]) -> str | None:
    rule = result.get("default_rule")
    default = result.get("default_variant")
    if not isinstance(rule, Mapping):  # no rule recorded: the variant list marks the default
        return None
    scores = rule.get("scores")
    numbers = (
        ", ".join(f"{k} {_g(v)}×" for k, v in scores.items()) if isinstance(scores, Mapping) else ""
    )
    extra = [f"rule: {rule.get('rule')}"] if rule.get("rule") else []
    if numbers:
        extra.append(f"scores {numbers}")
    if num(rule.get("noise")) is not None:
        extra.append(f"noise {_g(rule.get('noise'))}")
    if num(rule.get("margin")) is not None:
        extra.append(f"margin {_g(rule.get('margin'))}")
    if rule.get("previous"):
        extra.append(f"previous default {rule.get('previous')} ({rule.get('previous_version')})")
    if rule.get("reliable") is False:
        extra.append("speed numbers not reliable")
    line = f"default variant: {rule.get('chosen', default)} — {rule.get('reason', '')}".rstrip()
    return line + (f" [{'; '.join(extra)}]" if extra else "")


def _excluded(name: str, q: Mapping[str, Any]) -> list[str]:
    out = []
    for e in q.get("excluded") or []:
        if not isinstance(e, Mapping):
            continue
        measured = [
            f"{e.get('metric')} {_g(e.get('metric_value'))}"
            if e.get("metric") and num(e.get("metric_value")) is not None
            else "",
            f"max rel err {_g(e.get('max_rel'))}" if num(e.get("max_rel")) is not None else "",
        ]
        text = ", ".join(m for m in measured if m)
        out.append(
            f"{name}: kept {e.get('block')} in fp32"
            + (f" (quantized alone: {text})" if text else f" ({e.get('reason')})")
        )
    return out


def decision_lines(result: Mapping[str, Any]) -> list[str]:
    """What the handoff decided, one fact a line: the default variant and the rule's numbers,
    what each quantized variant was judged on, the layers kept in fp32 with their measured
    sensitivity, the engine configurations rejected, and an unreliable eager baseline."""
    lines = []
    default = _default_line(result)
    if default:
        lines.append(default)
    baseline = result.get("baseline")
    if isinstance(baseline, Mapping) and baseline.get("reliable") is False:
        problems = "; ".join(str(p) for p in baseline.get("problems") or [])
        lines.append(f"PyTorch eager baseline inconsistent, no speed-ups recorded: {problems}")
    for v in result.get("variants") or []:
        if not isinstance(v, Mapping):
            continue
        name = str(v.get("name"))
        q = v.get("quantization")
        if isinstance(q, Mapping):
            judged = q.get("judged_on")
            if judged in JUDGED_ON_WORDS:
                lines.append(f"{name}: {JUDGED_ON_WORDS[str(judged)]}")
            lines.extend(_excluded(name, q))
        for c in v.get("checks") or []:
            if isinstance(c, Mapping) and c.get("passed") is False:
                lines.append(
                    f"{name} on {c.get('engine')} {c.get('precision')}: rejected — "
                    f"{str(c.get('reason'))[:200]}"
                )
    return lines


def render_text(result: Mapping[str, Any]) -> str:
    """The handoff result as plain text: what was written, each variant, what was decided,
    what was left out."""
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
    lines.extend(f"  {line}" for line in decision_lines(result))
    for r in result.get("rejected") or []:
        if isinstance(r, Mapping):
            lines.append(f"  {r.get('name')!s:<13} left out: {str(r.get('reason'))[:200]}")
    return "\n".join(lines)
