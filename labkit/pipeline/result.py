"""What a handoff returns: the bundle's :class:`~labkit.bundle.Manifest` (written, or found
identical), how this handoff relates to the store (``plan``), and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.bundle import Manifest, Plan, Variant


@dataclass
class HandoffResult:
    manifest: Manifest
    path: Path
    plan: Plan  # kind "none": nothing written, manifest is the old one
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"name", "reason"}
    parity: dict[str, Any] = field(default_factory=dict)  # reports/parity.json
    benchmark: dict[str, Any] | None = None  # reports/benchmark.json
    signed_by: str | None = None  # fingerprint of the signing key, when signed

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def change(self) -> str:
        """first | major | minor | patch | none (none: no new version was written)."""
        return self.plan.kind

    @property
    def change_reason(self) -> str:
        return self.plan.reason

    @property
    def previous(self) -> str | None:
        return self.plan.previous

    @property
    def default_variant(self) -> str:
        return self.manifest.default_variant

    @property
    def variants(self) -> tuple[Variant, ...]:
        return self.manifest.variants

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``handoff export --json``, the notebook comm and the extension."""
        m = self.manifest
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "change": self.change,
            "change_reason": self.change_reason,
            "previous": self.previous,
            "default_variant": self.default_variant,
            "variants": [{**v.to_dict(), "speedup": v.speedup} for v in self.variants],
            "rejected": self.rejected,
            "parity": self.parity,
            "benchmark": self.benchmark,
            "exporter": self.manifest.provenance.exporter.to_dict(),
            "signed_by": self.signed_by,
            "baseline": m.baseline.to_dict() if m.baseline else None,
            "default_rule": m.default_rule.to_dict() if m.default_rule else None,
            "stage_seconds": dict(m.provenance.stage_seconds)
            if m.provenance.stage_seconds is not None
            else None,
            "experiment": m.provenance.experiment.to_dict() if m.provenance.experiment else None,
        }

    def summary(self) -> str:
        """The result as plain text (what ``handoff export`` prints); the notebook's HTML
        rendering is registered by the notebook layer as an IPython display formatter."""
        from labkit.result_text import render_text

        return render_text(self.to_dict())

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<HandoffResult {self.name} {self.version} ({self.change}) at {self.path}>"
