"""Outputs of a graph on an engine run in a process of its own (``_outputs_worker``).

Used where a second runtime must not share the caller's process: the handoff runs in the
researcher's Python (a notebook kernel, with PyTorch loaded), and loading OpenVINO beside
it made ``handoff export`` die with SIGSEGV instead of exiting cleanly on Ctrl-C (measured:
3 of 4 interrupts during the benchmark stage; none with OpenVINO kept out of the process).
An engine says it wants this with ``isolated = True``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from labkit.errors import EngineError, InputError, LabkitError
from labkit.runtime.engines import Candidate

__all__ = ["isolated_outputs"]

Batch = Mapping[str, np.ndarray]
TIMEOUT_S = 600


def isolated_outputs(
    model_bytes: bytes,
    candidate: Candidate,
    batches: Sequence[Batch],
    output_names: Sequence[str],
) -> list[dict[str, np.ndarray] | LabkitError]:
    """Each batch's outputs (or the labkit error running it raised); raises
    :class:`EngineError` when the engine cannot load the graph or the worker dies."""
    with tempfile.TemporaryDirectory(prefix="labkit-outputs-") as tmp_str:
        tmp = Path(tmp_str)
        model = tmp / "model.onnx"
        model.write_bytes(model_bytes)
        inputs = []
        for i, batch in enumerate(batches):
            inputs.append(str(tmp / f"inputs-{i}.npz"))
            np.savez(inputs[-1], **batch)  # type: ignore[arg-type]
        job = {
            "model": str(model),
            "engine": candidate.engine,
            "precision": candidate.precision,
            "outputs": list(output_names),
            "inputs": inputs,
            "out": str(tmp),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "labkit.runtime._outputs_worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise EngineError(
                f"{candidate.engine} worker died (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-300:]}"
            ) from None
        if "error" in answer:
            raise EngineError(str(answer["error"]))
        out: list[dict[str, np.ndarray] | LabkitError] = []
        for r in answer["results"]:
            if "error" in r:
                kind = InputError if r.get("type") == "InputError" else EngineError
                out.append(kind(str(r["error"])))
                continue
            with np.load(r["outputs"], allow_pickle=False) as z:
                out.append({n: z[n] for n in output_names})
        return out
