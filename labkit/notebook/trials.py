"""One trial of an experiment, as it runs and as it is saved (``trial-NNN.json``).

A saved record is read back strictly (:meth:`Trial.from_record`): a record that is not what
the store writes is refused with what is wrong, never half-used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import InputError

__all__ = ["STATUSES", "Trial", "json_safe"]

STATUSES = ("ok", "failed")


def json_safe(value: Any) -> Any:
    """Numbers as numbers, non-finite ones as strings ("nan"), anything else as text."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


@dataclass
class Trial:
    id: int
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency_ms: float | None = None
    status: str = "ok"  # "ok" | "failed"
    error: str = ""
    weights: str | None = None  # file name of the saved weights in the run's folder
    weights_sha256: str | None = None
    note: str = ""  # why no weights were saved, or could not be reloaded
    model: Any = field(default=None, repr=False)  # in memory this session; see weights

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "params": json_safe(self.params),
            "metrics": json_safe(self.metrics),
            "elapsed_s": self.elapsed_s,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error": self.error,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "note": self.note,
        }

    @classmethod
    def from_record(cls, doc: Any, where: str) -> Trial:
        """A saved record, checked field by field (``where`` names the file)."""
        if not isinstance(doc, dict):
            raise InputError(f"{where}: a trial record is a JSON object, got {type(doc).__name__}")

        def get(key: str, kinds: tuple[type, ...], default: Any = ..., none: bool = False) -> Any:
            if key not in doc:
                if default is ...:
                    raise InputError(f"{where}: the trial record has no {key!r}")
                return default
            value = doc[key]
            if value is None and none:
                return None
            if isinstance(value, bool) and bool not in kinds:
                value = None
            if not isinstance(value, kinds):
                raise InputError(f"{where}: {key!r} is {value!r}, not what the store writes")
            return value

        trial_id = get("id", (int,))
        if trial_id < 1:
            raise InputError(f"{where}: trial id {trial_id} must be 1 or more")
        status = get("status", (str,))
        if status not in STATUSES:
            raise InputError(f"{where}: status {status!r} is not one of {list(STATUSES)}")
        latency = get("latency_ms", (int, float), None, none=True)
        sha = get("weights_sha256", (str,), None, none=True)
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise InputError(f"{where}: weights_sha256 {sha!r} is not a sha256 digest")
        return cls(
            id=trial_id,
            params=get("params", (dict,)),
            metrics=get("metrics", (dict,)),
            elapsed_s=float(get("elapsed_s", (int, float), 0.0)),
            latency_ms=None if latency is None else float(latency),
            status=status,
            error=get("error", (str,), ""),
            weights=get("weights", (str,), None, none=True),
            weights_sha256=sha,
            note=get("note", (str,), ""),
        )
