"""The local experiment store: ``experiments/NAME/RUN/`` holds a run and its trials.

- ``run.json``: what was asked (planned params or the search, metric and goal, task, the
  shape of the example inputs), written when the run starts;
- ``trial-NNN.json``: params, metrics, elapsed time, measured CPU latency, status — written
  (atomically: a temp file, then a rename) as soon as the trial finishes, so an interrupted
  run keeps every finished trial;
- ``trial-NNN.safetensors``: the trained weights (a state dict in safetensors: tensors and
  nothing else, no pickle, nothing executed on load), with its sha256 in the record;
- ``inputs.safetensors``: the example inputs a trial is handed off with.

The weights alone are not a model: the architecture is rebuilt by the researcher's own code
(``model_fn(**params)``, see :mod:`labkit.notebook.experiments`) and the weights loaded into
it strictly (every key and shape must match). Files are read back as what the store writes,
or refused: names and run ids must match their rules in full, paths must stay inside the
store (no ``..``, no links), JSON is size- and depth-bounded. When MLflow is installed and a
tracking URI is set (``MLFLOW_TRACKING_URI``), each trial is logged there too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labkit.errors import InputError, MissingDependencyError
from labkit.notebook.trials import Trial, json_safe

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "NAME_RULE", "RUN_RULE", "ExperimentStore"]

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # always fullmatch
RUN_RULE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}")
MAX_JSON_BYTES = 4 << 20
MAX_JSON_DEPTH = 32
MAX_TRIALS = 100_000
_TRIAL_FILE = re.compile(r"trial-([0-9]{3,6})\.json")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name) or name in (".", ".."):
        raise InputError(
            f"experiment name {name!r} is not usable as a folder name: use letters, digits, "
            "'.', '_' or '-' (up to 64, starting with a letter or digit)"
        )
    return name


def check_run(run: object) -> str:
    if not isinstance(run, str) or not RUN_RULE.fullmatch(run):
        raise InputError(
            f"run {run!r} is not a run id of this store (like 20261204T195925Z-1a2b): "
            "pass one of the folder names under the experiment, or none for the latest"
        )
    return run


def read_json(path: Path) -> Any:
    """A JSON file the store wrote: a regular file (not a link, FIFO or device), at most
    MAX_JSON_BYTES, nested at most MAX_JSON_DEPTH levels, no duplicate keys."""
    from labkit.bundle._json import DuplicateKey, NonFinite, TooDeep, parse, scan_depth
    from labkit.bundle.files import read_file
    from labkit.errors import BundleError

    try:  # the one safe reader: no link, no FIFO or device, checked on the descriptor
        data = read_file(path, max_bytes=MAX_JSON_BYTES, single_link=False)
    except BundleError as exc:
        raise InputError(f"experiment store: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read as a store file ({exc.strerror})") from None
    try:
        scan_depth(data, MAX_JSON_DEPTH)
        return parse(data.decode("utf-8"))
    except TooDeep:
        raise InputError(f"{path}: JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (DuplicateKey, NonFinite, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a store file ({type(exc).__name__}: {exc})") from None


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise MissingDependencyError("safetensors", "notebook") from None
    return safetensors.torch


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExperimentStore:
    """``root/NAME/RUN/``; ``RUN`` is a UTC time stamp and a random suffix."""

    def __init__(self, root: str | os.PathLike[str], name: str, run: str | None = None) -> None:
        self.name = check_name(name)
        self.root = Path(root).expanduser().resolve()
        if run is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            run = f"{stamp}-{secrets.token_hex(2)}"
        self.run_id = check_run(run)
        self.path = self.root / self.name / self.run_id
        self._mlflow = _mlflow()
        self._doc: dict[str, Any] = {}

    # -- writing ----------------------------------------------------------------------------
    def start(self, info: dict[str, Any]) -> None:
        folder = self.root / self.name
        if os.path.lexists(folder) and not _is_plain_dir(folder):
            raise InputError(f"{folder} is not a plain folder (a link?): pass another store=")
        self.path.mkdir(parents=True, exist_ok=False)
        self._doc = {
            "name": self.name,
            "run": self.run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **info,
        }
        self._write("run.json", self._doc)

    def update_run(self, **fields: Any) -> None:
        """Add to ``run.json`` (rewritten atomically): the inputs' layout, how it ended."""
        self._doc.update(fields)
        self._write("run.json", self._doc)

    def save_trial(self, record: dict[str, Any]) -> Path:
        path = self._write(f"trial-{record['id']:03d}.json", record)
        if self._mlflow is not None:
            _log_mlflow(self._mlflow, self.name, record)
        return path

    def save_weights(self, trial_id: int, model: Any) -> tuple[str, str]:
        """The model's state dict as ``trial-NNN.safetensors``: (file name, sha256)."""
        st = _safetensors()
        name = f"trial-{trial_id:03d}.safetensors"
        tmp = self.path / f".{name}.tmp"
        # save_model, not save_file: it keeps one copy of tied (shared) tensors.
        st.save_model(model, str(tmp), metadata={"labkit": "experiment trial weights"})
        os.replace(tmp, self.path / name)
        return name, _sha256(self.path / name)

    def save_inputs(self, example_inputs: Any) -> dict[str, Any] | None:
        """``inputs.safetensors`` and how to put them back together; None when the inputs
        are not tensors (a tensor, a tuple/list of tensors, or a dict of them)."""
        layout = _layout(example_inputs)
        if layout is None:
            return None
        tensors = _flat(example_inputs, layout)
        st = _safetensors()
        tmp = self.path / ".inputs.safetensors.tmp"
        st.save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, self.path / "inputs.safetensors")
        self.update_run(example_inputs=layout)
        return layout

    def _write(self, filename: str, doc: dict[str, Any]) -> Path:
        target = self.path / filename
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(json_safe(doc), indent=1, sort_keys=True, allow_nan=False))
        os.replace(tmp, target)
        return target

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls, root: str | os.PathLike[str], name: str, run: str | None = None
    ) -> ExperimentStore:
        """The run ``run`` (default: the latest) of experiment ``name``, checked to be a
        folder of this store (no link, nothing outside it)."""
        check_name(name)
        if run is not None:
            check_run(run)
        base = Path(root).expanduser().resolve()
        folder = base / name
        if not _is_plain_dir(folder):
            raise InputError(
                f"no experiment {name!r} under {base}: run labkit.experiment(..., "
                f"name={name!r}) first, or pass store="
            )
        runs = sorted(
            p.name for p in folder.iterdir() if RUN_RULE.fullmatch(p.name) and _is_plain_dir(p)
        )
        if not runs:
            raise InputError(f"experiment {name!r} under {base} has no runs")
        if run is not None and run not in runs:
            raise InputError(f"experiment {name!r} has no run {run!r}; runs: {', '.join(runs)}")
        return cls(base, name, run or runs[-1])

    def info(self) -> dict[str, Any]:
        doc = read_json(self.path / "run.json")
        if not isinstance(doc, dict):
            raise InputError(f"{self.path / 'run.json'}: not a run record")
        return doc

    def trials(self) -> list[Trial]:
        found = []
        for p in self.path.iterdir():
            m = _TRIAL_FILE.fullmatch(p.name)
            if m:
                found.append((int(m.group(1)), p))
            if len(found) > MAX_TRIALS:
                raise InputError(f"{self.path}: more than {MAX_TRIALS} trial files")
        trials = [Trial.from_record(read_json(p), str(p)) for _, p in sorted(found)]
        for t, (n, p) in zip(trials, sorted(found)):
            if t.id != n:
                raise InputError(f"{p}: holds trial #{t.id}, not #{n}")
        return trials

    def load_weights(self, model: Any, trial: Trial) -> None:
        """Load ``trial``'s saved weights into ``model`` (built by ``model_fn``), strictly."""
        if trial.weights is None:
            raise InputError(
                f"trial #{trial.id} has no saved weights"
                + (f" ({trial.note})" if trial.note else "")
            )
        path = self._member(trial.weights, f"trial-{trial.id:03d}.safetensors")
        digest = _sha256(path)
        if digest != trial.weights_sha256:
            raise InputError(
                f"{path}: sha256 {digest[:16]}… is not the {str(trial.weights_sha256)[:16]}… "
                "recorded when the trial finished: the file changed since"
            )
        try:
            _safetensors().load_model(model, str(path), strict=True)
        except RuntimeError as exc:
            raise InputError(
                f"trial #{trial.id}'s weights do not fit the model model_fn built "
                f"({type(model).__name__}): {str(exc).splitlines()[0][:300]}; model_fn("
                "**params) must build the same architecture train_fn trained"
            ) from None

    def load_inputs(self, layout: Any) -> Any:
        path = self._member("inputs.safetensors", "inputs.safetensors")
        tensors = _safetensors().load_file(str(path))
        return _unflat(tensors, layout, path)

    def _member(self, filename: str, expected: str) -> Path:
        if filename != expected:
            raise InputError(f"{self.path}: file name {filename!r} is not {expected!r}")
        path = self.path / filename
        st = os.lstat(path) if os.path.lexists(path) else None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: missing, or not a regular file")
        return path


def _is_plain_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _layout(x: Any) -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    if isinstance(x, torch.Tensor):
        return {"kind": "tensor"}
    if isinstance(x, (tuple, list)) and x and all(isinstance(t, torch.Tensor) for t in x):
        return {"kind": "tuple", "count": len(x)}
    if (
        isinstance(x, dict)
        and x
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in x.items())
    ):
        return {"kind": "dict", "keys": list(x)}
    return None


def _flat(x: Any, layout: dict[str, Any]) -> dict[str, Any]:
    if layout["kind"] == "tensor":
        return {"0": x}
    if layout["kind"] == "tuple":
        return {str(i): t for i, t in enumerate(x)}
    return {f"k{i}": x[k] for i, k in enumerate(layout["keys"])}


def _unflat(tensors: dict[str, Any], layout: Any, path: Path) -> Any:
    kind = layout.get("kind") if isinstance(layout, dict) else None
    try:
        if kind == "tensor":
            return tensors["0"]
        if kind == "tuple" and isinstance(layout.get("count"), int):
            return tuple(tensors[str(i)] for i in range(layout["count"]))
        if kind == "dict" and isinstance(layout.get("keys"), list):
            return {str(k): tensors[f"k{i}"] for i, k in enumerate(layout["keys"])}
    except KeyError as exc:
        raise InputError(f"{path}: has no tensor {exc}") from None
    raise InputError(f"{path}: run.json's example_inputs layout {layout!r} is not the store's")


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
