"""Stage 6's contents: the manifest and every file of a new bundle, assembled from what the
stages produced. Writing them (atomically, verified) is ``labkit.bundle.write_bundle``'s."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from labkit.bundle import (
    Baseline,
    Change,
    DefaultRule,
    Exporter,
    Fingerprint,
    Golden,
    Manifest,
    Plan,
    Provenance,
    Signature,
    Source,
    Variant,
)
from labkit.bundle._json import dumps_canonical
from labkit.bundle.files import read_file_stat
from labkit.pipeline import report
from labkit.pipeline.export import ExportInfo
from labkit.pipeline.freeze import InputSet, Reference, describe
from labkit.pipeline.options import HandoffOptions
from labkit.pipeline.parity import ParityReport
from labkit.pipeline.variants import Outcome
from labkit.registry import ModelSpec
from labkit.request import MAX_SOURCE_BYTES, recorded_source_path
from labkit.runtime.machine import cpu_info, library_versions

__all__ = ["Assembled", "assemble", "metadata"]


@dataclass
class Assembled:
    manifest: Manifest
    files: dict[str, bytes]  # bundle path -> bytes, manifest.json aside
    parity: dict[str, Any]  # reports/parity.json
    modes: dict[str, int]  # bundle path -> a copied file's own mode ([source])


def metadata(spec: ModelSpec) -> dict[str, Any]:
    """What the metadata fingerprint covers (a change is a patch version)."""
    return {
        "task": spec.task,
        "labels": list(spec.labels) if spec.labels else None,
        "tolerance": spec.tolerance,
    }


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def source_entry(
    source: Path | None,
) -> tuple[Source | None, dict[str, bytes], dict[str, int]]:
    """The script or notebook the model came from, its copy under ``source/`` and that
    copy's mode: its own ([source]). Read through the bundle layer's one safe reader; the
    path is recorded relative to the project, never the researcher's absolute path."""
    if source is None:
        return None, {}, {}
    data, st = read_file_stat(source, max_bytes=MAX_SOURCE_BYTES, single_link=False)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(source).name)
    safe = safe.lstrip("._-") or "source"
    copy = f"source/{safe}"
    kind = "notebook" if safe.endswith(".ipynb") else "script"
    return (
        Source(kind, recorded_source_path(Path(source)), hashlib.sha256(data).hexdigest(), copy),
        {copy: data},
        {copy: st.st_mode},
    )


def assemble(
    *,
    spec: ModelSpec,
    name: str,
    plan: Plan,
    ref: Reference,
    golden: InputSet,
    info: ExportInfo,
    signature: Signature,
    fingerprint: Fingerprint,
    exported_parity: ParityReport,
    outcome: Outcome,
    variants: Sequence[Variant],
    rule: DefaultRule,
    baseline: Baseline | None,
    stage_seconds: dict[str, float],
    bench: dict[str, Any] | None,
    options: HandoffOptions,
    source: Path | None,
) -> Assembled:
    """The manifest, the golden set, each variant's graph, the reports and ``report.md``."""
    files: dict[str, bytes] = {
        "golden/inputs.npz": _npz(golden.inputs),
        "golden/expected.npz": _npz(golden.outputs),
    }
    for v in variants:
        files[v.file] = outcome.paths[v.name].read_bytes()
    src, src_files, modes = source_entry(source)
    files.update(src_files)
    parity_doc = {
        "fp32_export": exported_parity.to_dict(),
        "variants": {k: r.to_dict() for k, r in outcome.reports.items()},
        "configurations": outcome.configurations,
        "rejected": outcome.rejected,
        "reference": describe(ref),
    }
    manifest = Manifest(
        name=name,
        version=plan.version,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=spec.task,
        labels=tuple(spec.labels) if spec.labels else None,
        signature=signature,
        variants=tuple(variants),
        default_variant=rule.chosen,
        baseline=baseline,
        default_rule=rule,
        fingerprint=fingerprint,
        golden=Golden("golden/inputs.npz", "golden/expected.npz", golden.batch_size),
        change=Change(plan.kind, plan.previous, plan.reason),
        provenance=Provenance(
            source=src,
            exporter=Exporter.from_dict(info.to_dict()),
            cpu=cpu_info(),
            libraries=library_versions(
                "labkit", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", "numpy"
            ),
            options=options.to_dict(),
            model={
                "class": type(spec.model).__name__,
                "parameters": ref.parameters,
                "flops_per_sample": ref.flops_per_sample,
            },
            experiment=spec.experiment,
            stage_seconds=stage_seconds,
        ),
    )
    files["reports/parity.json"] = dumps_canonical(parity_doc)
    files["reports/benchmark.json"] = dumps_canonical(bench or {"skipped": True})
    files["report.md"] = report.render(manifest, parity_doc, bench).encode()
    return Assembled(manifest, files, parity_doc, modes)
