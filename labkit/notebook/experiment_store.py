"""The local experiment store: one JSON file per trial under ``experiments/NAME/RUN/``.

Each trial is written (atomically: a temp file, then a rename) as soon as it finishes, so an
interrupted run keeps every finished trial. Files are plain JSON — params, metrics, elapsed
time, measured CPU latency, status — readable without labkit. When MLflow is installed and a
tracking URI is set (``MLFLOW_TRACKING_URI``), each trial is logged there too.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labkit.errors import InputError

__all__ = ["ExperimentStore", "NAME_RULE"]

NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _json_safe(value: Any) -> Any:
    """Numbers as numbers, non-finite ones as strings ("nan"), anything else as text."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return _json_safe(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


class ExperimentStore:
    """``root/NAME/RUN/run.json`` and ``trial-NNN.json``; ``RUN`` is a UTC time stamp."""

    def __init__(self, root: str | os.PathLike[str], name: str) -> None:
        if not NAME_RULE.match(name):
            raise InputError(
                f"experiment name {name!r} is not usable as a folder name: use "
                "letters, digits, '.', '_' or '-' (up to 64, not starting with "
                "a symbol)"
            )
        self.name = name
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{stamp}-{secrets.token_hex(2)}"
        self.path = Path(root).expanduser().resolve() / name / self.run_id
        self._mlflow = _mlflow()

    def start(self, info: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=False)
        self._write(
            "run.json",
            {
                "name": self.name,
                "run": self.run_id,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **info,
            },
        )

    def save_trial(self, record: dict[str, Any]) -> Path:
        path = self._write(f"trial-{record['id']:03d}.json", record)
        if self._mlflow is not None:
            _log_mlflow(self._mlflow, self.name, record)
        return path

    def _write(self, filename: str, doc: dict[str, Any]) -> Path:
        target = self.path / filename
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_json_safe(doc), indent=1, sort_keys=True))
        os.replace(tmp, target)
        return target

    @staticmethod
    def load(
        root: str | os.PathLike[str], name: str, run: str | None = None
    ) -> list[dict[str, Any]]:
        """The trials of ``run`` (default: the latest run) of experiment ``name``."""
        folder = Path(root).expanduser() / name
        runs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not runs:
            raise InputError(
                f"no experiment {name!r} under {folder.parent}: run "
                "labkit.experiment(..., name=...) first, or pass store="
            )
        chosen = run or runs[-1]
        return [json.loads(p.read_text()) for p in sorted((folder / chosen).glob("trial-*.json"))]


def _mlflow() -> Any | None:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


def _log_mlflow(mlflow: Any, name: str, record: dict[str, Any]) -> None:
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=f"trial {record['id']}"):
        mlflow.log_params({k: str(v) for k, v in record["params"].items()})
        numbers = {
            k: v
            for k, v in record["metrics"].items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        }
        if record.get("latency_ms") is not None:
            numbers["cpu_latency_ms"] = record["latency_ms"]
        mlflow.log_metrics(numbers)
