"""A benchmark worker: one candidate (engine, precision, threads, streams) in a fresh process.

Each candidate is timed in its own process because several runtimes in one process gave
distorted numbers under load (docs/performance.md). Protocol: the first line is a JSON setup
``{"model", "inputs": {"latency": npz, "throughput": npz}, "threads", "warmup", "engine",
"precision", "streams", "warmup_s"}`` (``warmup_s``, optional: stop warming a feed after
that many seconds, at least one call), answered by
``{"ready": true, "warm_s": {cmd: seconds}}``; then
each line ``{"cmd": "latency"|"throughput", "n": int}`` is answered by
``{"times": [seconds, ...]}``; ``{"cmd": "quit"}`` ends it.

With ``streams`` > 1, "throughput" runs ``n`` calls on each of ``streams`` sessions at once
(one thread each, the way a server drives parallel sessions) and answers ``n`` equal times of
wall time / (n × streams): per batch-equivalent, so rows/s = batch × n / sum(times) holds.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from labkit.runtime.engines import Candidate, Session, make_session


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _timed(session: Session, feed: Mapping[str, np.ndarray], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return times


def _warm(
    session: Session, feed: Mapping[str, np.ndarray], n: int, budget_s: float | None
) -> list[float]:
    """Up to ``n`` calls, stopping once ``budget_s`` seconds went into them (at least one)."""
    times: list[float] = []
    while len(times) < max(n, 1) and (budget_s is None or sum(times) < budget_s):
        times += _timed(session, feed, 1)
    return times


def _parallel(sessions: list[Session], feed: Mapping[str, np.ndarray], n: int) -> list[float]:
    threads = [threading.Thread(target=_timed, args=(s, feed, n)) for s in sessions]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [wall / (n * len(sessions))] * n


def main() -> int:
    setup: dict[str, Any] = json.loads(sys.stdin.readline())
    cand = Candidate(
        variant="-",
        engine=setup.get("engine", "onnxruntime"),
        precision=setup.get("precision", "fp32"),
        threads=setup.get("threads"),
    )
    with open(setup["model"], "rb") as f:
        data = f.read()
    sessions = [make_session(data, cand) for _ in range(max(1, int(setup.get("streams", 1))))]
    feeds = {k: _load(v) for k, v in setup["inputs"].items()}
    warm: dict[str, float] = {}
    budget = setup.get("warmup_s")
    for key, feed in feeds.items():
        for s in sessions:
            times = _warm(s, feed, int(setup.get("warmup", 3)), budget)
        warm[key] = statistics.median(times) if times else 0.0
    print(json.dumps({"ready": True, "warm_s": warm}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        feed, n = feeds[cmd["cmd"]], int(cmd["n"])
        if cmd["cmd"] == "throughput" and len(sessions) > 1:
            times = _parallel(sessions, feed, n)
        else:
            times = _timed(sessions[0], feed, n)
        print(json.dumps({"times": times}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
