"""Tuning workers under a deadline: a bounded number of processes, every wait bounded.

Each candidate runs in its own ``labkit.runtime._bench_worker`` process (several runtimes in
one process gave distorted numbers). The :class:`Pool` keeps at most ``limit`` of them alive
at once, starts none past its deadline, and kills whatever is left when it closes. A
:class:`Worker` waits for a reply only until a deadline; past it the process is killed and
:class:`WorkerTimeout` raised, so one slow model load or compile cannot stretch a tune.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from labkit.errors import LabkitError
from labkit.runtime.engines import Candidate

__all__ = ["Pool", "Worker", "WorkerFailed", "WorkerTimeout"]

_MAX_REPLY = 1 << 20


class WorkerFailed(LabkitError):
    """The worker answered with an error (an engine could not load or run the candidate)."""


class WorkerTimeout(LabkitError):
    """No reply before the deadline; the worker was killed."""


class Worker:
    """One candidate in its own process. ``deadline`` (``time.monotonic()``) bounds every
    wait of :meth:`run` (what :func:`labkit.runtime.bench.interleave` calls)."""

    def __init__(self, cand: Candidate, model: Path, *, deadline: float) -> None:
        self.name = cand.label
        self.candidate = cand
        self.deadline = deadline
        self.started = time.monotonic()
        self.warm_s: dict[str, float] = {}  # seconds per call by feed, after feeds()
        env = dict(os.environ)
        if cand.threads:
            env["OMP_NUM_THREADS"] = str(cand.threads)
        # stderr to a file, not a pipe: a chatty engine can never fill a pipe and block.
        self._err: IO[bytes] = tempfile.TemporaryFile(prefix="labkit-tune-worker-")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.runtime._bench_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
        )
        self._buf = b""
        self._send(
            {
                "model": str(model),
                "threads": cand.threads,
                "engine": cand.engine,
                "precision": cand.precision,
                "streams": cand.streams,
            }
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def _send(self, msg: Mapping[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(msg) + "\n").encode())
            self._proc.stdin.flush()
        except OSError:
            raise WorkerFailed(f"worker for {self.name} is gone: {self._stderr_tail()}") from None

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._err.seek(0, os.SEEK_END)
            size = self._err.tell()
            self._err.seek(max(0, size - 400))
            tail = self._err.read().decode("utf-8", "replace").strip().splitlines()
            return tail[-1] if tail else "no message"
        return "no message"

    def _read(self, until: float | None = None) -> dict[str, Any]:
        """One reply line, waiting no later than ``until`` (default: the worker's deadline)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        limit = self.deadline if until is None else min(until, self.deadline)
        while b"\n" not in self._buf:
            left = limit - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.kill()
                raise WorkerTimeout(f"{self.name}: no answer within the time budget")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.kill()
                raise WorkerFailed(f"{self.name}: worker died ({self._stderr_tail()})")
            self._buf += chunk
            if len(self._buf) > _MAX_REPLY:
                self.kill()
                raise WorkerFailed(f"{self.name}: reply too long")
        line, _, self._buf = self._buf.partition(b"\n")
        msg = json.loads(line)
        if "error" in msg:
            raise WorkerFailed(str(msg["error"]))
        return dict(msg)

    def ready(self, until: float) -> float:
        """Wait for the sessions to exist; seconds the worker took to build them."""
        return float(self._read(until).get("load_s", 0.0))

    def golden(self, inputs: Path, outputs: Sequence[str], out: Path, until: float) -> float:
        """Run the golden inputs once; outputs land in ``out``; seconds the run took."""
        self._send(
            {"cmd": "golden", "inputs": str(inputs), "outputs": list(outputs), "out": str(out)}
        )
        return float(self._read(until)["s"])

    def feeds(self, inputs: Mapping[str, Path], until: float) -> dict[str, float]:
        """Load the timing inputs and warm up; seconds per call by feed."""
        self._send({"cmd": "feeds", "inputs": {k: str(v) for k, v in inputs.items()}, "warmup": 1})
        self.warm_s = {k: float(v) for k, v in self._read(until)["warm_s"].items()}
        return self.warm_s

    def run(self, cmd: str, n: int) -> list[float]:
        self._send({"cmd": cmd, "n": n})
        return [float(t) for t in self._read()["times"]]

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)

    def close(self) -> None:
        """Kill the worker: it holds nothing worth a clean exit, and an engine's interpreter
        shutdown costs a few hundred milliseconds of the budget."""
        self.kill()
        for f in (self._proc.stdin, self._proc.stdout, self._err):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()


class Pool:
    """At most ``limit`` workers alive at once; none started at or past ``deadline``; no
    worker is waited on past ``wait_until`` (default: ``deadline``)."""

    def __init__(self, limit: int, deadline: float, wait_until: float | None = None) -> None:
        self.limit = max(1, limit)
        self.deadline = deadline
        self.wait_until = deadline if wait_until is None else wait_until
        self._alive: list[Worker] = []
        self.started = 0
        self.peak = 0

    def free(self) -> int:
        self._alive = [w for w in self._alive if w.alive()]
        return self.limit - len(self._alive)

    def start(self, cand: Candidate, model: Path) -> Worker | None:
        """A new worker, or None when the pool is full or the deadline has passed."""
        if time.monotonic() >= self.deadline or self.free() <= 0:
            return None
        w = Worker(cand, model, deadline=self.wait_until)
        self._alive.append(w)
        self.started += 1
        self.peak = max(self.peak, len(self._alive))
        return w

    def close(self, w: Worker) -> None:
        w.close()
        self._alive = [x for x in self._alive if x is not w]

    def close_all(self) -> None:
        for w in list(self._alive):
            w.close()
        self._alive = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
