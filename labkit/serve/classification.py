"""The classification extension (as Triton answers it): an output asked for with the
parameter ``classification: k`` comes back as its top ``k`` classes instead of raw values.

Each class is the string ``"value:index"``, or ``"value:index:label"`` when the bundle
carries class names (``labels`` in the manifest, one per class). An output whose leading
dim is the batch dim gives ``[rows, k]`` (top ``k`` of each row); any other gives ``[k]``.
``k`` larger than the number of classes gives them all. Values are written as Triton
writes them (``%f`` for floats); ties keep the lower index first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labkit.serve.errors import BadRequest

__all__ = ["PARAMETER", "classification_count", "top_k"]

PARAMETER = "classification"
_ORDERED_KINDS = "iuf"  # integers and floats; FP16 has no text form in Triton either
_MAX_K = 1 << 20


def classification_count(value: Any, output: str, datatype: str) -> int:
    """The ``k`` a request asked for on ``output``, checked."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_K:
        raise BadRequest(
            f"output {output!r}: parameter 'classification' must be an integer from 1 to "
            f"{_MAX_K}, got {value!r}"
        )
    if datatype in ("BOOL", "BYTES", "FP16"):
        raise BadRequest(
            f"output {output!r} is {datatype}: classification needs an integer or FP32/FP64 output"
        )
    return value


def _text(value: Any) -> str:
    return f"{value:f}" if isinstance(value, float) else str(value)


def top_k(
    array: np.ndarray, k: int, *, by_row: bool, labels: Sequence[str] | None = None
) -> np.ndarray:
    """The top ``k`` classes of ``array`` as a BYTES tensor (numpy object array of bytes)."""
    if array.dtype.kind not in _ORDERED_KINDS:
        raise BadRequest(f"classification needs a numeric output, not {array.dtype.name}")
    rows = array.reshape(array.shape[0], -1) if by_row and array.ndim >= 1 else array.reshape(1, -1)
    classes = rows.shape[1]
    k = min(k, classes)
    names = labels if labels is not None and len(labels) == classes else None
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(rows, order, axis=1)
    out = np.empty(order.shape, dtype=object)
    for (r, j), index in np.ndenumerate(order):
        text = f"{_text(values[r, j].item())}:{index}"
        out[r, j] = (text if names is None else f"{text}:{names[int(index)]}").encode()
    return out if by_row else out.reshape(k)
