"""Whether a model may run several clients' rows in one call: the one batching probe.

``handoff serve`` concatenates requests along the leading dim, and ``handoff export-triton``
declares ``dynamic_batching`` so that Triton does the same. Both are right only if every row
of the output depends on its own row of the input alone; a model that looks across the batch
(subtracts the batch mean, normalises over it, mixes rows only from the fifth on) would
answer one client with another client's data. So batching needs a proof, made here, on this
model, at the sizes that will really be run:

- at the server's own maximum batch size and at the largest prime below it (a size that
  shares no factor with the first, so a model whose mixing depends on the batch's shape or
  on a row's position is caught at sizes a client really sees);
- with distinct rows at every position: the bundle's golden rows, extended with perturbed
  copies (floats scaled and shifted, integers rolled along the row or moved to a
  neighbouring value), placed in a different order in each batch;
- every position's output compared with the same row run alone.

No proof (no golden inputs, no second distinct row, a probe that fails or disagrees) means
no batching. A probe shows independence at the sizes it ran, not at every size: a model that
mixes rows only at some other batch size is not caught (docs/serving.md says so).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labkit.runtime.signature import TensorSpec

if TYPE_CHECKING:
    from labkit.runtime.model import Model

__all__ = ["POOL_ROWS", "BatchProbe", "batch_dim", "probe_batching", "probe_sizes"]

log = logging.getLogger("labkit.runtime")

POOL_ROWS = 8  # distinct rows a probe uses (each also run alone: the probe's cost)
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchProbe:
    """The verdict: ``ok`` only when every probed size gave every row its alone answer."""

    ok: bool
    sizes: tuple[int, ...]
    reason: str  # one line: what was proven, or why batching stays off

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "sizes": list(self.sizes), "reason": self.reason}


def batch_dim(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
    """The symbolic leading dim every input and output shares, if there is one: the only
    shape a batch can be split back from."""
    firsts = {spec.shape[0] if spec.shape else None for spec in [*inputs, *outputs]}
    if len(firsts) == 1:
        (dim,) = firsts
        if isinstance(dim, str):
            return dim
    return None


def _largest_prime_below(n: int) -> int | None:
    for k in range(n - 1, 1, -1):
        if all(k % d for d in range(2, int(k**0.5) + 1)):
            return k
    return None


def probe_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a probe runs for a server batching up to ``max_batch_size`` rows."""
    if max_batch_size < 2:
        return ()
    prime = _largest_prime_below(max_batch_size)
    return (max_batch_size,) if prime is None else (max_batch_size, prime)


def _row_variants(row: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th perturbed copy of one row (k >= 1), of the same dtype and valid range."""
    if row.dtype.kind == "f":
        return (row * (1.0 + 0.5 * k) + 0.25 * k).astype(row.dtype)
    if row.dtype.kind in "iu" and row.size:
        if k % 2 and row.ndim:  # a rolled row keeps the same values (token ids stay valid)
            rolled = np.roll(row, k, axis=-1)
            if not np.array_equal(rolled, row):
                return rolled
        # a neighbouring valid value (indices stay in range: 0 <-> 1, n -> n-1)
        return np.where(row > 0, row - 1, row + 1).astype(row.dtype)
    return row.copy()


def _pool(feeds: Mapping[str, np.ndarray], want: int) -> list[Arrays]:
    """Up to ``want`` distinct rows (each ``{input: array of 1 row}``): the golden rows first,
    then perturbed copies of them."""
    names = list(feeds)
    n = int(next(iter(feeds.values())).shape[0])
    seen: set[bytes] = set()
    pool: list[Arrays] = []

    def add(row: Arrays) -> None:
        key = b"".join(row[k].tobytes() for k in names)
        if key not in seen and len(pool) < want:
            seen.add(key)
            pool.append(row)

    for i in range(n):
        add({k: feeds[k][i : i + 1] for k in names})
    for k in range(1, 2 * want + 1):
        if len(pool) >= want:
            break
        for i in range(min(n, want)):
            add({name: _row_variants(feeds[name][i : i + 1], k) for name in names})
    return pool


def _same(alone: np.ndarray, together: np.ndarray) -> bool:
    scale = float(np.max(np.abs(together))) if together.size and together.dtype.kind == "f" else 1.0
    return alone.shape == together.shape and bool(
        np.allclose(alone, together, rtol=1e-5, atol=1e-5 * max(scale, 1.0), equal_nan=True)
    )


def _check_size(
    model: Model, pool: list[Arrays], alone: list[Arrays], size: int, reverse: bool
) -> str:
    """'' when a batch of ``size`` rows gave every row its alone answer, else what differed.
    The pool is cycled forwards or backwards, so each row sits at other positions per size."""
    n = len(pool)
    order = [(-1 - i if reverse else i) % n for i in range(size)]
    feed = {k: np.concatenate([pool[j][k] for j in order]) for k in pool[0]}
    together = model.predict(feed)
    for pos, j in enumerate(order):
        for name, value in alone[j].items():
            got = together[name]
            if got.ndim == 0 or got.shape[0] != size:
                return f"output {name!r} has shape {list(got.shape)}, not {size} rows"
            if not _same(value, got[pos : pos + 1]):
                return f"row {pos} of a batch of {size} differs from the same row run alone"
    return ""


def probe_batching(model: Model, max_batch_size: int) -> BatchProbe:
    """Prove (or not) that ``model`` may batch up to ``max_batch_size`` rows of different
    clients together; never raises (a probe that cannot run proves nothing)."""
    sizes = probe_sizes(max_batch_size)
    if not sizes:
        return BatchProbe(False, (), f"max batch size {max_batch_size}: batching is off")
    if batch_dim(model.inputs, model.outputs) is None:
        return BatchProbe(False, sizes, "inputs and outputs share no symbolic leading (batch) dim")
    try:
        golden = model.golden_inputs()  # the bounded, re-hashed reader ([golden])
        feeds = {s.name: golden[s.name] for s in model.inputs}
    except Exception as exc:  # noqa: BLE001 - no proof, no batching
        return BatchProbe(False, sizes, f"no golden inputs to probe with ({exc})")
    pool = _pool(feeds, min(POOL_ROWS, max(sizes)))
    if len(pool) < 2:
        return BatchProbe(False, sizes, "no two distinct rows to probe with")
    try:
        alone = [model.predict(row) for row in pool]
        for i, size in enumerate(sizes):
            why = _check_size(model, pool, alone, size, reverse=bool(i % 2))
            if why:
                return BatchProbe(False, sizes, f"rows are not independent: {why}")
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run proves nothing
        return BatchProbe(False, sizes, f"the probe failed ({type(exc).__name__}: {exc})")
    shown = " and ".join(str(s) for s in sizes)
    return BatchProbe(
        True, sizes, f"rows independent in batches of {shown} ({len(pool)} distinct rows)"
    )
