"""Interleaved benchmarking: runners take turns (A B A B …), each in its own process.

The machine is shared and noisy, so absolute times drift; ratios of runners measured side
by side in the same round do not. Speed-ups are medians of per-round ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from labkit.runtime.machine import cpu_info, usable_cpus

QUIESCE_S = 0.25
WAKE_CALLS = 3


class Runner(Protocol):
    name: str

    def run(self, cmd: str, n: int) -> list[float]: ...

    def close(self) -> None: ...


class WorkerRunner:
    """An ONNX model timed in a fresh ``labkit.runtime._bench_worker`` process.

    ``engine``/``precision``/``streams`` make it a tuning candidate; ``warm_s`` holds the
    worker's warm-up call times (seconds per call, by feed), which the tuner plans with.
    ``warmup_s`` stops warming a feed once that many seconds went into it (at least one
    call): five warm-up calls of a big model at batch 64 would take longer than the benchmark.
    """

    def __init__(
        self,
        name: str,
        model: Path,
        inputs: Mapping[str, Path],
        *,
        threads: int | None,
        warmup: int,
        engine: str = "onnxruntime",
        precision: str = "fp32",
        streams: int = 1,
        warmup_s: float | None = None,
    ) -> None:
        self.name = name
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.runtime._bench_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # Setup is sent now and its answer read on first use, so that several workers
        # load their models at the same time.
        self._write(
            {
                "model": str(model),
                "inputs": {k: str(v) for k, v in inputs.items()},
                "threads": threads,
                "warmup": warmup,
                "engine": engine,
                "precision": precision,
                "streams": streams,
                "warmup_s": warmup_s,
            }
        )
        self._warm: dict[str, float] | None = None

    @property
    def warm_s(self) -> dict[str, float]:
        if self._warm is None:
            ready = self._read()
            self._warm = {k: float(v) for k, v in (ready.get("warm_s") or {}).items()}
        return self._warm

    def _write(self, msg: dict[str, Any]) -> None:
        assert self._proc.stdin
        self._proc.stdin.write(json.dumps(msg) + "\n")
        self._proc.stdin.flush()

    def _send(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.warm_s  # noqa: B018 - the setup's answer comes first
        self._write(msg)
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"benchmark worker for {self.name} died: {err[-500:]}")
        msg = dict(json.loads(line))
        if "error" in msg:
            raise RuntimeError(f"benchmark worker for {self.name} failed: {msg['error']}")
        return msg

    def run(self, cmd: str, n: int) -> list[float]:
        return [float(t) for t in self._send({"cmd": cmd, "n": n})["times"]]

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin:
            try:
                self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def bench_feeds(example: Mapping[str, np.ndarray], batch: int) -> dict[str, dict[str, np.ndarray]]:
    """Batch-1 inputs for latency and ``batch`` rows (the example, repeated) for throughput."""
    one = {k: v[:1] for k, v in example.items()}
    many = {
        k: np.concatenate([v] * (batch // max(len(v), 1) + 1))[:batch] for k, v in example.items()
    }
    return {"latency": one, "throughput": many}


def write_inputs(folder: Path, feeds: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Path]:
    paths = {}
    for key, feed in feeds.items():
        path = folder / f"{key}.npz"
        np.savez(path, **feed)  # type: ignore[arg-type]
        paths[key] = path
    return paths


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass(frozen=True)
class Turn:
    """What one runner does in each round: ``latency`` timed batch-1 calls after
    ``latency_wake`` untimed ones, and ``throughput`` timed batch calls after ``wake``
    untimed ones."""

    latency: int
    throughput: int
    wake: int = 1
    latency_wake: int = WAKE_CALLS


def plan_turn(
    warm_s: Mapping[str, float],
    *,
    latency_s: float,
    throughput_s: float,
    max_latency: int,
    max_throughput: int,
) -> Turn:
    """Calls that fill about ``latency_s`` + ``throughput_s`` seconds at the warm-up pace.

    At least 3 batch-1 calls (a median) and 1 batch call. A batch call that takes a while
    needs no untimed call before it: the batch-1 calls just before woke the thread pools,
    and one more call of a big model would cost seconds per round for nothing.
    """
    lat = max(float(warm_s.get("latency", 0.0)), 1e-6)
    thr = max(float(warm_s.get("throughput", 0.0)), 1e-6)
    return Turn(
        latency=int(min(max_latency, max(3, latency_s / lat))),
        throughput=int(min(max_throughput, max(1, throughput_s / thr))),
        wake=1 if thr < 0.1 else 0,
        # one untimed call wakes the pools as well as three when a call takes 10 ms or more
        latency_wake=WAKE_CALLS if lat < 0.01 else 1,
    )


@dataclass
class BenchResult:
    batch: int
    threads: int
    rounds: int
    latency: dict[str, list[float]] = field(default_factory=dict)  # all samples
    round_p50: dict[str, list[float]] = field(default_factory=dict)
    round_throughput: dict[str, list[float]] = field(default_factory=dict)
    round_latency: dict[str, list[list[float]]] = field(default_factory=dict)  # by round

    def add_fastest(self, name: str, parts: Sequence[str]) -> None:
        """A runner ``name`` that is, in every round, the faster of ``parts``: the lowest
        batch-1 median (with that part's samples) and the highest throughput.

        PyTorch eager at N threads can collapse when the machine is busy while eager at 1
        thread does not (FIELD-NOTES): the baseline is the faster of the two, round by round.
        """
        self.round_p50[name], self.round_throughput[name] = [], []
        self.round_latency[name], self.latency[name] = [], []
        for i in range(len(self.round_p50[parts[0]])):
            fastest = min(parts, key=lambda p: self.round_p50[p][i])
            self.round_p50[name].append(self.round_p50[fastest][i])
            self.round_latency[name].append(self.round_latency[fastest][i])
            self.latency[name] += self.round_latency[fastest][i]
            self.round_throughput[name].append(max(self.round_throughput[p][i] for p in parts))

    def rounds_of(self, name: str) -> dict[str, list[float]]:
        """Per-round batch-1 medians (ms) and throughputs (rows/s): what a reader needs to
        check the medians, the spread and the noise."""
        return {
            "p50_ms": [t * 1e3 for t in self.round_p50[name]],
            "throughput_per_s": list(self.round_throughput[name]),
        }

    def stats(self, name: str) -> dict[str, float]:
        lat = self.latency[name]
        return {
            "p50_ms": _pct(lat, 50) * 1e3,
            "p90_ms": _pct(lat, 90) * 1e3,
            "p99_ms": _pct(lat, 99) * 1e3,
            "throughput_per_s": statistics.median(self.round_throughput[name]),
            "throughput_batch": self.batch,
        }

    def speedup(self, name: str, baseline: str) -> dict[str, float]:
        lat = [b / a for a, b in zip(self.round_p50[name], self.round_p50[baseline])]
        thr = [a / b for a, b in zip(self.round_throughput[name], self.round_throughput[baseline])]
        return {"p50": statistics.median(lat), "throughput": statistics.median(thr)}


def interleave(
    runners: Sequence[Runner],
    *,
    rounds: int,
    latency_iters: int,
    throughput_iters: int,
    batch: int,
    threads: int,
    on_round: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
    turns: Mapping[str, Turn] | None = None,
    min_rounds: int = 2,
) -> BenchResult:
    """Run every runner once per round, in turn; collect latency and throughput.

    ``turns`` gives a runner its own :class:`Turn` (else ``latency_iters`` and
    ``throughput_iters`` with one untimed batch call). With a ``deadline``
    (``time.monotonic()``), no round starts that would, at the pace of the last one, end past
    it; at least ``min_rounds`` (≥ 2, so that there is a ratio to take a median of) run.
    """
    res = BenchResult(batch=batch, threads=threads, rounds=rounds)
    for r in runners:
        res.latency[r.name], res.round_p50[r.name], res.round_throughput[r.name] = [], [], []
        res.round_latency[r.name] = []
    plain = Turn(latency_iters, throughput_iters, 1)
    for i in range(rounds):
        started = time.monotonic()
        order = runners if i % 2 == 0 else list(reversed(runners))
        for r in order:
            turn = (turns or {}).get(r.name, plain)
            # Let the previous runner's thread pools stop spinning, then wake this one's
            # with a few untimed calls: otherwise a runner pays for its neighbour's spin-wait.
            time.sleep(QUIESCE_S)
            lat = r.run("latency", turn.latency + turn.latency_wake)[turn.latency_wake :]
            thr = r.run("throughput", turn.throughput + turn.wake)[turn.wake :]
            res.latency[r.name] += lat
            res.round_latency[r.name].append(lat)
            res.round_p50[r.name].append(statistics.median(lat))
            # The median call, not the total: on a shared machine one preempted call of a
            # small model would otherwise decide the round (a 10 ms time slice against
            # 0.5 ms calls). Parallel streams answer equal times, so it is their mean.
            res.round_throughput[r.name].append(batch / statistics.median(thr))
        res.rounds = i + 1
        if on_round is not None:
            on_round(i + 1, rounds)
        now = time.monotonic()
        if (
            deadline is not None
            and i + 1 >= max(2, min_rounds)
            and now + (now - started) > deadline
        ):
            break
    return res


def environment(threads: int) -> dict[str, Any]:
    from labkit.runtime.machine import library_versions

    return {
        "threads": threads,
        "cpu": cpu_info(),
        "libraries": library_versions("onnxruntime", "numpy", "torch"),
    }


def bench_bundle(
    path: Path,
    *,
    rounds: int = 5,
    latency_iters: int = 30,
    batch: int = 32,
    throughput_iters: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time every variant of a verified bundle on this machine (``handoff bench``)."""
    from labkit.bundle.integrity import verify

    vb = verify(path)
    threads = threads or usable_cpus()
    golden = vb.read_npz(vb.manifest.golden.inputs)
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp:
        feeds = write_inputs(Path(tmp), bench_feeds(golden, batch))
        runners = []
        try:
            for v in vb.manifest.variants:
                model = Path(tmp) / f"{v.name}.onnx"
                model.write_bytes(vb.read(v.file))
                runners.append(WorkerRunner(v.name, model, feeds, threads=threads, warmup=3))
            res = interleave(
                runners,
                rounds=rounds,
                latency_iters=latency_iters,
                throughput_iters=throughput_iters,
                batch=batch,
                threads=threads,
            )
        finally:
            for r in runners:
                r.close()
    base = vb.manifest.variants[0].name
    return {
        "variants": {
            r.name: {**res.stats(r.name), "speedup_vs_" + base: res.speedup(r.name, base)}
            for r in runners
        },
        "baseline": base,
        "environment": environment(threads),
    }
