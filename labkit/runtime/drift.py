"""What ``handoff diff`` says about two bundles: what changed (``labkit.bundle.diff``) and how
much their outputs differ on the same inputs, as JSON (:func:`bundle_diff`) and in words
(:func:`diff_lines`). The CLI and the JupyterLab Bundles panel both show these.

Both default variants run on A's golden inputs, in ONNX Runtime only (no torch), and are
compared with the same statistics as parity and self-tests (A is the reference). For a
classifier (A's task), each output also gets its top-1 agreement: the share of golden rows
whose predicted class is the same in both versions — what a retrain changed for users. This
is only done when the signatures let B take A's inputs; otherwise the reason is reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from labkit.bundle.diff import diff
from labkit.bundle.integrity import read_manifest, verify
from labkit.bundle.tolerance import TOP1
from labkit.errors import LabkitError
from labkit.runtime.compare import accumulate
from labkit.runtime.model import Model

__all__ = ["bundle_diff", "diff_lines", "output_drift"]


def _not_compared(reason: str) -> dict[str, Any]:
    return {"compared": False, "reason": reason}


def output_drift(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> dict[str, Any]:
    """Max abs/rel difference of each common output, B against A, on A's golden inputs."""
    try:
        va, vb = verify(a), verify(b)
    except LabkitError as exc:  # the manifests can still be diffed; say why no outputs
        return _not_compared(f"a bundle did not verify: {exc}")
    ma, mb = Model(va, None, None), Model(vb, None, None)
    ins_a = {s.name: (s.dtype, len(s.shape)) for s in ma.inputs}
    ins_b = {s.name: (s.dtype, len(s.shape)) for s in mb.inputs}
    if ins_a != ins_b:
        return _not_compared(
            "the inputs differ (names, dtypes or ranks), so B cannot take A's golden inputs"
        )
    outs_b = {s.name: s.dtype for s in mb.outputs}
    common = [s.name for s in ma.outputs if outs_b.get(s.name) == s.dtype]
    if not common:
        return _not_compared("no output has the same name and dtype in both")
    inputs = va.read_npz(ma.manifest.golden.inputs)
    try:
        got_a, got_b = ma.predict(inputs), mb.predict(inputs)
        stats = accumulate([(got_a, got_b)], common)
    except (LabkitError, ValueError) as exc:
        return _not_compared(f"B does not accept A's golden inputs: {exc}")
    rows = next(iter(inputs.values())).shape[0] if inputs else 0
    classifier = ma.manifest.task == "classification"
    outputs: dict[str, dict[str, Any]] = {}
    for n, s in stats.items():
        outputs[n] = {"max_abs": s.max_abs, "max_rel": s.max_rel}
        if classifier:  # rows compared, and on how many the predicted class is the same
            outputs[n].update(
                {"top1_agreement": s.metric(TOP1), "rows": s.rows, "agreeing_rows": s.agree}
            )
    return {
        "compared": True,
        "inputs": f"{rows} golden input rows of A",
        "variants": [ma.variant, mb.variant],
        "outputs": outputs,
    }


def bundle_diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> dict[str, Any]:
    """``handoff diff A B --json``: the manifests' differences and the outputs' drift."""
    d = diff(read_manifest(Path(a)), read_manifest(Path(b)))
    d["outputs"] = output_drift(a, b)
    return d


def diff_lines(d: dict[str, Any]) -> list[str]:
    """:func:`bundle_diff`'s result in words, as ``handoff diff`` prints it."""
    if d["downgrade"]:
        lines = [
            f"{d['from']} → {d['to']}: downgrade to an older version — it undoes a "
            f"{d['change']} update ({d['verdict']})"
        ]
    else:
        lines = [f"{d['from']} → {d['to']}: {d['change']} — {d['verdict']}"]
    lines.append(f"  {d['reason']}")
    lines += [f"  signature: {c}" for c in d["signature_changes"]]
    flags = [
        k.replace("_changed", "")
        for k in ("architecture_changed", "weights_changed", "metadata_changed")
        if d[k]
    ]
    lines.append(f"  changed: {', '.join(flags) or 'nothing'}")
    if d["default_variant"][0] != d["default_variant"][1]:
        lines.append(f"  default variant: {d['default_variant'][0]} → {d['default_variant'][1]}")
    out = d["outputs"]
    if not out["compared"]:
        lines.append(f"  outputs: not compared: {out['reason']}")
        return lines
    va, vb = out["variants"]
    lines.append(f"  outputs on {out['inputs']} (default variants {va} → {vb}):")
    for name, o in out["outputs"].items():
        agree = (
            f", top-1 agreement {o['top1_agreement']:.1%} ({o['agreeing_rows']} of "
            f"{o['rows']} rows predict the same class)"
            if "top1_agreement" in o
            else ""
        )
        lines.append(
            f"    {name}: max abs difference {o['max_abs']:.3g}, max rel difference "
            f"{o['max_rel']:.3g}{agree}"
        )
    return lines
