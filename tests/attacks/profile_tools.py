"""Hostile host profiles for tests/attacks/test_tune_*.py and
test_profile_*.py, written raw (as an attacker would: not through ``profile.write``, which
validates), a process counter for the tuner's workers."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from labkit.runtime import engines, profile, verify


def profile_doc(bundle: Path, **chosen: Any) -> dict[str, Any]:
    """A well-formed profile for ``bundle`` on this host choosing ``chosen`` (fields of the
    candidate: variant, engine, precision, threads, streams)."""
    m = verify(bundle).manifest
    h = profile.host()
    cand = {
        "variant": m.default_variant,
        "engine": "onnxruntime",
        "precision": "fp32",
        "threads": 1,
        "streams": 1,
        **chosen,
    }
    row = {
        "candidate": cand,
        "label": "hand-written",
        "stats": {"p50_ms": 1.0, "throughput_per_s": 1.0},
        "vs_default": {"p50": 1.0, "throughput": 1.0},
        "cost": {},
    }
    return {
        "profile_version": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "bundle": {"name": m.name, "version": m.version, "manifest_digest": m.digest},
        "host": {**h, "key": profile.host_key(h)},
        "engines": engines.versions(),
        "objective": "latency",
        "budget_s": 1.0,
        "elapsed_s": 1.0,
        "method": "hand-written",
        "throughput_batch": 1,
        "chosen": row,
        "default": row,
        "runners_up": [],
        "golden_checks": [],
    }


def plant(bundle: Path, content: dict[str, Any] | str | bytes, where: Path | None = None) -> Path:
    """Write ``content`` raw where load()/serve look for this host's profile of ``bundle``."""
    m = verify(bundle).manifest
    path = where or profile.profile_path(bundle, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def tree_size(pid: int) -> int:
    """``pid`` and all its live descendants."""
    kids, todo, seen = _children(), [pid], 0
    while todo:
        p = todo.pop()
        seen += 1
        todo += kids.get(p, [])
    return seen


class ProcessWatch:
    """Samples a process while it runs: ``peak`` is the most processes seen at once in it
    and its direct children (the tuner and its workers), ``peak_tree`` counts every
    descendant too (OpenVINO's native code forks a short-lived helper while it loads)."""

    def __init__(self, proc: subprocess.Popen[Any], every_s: float = 0.02) -> None:
        self.peak = self.peak_tree = 0
        self._proc, self._every = proc, every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._proc.poll() is None:
            self.peak = max(self.peak, 1 + len(_children().get(self._proc.pid, [])))
            self.peak_tree = max(self.peak_tree, tree_size(self._proc.pid))
            time.sleep(self._every)

    def join(self) -> None:
        self._thread.join()
