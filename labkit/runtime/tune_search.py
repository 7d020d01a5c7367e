"""The search state of one ``handoff tune`` (:mod:`labkit.runtime.tune`): the baseline's
worker, golden checks judged here by ``Tolerance.judge`` on outputs the workers compute,
and groups of workers timed interleaved beside the baseline, rung by rung."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit.bundle.integrity import VerifiedBundle
from labkit.errors import LabkitError
from labkit.runtime.bench import QUIESCE_S, WAKE_CALLS, bench_feeds, interleave, write_inputs
from labkit.runtime.compare import accumulate, tolerance_for
from labkit.runtime.engines import Candidate
from labkit.runtime.tune_workers import Pool, Worker, WorkerFailed, WorkerTimeout

__all__ = ["GROUP_MAX", "HARD_GRACE_S", "Arm", "Search", "base"]

MAX_ROUNDS = 5
# Runners timed together, the baseline included: each turn of a round costs a quiet gap
# (QUIESCE_S), so a round of 16 would take 4 s before any work.
GROUP_MAX = 8
# Past a rung's end by this much, a worker still being waited on is killed.
HARD_GRACE_S = 2.0
# A throughput call should take about this long, so a round of many runners stays short.
THROUGHPUT_CALL_S = 0.25


def base(c: Candidate) -> Candidate:
    """What a golden check judges: (variant, engine, precision); threads and streams do not
    change the arithmetic."""
    return Candidate(c.variant, c.engine, c.precision)


@dataclass
class Arm:
    """One configuration of the search and its ratios to the baseline, one per timing."""

    cand: Candidate
    ratios: list[dict[str, float]] = field(default_factory=list)  # one per timed group
    stats: dict[str, float] | None = None  # from the latest group

    def vs_default(self) -> dict[str, float]:
        return {k: statistics.fmean(r[k] for r in self.ratios) for k in ("p50", "throughput")}

    def score(self, objective: str) -> float:
        if not self.ratios:
            return float("-inf")
        return self.vs_default()["p50" if objective == "latency" else "throughput"]


class Search:
    """One tune's state: the worker pool, the baseline's worker, golden checks, timings."""

    def __init__(
        self,
        vb: VerifiedBundle,
        pool: Pool,
        tmp: Path,
        objective: str,
        baseline: Candidate,
        say: Callable[[str], None],
    ) -> None:
        self.vb, self.m, self.pool, self.tmp = vb, vb.manifest, pool, tmp
        self.objective, self.baseline, self.say = objective, baseline, say
        self.models: dict[str, Path] = {}
        self.checks: dict[Candidate, dict[str, Any]] = {}
        self.arms: dict[str, Arm] = {}
        self.base_stats: dict[str, float] | None = None
        self.base_worker: Worker | None = None
        self.feeds: dict[str, Path] = {}
        self.batch = 1
        self.group_s: list[float] = []
        self.broken = False
        self.timed_out: list[str] = []
        self.untimed: list[str] = []  # passed, but two rounds would not have fit in time
        self.golden = vb.read_npz(self.m.golden.inputs)  # bounded by the signature
        self.golden_rows = int(next(iter(self.golden.values())).shape[0]) if self.golden else 1
        self.golden_in = tmp / "golden-inputs.npz"
        feed = {t.name: self.golden[t.name] for t in self.m.signature.inputs}
        np.savez(self.golden_in, **feed)  # type: ignore[arg-type]
        self.expected = vb.read_npz(self.m.golden.expected)
        self.outputs = [t.name for t in self.m.signature.outputs]

    def model(self, variant: str) -> Path:
        if variant not in self.models:
            path = self.tmp / f"{variant}.onnx"
            path.write_bytes(self.vb.read(self.m.variant(variant).file))  # re-hashed as read
            self.models[variant] = path
        return self.models[variant]

    def _golden(self, w: Worker, c: Candidate, until: float) -> tuple[dict[str, Any], float]:
        """The golden check of ``c`` in worker ``w``: (table row, seconds per golden row).
        The worker only runs the inputs; the judging happens here, by Tolerance.judge."""
        tol = tolerance_for(self.m, self.m.variant(c.variant), c.exact)
        out = self.tmp / f"golden-{len(self.checks)}.npz"
        took = w.golden(self.golden_in, self.outputs, out, until)
        with np.load(out, allow_pickle=False) as z:
            got = {k: z[k] for k in z.files}
        out.unlink(missing_ok=True)
        stats = accumulate([(self.expected, got)], self.outputs)
        fails = tol.judge(stats, c.label)
        row: dict[str, Any] = {
            "candidate": c.to_dict(),
            "label": c.label,
            "check": "fail" if fails else "pass",
            "max_rel": max((st.max_rel for st in stats.values()), default=0.0),
            "tolerance": tol.to_dict(),
        }
        if fails:
            row["reason"] = "; ".join(fails)
        return row, took / max(self.golden_rows, 1)

    def note(self, c: Candidate, check: str, reason: str) -> None:
        """A golden-table row for a candidate that was not judged (error, skipped)."""
        b = base(c)
        row = {"candidate": b.to_dict(), "label": b.label, "check": check, "reason": reason}
        self.checks.setdefault(b, row)

    def passed(self, c: Candidate) -> bool:
        return self.checks.get(base(c), {}).get("check") == "pass"

    def start_baseline(self, batch: int, until: float) -> None:
        """Start the untuned default (kept up for the whole tune), check it, size the
        throughput batch from its golden run, and give it the timing inputs."""
        b = self.baseline
        w = self.pool.start(b, self.model(b.variant))
        if w is None:
            raise LabkitError("the time budget ran out before the untuned default could start")
        self.base_worker = w
        try:
            w.ready(until)
            row, per_row = self._golden(w, base(b), until)
            self.checks[base(b)] = row
            # Throughput calls of about THROUGHPUT_CALL_S each, so big models fit the budget.
            self.batch = max(1, min(batch, int(THROUGHPUT_CALL_S / max(per_row, 1e-9))))
            self.feeds = write_inputs(self.tmp, bench_feeds(self.golden, self.batch))
            w.feeds(self.feeds, until)
        except (WorkerFailed, WorkerTimeout, ValueError) as exc:
            raise LabkitError(
                f"the untuned default {b.label} could not be run for comparison within the "
                f"budget: {exc}"
            ) from None

    def group(self, arms: Sequence[Arm], until: float, time_until: float) -> None:
        """Start ``arms`` together, check and warm each (by ``until``), time the ready ones
        beside the baseline (rounds end by ``time_until``), close them. Until something has
        been timed, a group may use the whole budget: a rung's share is a plan, and on a
        slow host the first comparison is worth more than keeping to it."""
        t0 = time.monotonic()
        if self.base_stats is None:
            until = max(until, self.pool.deadline)
        started: list[tuple[Arm, Worker]] = []
        for a in arms:
            w = self.pool.start(a.cand, self.model(a.cand.variant))
            if w is None:
                break
            w.deadline = min(w.deadline, until + HARD_GRACE_S)
            started.append((a, w))
        ready: list[tuple[Arm, Worker]] = []
        for a, w in started:
            key = base(a.cand)
            try:
                w.ready(until)
                if key not in self.checks:
                    self.checks[key] = self._golden(w, key, until)[0]
                if self.passed(key):
                    w.feeds(self.feeds, until)
                    ready.append((a, w))
                    continue
            except WorkerFailed as exc:
                self.note(key, "error", str(exc))
            except WorkerTimeout:
                self.note(key, "skipped", "not ready within the time budget")
            except ValueError as exc:  # no accuracy budget to judge reduced precision by
                self.note(key, "error", str(exc))
            self.pool.close(w)
        if ready:
            self._time(ready, min(time_until, until), until)
        for _, w in ready:
            self.pool.close(w)
        self.group_s.append(time.monotonic() - t0)

    def _time(self, ready: Sequence[tuple[Arm, Worker]], share_end: float, rung_end: float) -> None:
        """Time ``ready`` interleaved with the baseline: as many rounds as fit by
        ``share_end``, and only as many workers as two rounds (the fewest that give a
        median of ratios) of, at their warm-up pace, allow by ``rung_end``."""
        assert self.base_worker is not None

        def turn_s(w: Worker) -> float:
            lat, thr = w.warm_s.get("latency", 1e-3), w.warm_s.get("throughput", 1e-3)
            return QUIESCE_S + (3 + WAKE_CALLS) * lat + 2 * thr

        fit = list(ready)
        left = rung_end - time.monotonic()
        while fit and 2 * (turn_s(self.base_worker) + sum(turn_s(w) for _, w in fit)) > left:
            self.untimed.append(fit.pop()[0].cand.label)
        if not fit:
            return
        runners = [self.base_worker, *(w for _, w in fit)]
        lat = max(max(w.warm_s.get("latency", 1e-3) for w in runners), 1e-6)
        thr = max(max(w.warm_s.get("throughput", 1e-3) for w in runners), 1e-6)
        # Aim for three rounds inside this group's share; the deadline cuts it short anyway.
        turn = max(share_end - time.monotonic(), 0.0) / (3 * len(runners)) - QUIESCE_S
        try:
            res = interleave(
                runners,
                rounds=MAX_ROUNDS,
                latency_iters=int(min(50, max(3, 0.5 * turn / lat))),
                throughput_iters=int(min(5, max(1, 0.5 * turn / thr))),
                batch=self.batch,
                threads=0,
                deadline=share_end,
            )
        except (WorkerFailed, WorkerTimeout) as exc:
            self.timed_out += [a.cand.label for a, _ in fit]
            self.say(f"timing stopped: {exc}")
            self.broken = not self.base_worker.alive()
            return
        self.base_stats = res.stats(self.baseline.label)
        for a, w in fit:
            a.ratios.append(res.speedup(w.name, self.baseline.label))
            a.stats = res.stats(w.name)

    def rung(self, arms: Sequence[Arm], until: float) -> int:
        """Time ``arms`` (the baseline's own configuration is the baseline) in groups that
        fill the free worker slots; no group starts that would, at the pace of the last
        one, end past ``until``. Returns how many were reached."""
        todo = []
        for a in arms:
            if a.cand.label == self.baseline.label:
                continue
            self.arms[a.cand.label] = a
            if base(a.cand) not in self.checks:
                try:  # judgeable at all? (reduced precision needs a recorded budget)
                    tolerance_for(self.m, self.m.variant(a.cand.variant), a.cand.exact)
                except ValueError as exc:
                    self.note(a.cand, "error", str(exc))
            if base(a.cand) not in self.checks or self.passed(a.cand):
                todo.append(a)
        reached = 0
        while todo and not self.broken:
            now = time.monotonic()
            stop = until if self.base_stats is not None else max(until, self.pool.deadline)
            if now + (self.group_s[-1] if self.group_s else 0.0) > stop:
                break
            size = max(1, min(self.pool.free(), GROUP_MAX - 1))
            # Each group times for its share of what is left, so later groups get theirs.
            share = (until - now) / math.ceil(len(todo) / size)
            group, todo = todo[:size], todo[size:]
            self.group(group, until, now + share)
            reached += len(group)
        for a in todo:
            if base(a.cand) not in self.checks:
                self.note(a.cand, "skipped", "not reached within the time budget")
        return reached

    def best(self, n: int) -> list[Arm]:
        timed = [a for a in self.arms.values() if a.ratios]
        return sorted(timed, key=lambda a: -a.score(self.objective))[:n]
