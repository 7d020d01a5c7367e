"""``handoff tune``: find how this host runs a bundle fastest, inside the bundle's own checks.

1. Gate: every (variant, engine, precision) this host offers re-runs the bundle's golden
   inputs and is judged by the bundle's tolerance (exact arithmetic) or accuracy budget
   (reduced precision). A candidate that fails, or that an engine cannot compile, is out.
2. Screen: when candidates × thread counts exceed :data:`SWEEP_MAX`, a short interleaved run
   at all cores keeps the fastest :data:`SCREEN_KEEP`.
3. Sweep: the survivors × thread counts (1, 2, 4 … physical cores) and, for throughput, ×
   parallel sessions (streams), each in its own process, timed interleaved beside the
   untuned default; the best median per-round ratio against that default wins.
The result is a host profile (:mod:`labkit.runtime.profile`), never a change to the bundle.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labkit.bundle.integrity import VerifiedBundle, verify
from labkit.errors import LabkitError
from labkit.runtime import engines, profile
from labkit.runtime.bench import (
    QUIESCE_S,
    WorkerRunner,
    bench_feeds,
    interleave,
    write_inputs,
)
from labkit.runtime.cost import cost
from labkit.runtime.cost import price_per_core_hour as price_per_core_hour_from
from labkit.runtime.engines import Candidate
from labkit.runtime.model import Model, default_threads

OBJECTIVES = ("latency", "throughput")
SCREEN_KEEP = 2
# Up to this many configurations are timed without screening first.
SWEEP_MAX = 6
# Shares of the budget: golden checks stop being started after GATE_SHARE of it; screening
# gets SCREEN_SHARE of what is left after the gate.
GATE_SHARE = 0.35
SCREEN_SHARE = 0.4
DEFAULT_BUDGET_S = 60.0
MAX_ROUNDS = 5
# Closing workers and writing the profile take a moment after the last round.
SAFETY_S = 1.5
# A throughput call should take about this long, so a round of many runners stays short.
THROUGHPUT_CALL_S = 0.25


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4 … below ``cores``, and ``cores`` itself."""
    out, t = [], 1
    while t < cores:
        out.append(t)
        t *= 2
    return [*out, cores]


def _gate(
    vb: VerifiedBundle, cands: Sequence[Candidate], until: float
) -> tuple[list[Candidate], list[dict[str, Any]], float]:
    """Golden self-test of each candidate on this host; (passed, table rows, s per sample).

    Candidates not reached by ``until`` (``time.monotonic()``) are skipped, and say so.
    """
    passed: list[Candidate] = []
    rows: list[dict[str, Any]] = []
    per_sample = math.inf
    rows_in_golden = int(vb.manifest.golden.rows or 1)
    for c in cands:
        if passed and time.monotonic() > until:
            rows.append(
                {
                    "candidate": c.to_dict(),
                    "label": c.label,
                    "check": "skipped",
                    "reason": "not reached within the time budget",
                }
            )
            continue
        t0 = time.perf_counter()
        try:
            report = Model(vb, None, None, candidate=c).self_test()
        except Exception as exc:  # noqa: BLE001 - any engine failure only rules it out
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            rows.append(
                {
                    "candidate": c.to_dict(),
                    "label": c.label,
                    "check": "error",
                    "reason": f"{type(exc).__name__}: {first[:300]}",
                }
            )
            continue
        per_sample = min(per_sample, (time.perf_counter() - t0) / max(rows_in_golden, 1))
        worst = max((o["max_rel"] for o in report.outputs.values()), default=0.0)
        rows.append(
            {
                "candidate": c.to_dict(),
                "label": c.label,
                "check": "pass" if report.ok else "fail",
                "max_rel": worst,
                "tolerance": report.tolerance.to_dict() if report.tolerance else None,
                **({"reason": "; ".join(report.failures)} if not report.ok else {}),
            }
        )
        if report.ok:
            passed.append(c)
    return passed, rows, per_sample


def _measure(
    vb: VerifiedBundle,
    configs: Sequence[Candidate],
    baseline: Candidate,
    feeds: Mapping[str, Any],
    batch: int,
    objective: str,
    deadline: float,
    tmp: Path,
) -> dict[str, dict[str, Any]]:
    """Time ``configs`` (the baseline among them) interleaved; stats and ratio per label."""
    models: dict[str, Path] = {}
    runners: list[WorkerRunner] = []
    todo = list(dict.fromkeys([baseline, *configs]))
    try:
        for c in todo:
            if c.variant not in models:
                models[c.variant] = tmp / f"{c.variant}.onnx"
                models[c.variant].write_bytes(vb.read(vb.manifest.variant(c.variant).file))
            runners.append(
                WorkerRunner(
                    c.label,
                    models[c.variant],
                    feeds,
                    threads=c.threads,
                    warmup=1,
                    engine=c.engine,
                    precision=c.precision,
                    streams=c.streams,
                )
            )
        lat = max(r.warm_s.get("latency", 1e-3) for r in runners)
        thr = max(r.warm_s.get("throughput", 1e-3) for r in runners)
        left = max(deadline - time.monotonic(), 1.0)
        # Aim for three rounds inside what is left; the deadline cuts it short anyway.
        turn = left / (3 * len(runners)) - QUIESCE_S
        lat_iters = int(min(50, max(3, 0.5 * turn / max(lat, 1e-6))))
        thr_iters = int(min(5, max(1, 0.5 * turn / max(thr, 1e-6))))
        res = interleave(
            runners,
            rounds=MAX_ROUNDS,
            latency_iters=lat_iters,
            throughput_iters=thr_iters,
            batch=batch,
            threads=0,
            deadline=deadline,
        )
    finally:
        for r in runners:
            r.close()
    out = {}
    for c in todo:
        sp = res.speedup(c.label, baseline.label)
        out[c.label] = {
            "candidate": c,
            "stats": res.stats(c.label),
            "vs_default": sp,
            "score": sp["p50" if objective == "latency" else "throughput"],
            "rounds": res.rounds,
        }
    return out


def tune(
    path: str | os.PathLike[str],
    *,
    objective: str = "latency",
    budget_s: float = DEFAULT_BUDGET_S,
    batch: int = 64,
    engine_names: Sequence[str] | None = None,
    price_per_core_hour: float | None = None,
    write: bool = True,
    extra_engines: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Tune the bundle at ``path`` for this host; return (and by default write) its profile."""
    if objective not in OBJECTIVES:
        raise LabkitError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if budget_s <= 0:
        raise LabkitError(f"budget {budget_s} s must be > 0 (default {DEFAULT_BUDGET_S:g})")
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    deadline = t0 + budget_s
    vb = verify(path)
    m = vb.manifest
    here = profile.host()
    cores = int(here["physical_cores"])
    names = list(engine_names) + list(extra_engines) if engine_names is not None else None
    cands = engines.candidates(m, here, engine_names=names)
    say(f"golden check of {len(cands)} candidate(s) on this host")
    passed, table, per_sample = _gate(vb, cands, t0 + GATE_SHARE * budget_s)
    baseline = Candidate(m.default_variant, threads=default_threads(m) or cores)

    if not passed:
        raise LabkitError(
            "no way of running this bundle passed its golden check on this host: "
            + "; ".join(f"{r['label']}: {r.get('reason')}" for r in table)
        )
    # Throughput calls sized to about THROUGHPUT_CALL_S each, so big models fit the budget.
    batch = max(1, min(batch, int(THROUGHPUT_CALL_S / max(per_sample, 1e-9))))
    golden = vb.read_npz(m.golden.inputs)
    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="labkit-tune-") as tmp_name:
        tmp = Path(tmp_name)
        feeds = write_inputs(tmp, bench_feeds(golden, batch))
        survivors = passed
        if len(passed) > SCREEN_KEEP and len(passed) * len(thread_counts(cores)) > SWEEP_MAX:
            say(f"screening {len(passed)} candidates at {cores} threads")
            screen_end = time.monotonic() + (deadline - time.monotonic()) * SCREEN_SHARE
            full = [c.with_threads(cores) for c in passed]
            res = _measure(vb, full, baseline, feeds, batch, objective, screen_end, tmp)
            ranked = sorted(full, key=lambda c: -res[c.label]["score"])
            survivors = [Candidate(c.variant, c.engine, c.precision) for c in ranked[:SCREEN_KEEP]]
        configs = [c.with_threads(t) for c in survivors for t in thread_counts(cores)]
        if objective == "throughput":
            configs += [
                c.with_threads(t, s)
                for c in survivors
                for t in thread_counts(cores)
                for s in range(2, cores // t + 1)
                if t * s <= cores
            ]
        say(f"timing {len(configs)} configuration(s) interleaved, objective {objective}")
        measured = _measure(
            vb, configs, baseline, feeds, batch, objective, deadline - SAFETY_S, tmp
        )
    best = max(measured.values(), key=lambda r: r["score"])
    price = price_per_core_hour_from(price_per_core_hour)

    def row(r: dict[str, Any]) -> dict[str, Any]:
        c: Candidate = r["candidate"]
        used = (c.threads or cores) * c.streams
        return {
            "candidate": c.to_dict(),
            "label": c.label,
            "stats": r["stats"],
            "vs_default": r["vs_default"],
            "cost": cost(r["stats"]["throughput_per_s"], min(used, cores), price),
        }

    ranking = sorted(measured.values(), key=lambda r: -r["score"])
    doc: dict[str, Any] = {
        "profile_version": profile.PROFILE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"name": m.name, "version": m.version, "manifest_digest": m.digest},
        "host": {**here, "key": profile.host_key(here)},
        "engines": engines.versions(),
        "objective": objective,
        "budget_s": budget_s,
        "method": (
            f"golden check per candidate, then {best['rounds']} interleaved rounds, "
            f"each configuration in its own process; batch-1 latency and batch-{batch} "
            "throughput; ratios are medians of per-round ratios to the untuned default"
        ),
        "throughput_batch": batch,
        "chosen": row(best),
        "default": row(measured[baseline.label]),
        "runners_up": [row(r) for r in ranking[1:]],
        "golden_checks": table,
    }
    doc["elapsed_s"] = round(time.monotonic() - t0, 2)
    if write:
        where = profile.write(profile.profile_path(vb.root, m, doc["host"]["key"]), doc)
        doc["path"] = str(where)
    return doc


def ensure_tuned(
    path: str | os.PathLike[str],
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    objective: str = "throughput",
    on_note: Callable[[str], None] | None = None,
) -> Path | None:
    """Tune the bundle unless this host already has a matching profile (``serve --tune``).

    Servers favour throughput: their micro-batcher and parallel sessions make use of it.
    """
    vb = verify(path)
    found, note = profile.resolve(vb.root, vb.manifest, "auto")
    if found is not None:
        return found.path
    if note and on_note:
        on_note(note)
    doc = tune(
        path,
        objective=objective,
        budget_s=budget_s,
        progress=(lambda msg: on_note(f"{vb.manifest.title}: tune: {msg}")) if on_note else None,
    )
    return Path(doc["path"])
