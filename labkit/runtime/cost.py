"""What a measured throughput costs: per-core throughput and price per million inferences.

One home for the arithmetic, used by ``handoff tune``, the bundle report and summaries. The
price of one core-hour comes from ``--price-per-core-hour`` or ``$LABKIT_PRICE_PER_CORE_HOUR``.
"""

from __future__ import annotations

import os

from labkit.errors import LabkitError

PRICE_ENV = "LABKIT_PRICE_PER_CORE_HOUR"


def price_per_core_hour(explicit: float | None = None) -> float | None:
    """The price given, else ``$LABKIT_PRICE_PER_CORE_HOUR``, else None (no cost shown)."""
    if explicit is not None:
        if explicit < 0:
            raise LabkitError(f"price per core-hour {explicit} must be >= 0")
        return explicit
    raw = os.environ.get(PRICE_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise LabkitError(
            f"${PRICE_ENV} is {raw!r}, not a number; set it to the price of one "
            "core-hour, e.g. 0.02"
        ) from None
    if value < 0:
        raise LabkitError(f"${PRICE_ENV} is {raw!r}; a price must be >= 0")
    return value


def cost(throughput_per_s: float, cores: int, price: float | None) -> dict[str, float | None]:
    """Per-core throughput, and what a million inferences cost at that throughput."""
    per_core = throughput_per_s / max(cores, 1)
    per_million = None
    if price is not None and throughput_per_s > 0:
        per_million = price * max(cores, 1) * 1e6 / throughput_per_s / 3600
    return {
        "per_core_per_s": per_core,
        "price_per_core_hour": price,
        "cost_per_million": per_million,
    }
