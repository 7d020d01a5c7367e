"""``handoff tune``: find how this host runs a bundle fastest, inside the bundle's own checks
and inside its time budget, whatever the bundle.

A bounded search (successive halving) over candidates × threads × streams. Every candidate
runs in its own worker process; at most ``max(2, cores)`` are alive at once, none is started
past the deadline, and worker start-up, golden checks and warm-up all count against the
budget (:mod:`labkit.runtime.tune_workers` kills a worker that does not answer in time):

0. **Screen.** The untuned default (the baseline every ratio is taken against) starts first
   and stays up. Then, in groups that fill the other worker slots, each (variant, engine,
   precision) this host offers re-runs the bundle's golden inputs, judged by the bundle's
   tolerance (exact arithmetic) or accuracy budget (reduced precision) — a candidate that
   fails, or that its engine cannot compile, is out — and is timed at all cores, interleaved
   with the baseline. Candidates not reached in this rung's share of the budget are skipped,
   and say so (the default variant's are tried first).
1. **Sweep.** The best :data:`SCREEN_KEEP` × thread counts (1, 2, 4 … cores) and, for
   throughput, × parallel sessions (streams, powers of two, threads × streams ≤ cores).
2. **Final.** The best :data:`FINALISTS` timed again while time remains; a configuration's
   score is the mean of its measured ratios to the baseline.
The result is a host profile (:mod:`labkit.runtime.profile`), never a change to the bundle.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labkit.bundle.integrity import verify
from labkit.bundle.manifest import Manifest
from labkit.bundle.profile import OBJECTIVES, HostProfile
from labkit.errors import LabkitError
from labkit.runtime import engines, profile
from labkit.runtime.cost import cost
from labkit.runtime.cost import price_per_core_hour as price_per_core_hour_from
from labkit.runtime.engines import Candidate
from labkit.runtime.model import default_threads
from labkit.runtime.tune_search import HARD_GRACE_S, Arm, Search, base
from labkit.runtime.tune_workers import Pool

__all__ = ["DEFAULT_BUDGET_S", "OBJECTIVES", "ensure_tuned", "thread_counts", "tune"]

DEFAULT_BUDGET_S = 60.0
SCREEN_KEEP = 2
FINALISTS = 3
# Where each rung ends, as shares of what is left of the budget once the untuned default
# is up: the last ends with the budget. A worker still being waited on HARD_GRACE_S past
# it is killed, and closing and writing take well under a second: wall ≤ budget + 3 s.
RUNG_ENDS = (0.6, 0.85, 1.0)


def thread_counts(cores: int) -> list[int]:
    """1, 2, 4 … below ``cores``, and ``cores`` itself."""
    out, t = [], 1
    while t < cores:
        out.append(t)
        t *= 2
    return [*out, cores]


def _streams(threads: int, cores: int, objective: str) -> list[int]:
    """1, and for throughput 2, 4 … while threads × streams ≤ cores."""
    out, s = [1], 2
    while objective == "throughput" and threads * s <= cores:
        out.append(s)
        s *= 2
    return out


def _order(cands: Sequence[Candidate], m: Manifest) -> list[Candidate]:
    """The likeliest winners first, so they are reached when the budget cannot reach them
    all: by :func:`engines.speed_prior` (reduced precision this CPU computes natively, then
    quantized graphs, then exact fp32), then by the variant's speed-up at handoff, the
    default variant and engine first among equals. (The default variant on the default
    engine is timed anyway: it is the baseline.) With the default variant first, a tune of
    HF-BERT on the 2-core Xeon did not reach OpenVINO bf16 within its budget (tuned 2.69x
    of eager at batch 64, against 8.72x for the best configuration known there)."""

    def speed(name: str) -> float:
        sp = m.variant(name).speedup or {}
        x = sp.get("p50")
        return float(x) if isinstance(x, (int, float)) else 0.0

    return sorted(
        cands,
        key=lambda c: (
            engines.speed_prior(c, m.variant(c.variant).precision != engines.EXACT),
            -speed(c.variant),
            c.variant != m.default_variant,
            c.engine != engines.DEFAULT_ENGINE,
        ),
    )


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
    profile_dir: str | os.PathLike[str] | None = None,
    exact_only: bool = False,
) -> dict[str, Any]:
    """Tune the bundle at ``path`` for this host; return (and by default write) its profile.

    Wall time stays within ``budget_s`` plus a few seconds whatever the bundle (verifying
    its files counts too). ``exact_only`` leaves reduced precision out (what a server with
    trusted keys runs only when allowed). ``profile_dir``: see :func:`profile.profile_path`.
    """
    if objective not in OBJECTIVES:
        raise LabkitError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if not budget_s > 0:
        raise LabkitError(f"budget {budget_s} s must be > 0 (default {DEFAULT_BUDGET_S:g})")
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    end = t0 + budget_s
    vb = verify(path)
    m = vb.manifest
    here = profile.host()
    cores = int(here["physical_cores"])
    names = list(engine_names) + list(extra_engines) if engine_names is not None else None
    cands = _order(engines.candidates(m, here, engine_names=names), m)
    limit = max(2, cores)
    baseline = Candidate(m.default_variant, threads=default_threads(m) or cores)
    pool = Pool(limit, end, wait_until=end + HARD_GRACE_S)
    with tempfile.TemporaryDirectory(prefix="labkit-tune-") as tmp, pool:
        s = Search(vb, pool, Path(tmp), objective, baseline, say)
        for c in cands:
            if exact_only and not c.exact:
                s.note(c, "skipped", "reduced precision is not allowed here (trusted keys)")
        cands = [c for c in cands if c.exact or not exact_only]
        say(f"{len(cands)} candidate(s); at most {limit} worker processes at once")
        s.start_baseline(batch, end)
        now = time.monotonic()
        ends = [now + share * (end - now) for share in RUNG_ENDS]
        screen = [Arm(c.with_threads(cores)) for c in cands]
        say(f"screen: golden check and timing of {len(screen)} candidate(s) at {cores} threads")
        rungs = [{"rung": "screen", "arms": len(screen), "reached": s.rung(screen, ends[0])}]
        if not any(row["check"] == "pass" for row in s.checks.values()):
            judged = [r for r in s.checks.values() if r["check"] in ("fail", "error")]
            why = "; ".join(f"{r['label']}: {r.get('reason')}" for r in judged)
            if len(judged) < len(s.checks):
                raise LabkitError(
                    f"none of the {len(judged)} candidate(s) checked within the budget passed "
                    f"its golden check ({why}); {len(s.checks) - len(judged)} were not "
                    "reached: give a larger --budget-s"
                )
            raise LabkitError(
                f"no way of running this bundle passed its golden check on this host: {why}"
            )
        survivors = [base(a.cand) for a in s.best(SCREEN_KEEP)] or [base(baseline)]
        sweep = [
            Arm(c.with_threads(t, n))
            for c in survivors
            for t in sorted(thread_counts(cores), reverse=True)
            for n in _streams(t, cores, objective)
            if c.with_threads(t, n).label not in s.arms
        ]
        say(f"sweep: {len(sweep)} thread/stream configuration(s) of the best {len(survivors)}")
        rungs.append({"rung": "sweep", "arms": len(sweep), "reached": s.rung(sweep, ends[1])})
        final = s.best(FINALISTS)
        say(f"final: the best {len(final)} timed again")
        rungs.append({"rung": "final", "arms": len(final), "reached": s.rung(final, ends[2])})
        search = {
            "method": "successive halving",
            "cores": cores,
            "max_workers": limit,
            "workers_started": pool.started,
            "workers_peak": pool.peak,
            "rungs": rungs,
            "timed_out": s.timed_out,
            "not_timed": s.untimed,
        }
    return _profile_doc(
        s, here, objective, budget_s, t0, price_per_core_hour, search, write, profile_dir
    )


def _profile_doc(
    s: Search,
    here: Mapping[str, Any],
    objective: str,
    budget_s: float,
    t0: float,
    price_per_core_hour: float | None,
    search: dict[str, Any],
    write: bool,
    profile_dir: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The profile of a finished search (written when ``write``), as a dict."""
    m, cores = s.m, int(here["physical_cores"])
    if s.base_stats is None:
        raise LabkitError(
            f"the budget of {budget_s:g} s ran out before any configuration was timed "
            "beside the untuned default; give a larger --budget-s"
        )
    key = "p50" if objective == "latency" else "throughput"
    rows = [(a.cand, a.stats or {}, a.vs_default()) for a in s.arms.values() if a.ratios]
    untuned = (s.baseline, s.base_stats, {"p50": 1.0, "throughput": 1.0})
    eligible = [r for r in rows if s.passed(r[0])] + ([untuned] if s.passed(s.baseline) else [])
    if not eligible:
        raise LabkitError("no configuration that passed its golden check could be timed")
    ranking = sorted([*rows, untuned], key=lambda r: -r[2][key])
    best = max(eligible, key=lambda r: r[2][key])
    price = price_per_core_hour_from(price_per_core_hour)

    def row(r: tuple[Candidate, Mapping[str, float], Mapping[str, float]]) -> dict[str, Any]:
        c, stats, vs = r
        used = (c.threads or cores) * c.streams
        return {
            "candidate": c.to_dict(),
            "label": c.label,
            "stats": dict(stats),
            "vs_default": dict(vs),
            "cost": cost(stats["throughput_per_s"], min(used, cores), price),
        }

    sweep = "thread counts and parallel sessions" if objective == "throughput" else "thread counts"
    doc: dict[str, Any] = {
        "profile_version": profile.PROFILE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"name": m.name, "version": m.version, "manifest_digest": m.digest},
        "host": {**here, "key": profile.host_key(here)},
        "engines": engines.versions(),
        "objective": objective,
        "budget_s": budget_s,
        "method": (
            f"successive halving in at most {search['max_workers']} worker processes: golden "
            f"check and a short timing of each candidate at {cores} threads, then "
            f"{sweep} of the best {SCREEN_KEEP}, then the best {FINALISTS} again; batch-1 "
            f"latency and batch-{s.batch} throughput, interleaved with the untuned default; "
            "ratios are medians of per-round ratios to it, averaged over rungs"
        ),
        "throughput_batch": s.batch,
        "chosen": row(best),
        "default": row(untuned),
        "runners_up": [row(r) for r in ranking if r[0] != best[0]],
        "golden_checks": list(s.checks.values()),
        "search": search,
    }
    doc["elapsed_s"] = round(time.monotonic() - t0, 2)
    prof = HostProfile.from_dict(doc)  # what is written is what every reader accepts
    if write:
        target = profile.profile_path(s.vb.root, m, doc["host"]["key"], directory=profile_dir)
        try:
            where = profile.write(target, prof)
        except OSError as exc:
            raise LabkitError(
                f"cannot write the tuning profile {target} ({exc.strerror}); for a read-only "
                f"store pass --profile-dir DIR or set ${profile.PROFILE_DIR_ENV}"
            ) from None
        doc["path"] = str(where)
    return doc


def ensure_tuned(
    path: str | os.PathLike[str],
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    objective: str = "throughput",
    on_note: Callable[[str], None] | None = None,
    profile_dir: str | os.PathLike[str] | None = None,
    trusted_keys: Sequence[Any] | None = None,
    allow_reduced_precision: bool = False,
) -> Path | None:
    """Tune the bundle unless this host already has a profile it may use (``serve --tune``):
    the same bounded search as ``handoff tune``. A tune that fails (nothing passed, the
    budget too small, a read-only store without a profile directory) is a note, not a
    refusal: the version is then served untuned. Servers favour throughput: their
    micro-batcher and parallel sessions make use of it.
    """
    vb = verify(path)
    found, note = profile.resolve(
        vb.root,
        vb.manifest,
        "auto",
        directory=profile_dir,
        trusted_keys=trusted_keys,
        allow_reduced_precision=allow_reduced_precision,
    )
    if found is not None:
        return found.path
    say = on_note or (lambda _msg: None)
    if note:
        say(note)
    try:
        doc = tune(
            path,
            objective=objective,
            budget_s=budget_s,
            progress=lambda msg: say(f"{vb.manifest.title}: tune: {msg}"),
            profile_dir=profile_dir,
            exact_only=trusted_keys is not None and not allow_reduced_precision,
        )
    except LabkitError as exc:
        say(f"{vb.manifest.title}: not tuned, serving untuned: {exc}")
        return None
    return Path(doc["path"])
