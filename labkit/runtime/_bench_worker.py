"""A benchmark worker: one ONNX Runtime session in a fresh process, driven over stdin/stdout.

Each variant is timed in its own process because several runtimes in one process gave
distorted numbers under load (FIELD-NOTES). Protocol: the first line is a JSON setup
``{"model", "inputs": {"latency": npz, "throughput": npz}, "threads", "warmup"}``; then
each line ``{"cmd": "latency"|"throughput", "n": int}`` is answered by
``{"times": [seconds, ...]}``; ``{"cmd": "quit"}`` ends it.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from labkit.runtime.session import make_session


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main() -> int:
    setup = json.loads(sys.stdin.readline())
    with open(setup["model"], "rb") as f:
        session = make_session(f.read(), threads=setup.get("threads"))
    feeds = {k: _load(v) for k, v in setup["inputs"].items()}
    for feed in feeds.values():
        for _ in range(int(setup.get("warmup", 3))):
            session.run(None, feed)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        feed = feeds[cmd["cmd"]]
        times = []
        for _ in range(int(cmd["n"])):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"times": times}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
