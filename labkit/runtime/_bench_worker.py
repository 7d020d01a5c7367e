"""A benchmark worker: one candidate (engine, precision, threads, streams) in a fresh process.

Each candidate is timed in its own process because several runtimes in one process gave
distorted numbers under load (docs/performance.md). Protocol: the first line is a JSON setup
``{"model", "inputs": {"latency": npz, "throughput": npz}, "threads", "warmup", "engine",
"precision", "streams", "warmup_s"}`` (``warmup_s`` optional: see :func:`_warm`), answered
by ``{"ready": true, "warm_s": {cmd: seconds}}``; then
each line ``{"cmd": "latency"|"throughput", "n": int}`` is answered by
``{"times": [seconds, ...]}``; ``{"cmd": "quit"}`` ends it.

The tuner (:mod:`labkit.runtime.tune_workers`) sends the setup without ``inputs`` (answered
by ``{"ready": true, "load_s": seconds}`` once the sessions exist), then
``{"cmd": "golden", "inputs": npz, "outputs": [names], "out": npz}`` (one run of the golden
inputs, outputs written to ``out``; answered by ``{"s": seconds}``) and
``{"cmd": "feeds", "inputs": {...}, "warmup": n}`` (answered by ``{"warm_s": {...}}``).
Any failure is answered by ``{"error": "Type: message"}``. Replies go to the stdout the
worker started with; whatever a library prints to stdout goes to stderr instead.

With ``streams`` > 1, "throughput" runs ``n`` calls on each of ``streams`` sessions at once
(one thread each, the way a server drives parallel sessions) and answers ``n`` equal times of
wall time / (n × streams): per batch-equivalent, so rows/s = batch × n / sum(times) holds.
"""

from __future__ import annotations

import json
import os
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


def _parallel(sessions: list[Session], feed: Mapping[str, np.ndarray], n: int) -> list[float]:
    threads = [threading.Thread(target=_timed, args=(s, feed, n)) for s in sessions]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [wall / (n * len(sessions))] * n


def _warm(
    sessions: list[Session],
    feeds: Mapping[str, Mapping[str, np.ndarray]],
    warmup: int,
    budget_s: float | None = None,
) -> dict[str, float]:
    """Up to ``warmup`` calls per feed and session; with ``budget_s``, no more once that many
    seconds went into a feed (at least one call): five warm-up calls of a big model at
    batch 64 would take longer than the benchmark."""
    warm: dict[str, float] = {}
    for key, feed in feeds.items():
        times: list[float] = []
        for s in sessions:
            times = []
            while len(times) < warmup and (budget_s is None or sum(times) < budget_s):
                times += _timed(s, feed, 1)
        warm[key] = statistics.median(times) if times else 0.0
    return warm


def _error(exc: BaseException) -> dict[str, str]:
    first = (str(exc).strip().splitlines() or [""])[0]
    return {"error": f"{type(exc).__name__}: {first[:300]}"}


def main() -> int:
    # The protocol keeps the stdout we started with; fd 1 becomes stderr, so a library that
    # prints cannot break a reply.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)

    def reply(msg: Mapping[str, Any]) -> None:
        channel.write(json.dumps(msg) + "\n")
        channel.flush()

    setup: dict[str, Any] = json.loads(sys.stdin.readline())
    t0 = time.perf_counter()
    try:
        cand = Candidate(
            variant="-",
            engine=setup.get("engine", "onnxruntime"),
            precision=setup.get("precision", "fp32"),
            threads=setup.get("threads"),
        )
        with open(setup["model"], "rb") as f:
            data = f.read()
        streams = max(1, int(setup.get("streams", 1)))
        sessions = [make_session(data, cand) for _ in range(streams)]
        feeds = {k: _load(v) for k, v in (setup.get("inputs") or {}).items()}
        warm = _warm(sessions, feeds, int(setup.get("warmup", 3)), setup.get("warmup_s"))
    except Exception as exc:  # noqa: BLE001 - the parent decides what a failure means
        reply(_error(exc))
        return 1
    if setup.get("inputs"):
        reply({"ready": True, "warm_s": warm})
    else:
        reply({"ready": True, "load_s": time.perf_counter() - t0})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        try:
            if cmd["cmd"] == "golden":
                feed = _load(cmd["inputs"])
                t = time.perf_counter()
                outs = sessions[0].run(cmd["outputs"], feed)
                took = time.perf_counter() - t
                np.savez(cmd["out"], **dict(zip(cmd["outputs"], outs)))  # type: ignore[arg-type]
                reply({"s": took})
                continue
            if cmd["cmd"] == "feeds":
                feeds = {k: _load(v) for k, v in cmd["inputs"].items()}
                reply({"warm_s": _warm(sessions, feeds, int(cmd.get("warmup", 1)))})
                continue
            feed, n = feeds[cmd["cmd"]], int(cmd["n"])
            if cmd["cmd"] == "throughput" and len(sessions) > 1:
                times = _parallel(sessions, feed, n)
            else:
                times = _timed(sessions[0], feed, n)
        except Exception as exc:  # noqa: BLE001 - reported, the parent decides
            reply(_error(exc))
            continue
        reply({"times": times})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
