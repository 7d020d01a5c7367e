"""What a handoff returns: the version it wrote (or found), why, and its reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HandoffResult:
    name: str
    version: str
    path: Path
    change: str                      # first | major | minor | patch | none
    change_reason: str
    previous: str | None
    default_variant: str
    variants: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)
    benchmark: dict[str, Any] | None = None
    exporter: dict[str, Any] = field(default_factory=dict)
    signed_by: str | None = None     # fingerprint of the signing key, when signed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                "change": self.change, "change_reason": self.change_reason,
                "previous": self.previous, "default_variant": self.default_variant,
                "variants": self.variants, "rejected": self.rejected, "parity": self.parity,
                "benchmark": self.benchmark, "exporter": self.exporter,
                "signed_by": self.signed_by}

    def summary(self) -> str:
        lines = [f"{self.name} {self.version} ({self.change}: {self.change_reason})",
                 f"  bundle: {self.path}"]
        for v in self.variants:
            sp = v.get("speedup")
            speed = (f"{sp['p50']:.2f}x batch-1 p50, {sp['throughput']:.2f}x throughput vs "
                     "PyTorch eager") if sp else "not benchmarked"
            mark = " (default)" if v["name"] == self.default_variant else ""
            lines.append(f"  {v['name']:<13} parity max rel {v['parity']['max_rel']:.2e}, "
                         f"{speed}{mark}")
        for r in self.rejected:
            lines.append(f"  {r['name']:<13} left out: {r['reason']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        try:
            from labkit.notebook.render import render_result_html
        except ImportError:
            return f"<pre>{self.summary()}</pre>"
        return str(render_result_html(self.to_dict()))
