"""Calibration data from a user's ``.npz`` file (``handoff export --calibration FILE``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labkit.errors import RegistrationError
from labkit.pipeline.freeze import Reference

BATCH = 16


def load_calibration(path: Path, ref: Reference) -> list[dict[str, np.ndarray]]:
    """Split the arrays of ``path`` (one per model input) into calibration batches."""
    names = list(ref.spec.input_names)
    example = ref.sets[0].inputs
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise RegistrationError(
            f"cannot read calibration file {path}: {exc}. It must be a "
            f"NumPy .npz with one array per input ({names})"
        ) from None
    if len(arrays) == 1 and len(names) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise RegistrationError(
            f"calibration file {path} has arrays {sorted(arrays)}; it "
            f"needs one per input: {names} (missing {missing})"
        )
    rows = {len(arrays[n]) for n in names}
    if len(rows) != 1:
        raise RegistrationError(
            f"calibration arrays in {path} have different row counts "
            f"{sorted(rows)}; they must match"
        )
    for n in names:
        a, e = arrays[n], example[n]
        if a.dtype != e.dtype or a.shape[1:] != e.shape[1:]:
            raise RegistrationError(
                f"calibration array {n!r} is {a.dtype}{list(a.shape)}; the model takes "
                f"{e.dtype}[N, {', '.join(map(str, e.shape[1:]))}]"
            )
    total = rows.pop()
    return [{n: arrays[n][i : i + BATCH] for n in names} for i in range(0, total, BATCH)]
