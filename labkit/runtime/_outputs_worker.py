"""Run one graph on one engine over a few input batches, in a process of its own.

Protocol: one JSON object on stdin, ``{"model", "engine", "precision", "outputs": [names],
"inputs": [npz, ...], "out": dir}``; one JSON object on stdout: ``{"error": "..."}`` when the
engine cannot load the graph, else ``{"results": [{"outputs": npz} | {"error", "type"}]}``,
one per input batch, in order. Errors are labkit's (the engines classify their own).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labkit.errors import LabkitError
from labkit.runtime.engines import Candidate, make_session


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def run(job: dict[str, Any]) -> dict[str, Any]:
    cand = Candidate("-", str(job["engine"]), str(job["precision"]))
    names = [str(n) for n in job["outputs"]]
    try:
        session = make_session(Path(job["model"]).read_bytes(), cand)
    except LabkitError as exc:
        return {"error": str(exc)}
    results: list[dict[str, str]] = []
    for i, path in enumerate(job["inputs"]):
        try:
            outs = session.run(names, _load(str(path)))
        except LabkitError as exc:
            results.append({"error": str(exc), "type": type(exc).__name__})
            continue
        dst = Path(job["out"]) / f"outputs-{i}.npz"
        np.savez(dst, **dict(zip(names, outs)))  # type: ignore[arg-type]
        results.append({"outputs": str(dst)})
    return {"results": results}


def main() -> int:
    print(json.dumps(run(json.loads(sys.stdin.read()))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
