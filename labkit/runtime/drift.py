"""How much two bundles' outputs differ on the same inputs (``handoff diff``).

Both default variants run on A's golden inputs, in ONNX Runtime only (no torch), and are
compared with the same statistics as parity and self-tests (A is the reference). For a
classifier (A's task), each output also gets its top-1 agreement: the share of golden rows
whose predicted class is the same in both versions — what a retrain changed for users. This
is only done when the signatures let B take A's inputs; otherwise the reason is reported.
"""

from __future__ import annotations

import os
from typing import Any

from labkit.bundle.integrity import verify
from labkit.bundle.tolerance import TOP1
from labkit.errors import LabkitError
from labkit.runtime.compare import accumulate
from labkit.runtime.model import Model


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
