"""What machine this is: CPU model, the instruction-set flags that decide INT8 speed, and how
many cores this process may use (affinity mask and cgroup CPU quota): the one home every
thread count is chosen from."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "flags": sorted(f for f in _FLAGS if f in flags),
    }


def library_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(mountinfo: Path) -> list[tuple[str, Path, str, str]]:
    """(hierarchy root, mount point, fs type, super options) of each cgroup mount."""
    out: list[tuple[str, Path, str, str]] = []
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or not rest[0].startswith("cgroup"):
            continue
        out.append((_unescape(fields[3]), Path(_unescape(fields[4])), rest[0], rest[2]))
    return out


def _levels(mount_root: str, mount_point: Path, group: str) -> list[Path]:
    """The directories of ``group`` and of each parent up to the mount point: a limit set
    on any of them applies to this process."""
    rel = Path(group).relative_to(mount_root) if Path(group).is_relative_to(mount_root) else None
    leaf = mount_point / rel if rel is not None else mount_point
    out = [leaf]
    while out[-1] != mount_point and mount_point in out[-1].parents:
        out.append(out[-1].parent)
    return out


def _read_ints(path: Path) -> list[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(256).split()
    except OSError:
        return []


def cgroup_cpu_limit(
    cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
    mountinfo: str | os.PathLike[str] = "/proc/self/mountinfo",
) -> float | None:
    """CPUs' worth of time this process's cgroups allow (quota / period, the tightest over
    the cgroup and its parents), or None when no quota is set.

    cgroup v2 (``cpu.max``: ``"max 100000"`` or ``"200000 100000"``) and v1 (CFS
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, ``-1`` = none). The affinity mask says
    which CPUs a process may run on; a container's quota says how much of them it gets:
    threads beyond the quota are throttled, not parallel.
    """
    try:
        lines = Path(cgroup).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    groups: dict[str, str] = {}  # controller ("" for v2) -> group path
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups.setdefault(controller, parts[2])
    limits: list[float] = []
    for root, point, fstype, options in _mounts(Path(mountinfo)):
        if fstype == "cgroup2" and "" in groups:
            for level in _levels(root, point, groups[""]):
                words = _read_ints(level / "cpu.max")
                if len(words) == 2 and words[0] != "max":
                    with contextlib.suppress(ValueError):
                        quota, period = int(words[0]), int(words[1])
                        if quota > 0 and period > 0:
                            limits.append(quota / period)
        elif fstype == "cgroup" and "cpu" in options.split(",") and "cpu" in groups:
            for level in _levels(root, point, groups["cpu"]):
                quota_w = _read_ints(level / "cpu.cfs_quota_us")
                period_w = _read_ints(level / "cpu.cfs_period_us")
                with contextlib.suppress(ValueError, IndexError):
                    quota, period = int(quota_w[0]), int(period_w[0])
                    if quota > 0 and period > 0:
                        limits.append(quota / period)
    return min(limits) if limits else None


def usable_cpus() -> int:
    """Logical CPUs this process can keep busy: its affinity mask, capped by its cgroup CPU
    quota (rounded up, as Go and the JVM do). The one home every thread count starts from."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        usable = min(usable, math.ceil(quota))
    return max(1, usable)


def physical_cores() -> int:
    """Cores this process may run on, counting each physical core once (no SMT siblings),
    within its cgroup CPU quota (see :func:`usable_cpus`)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    siblings = cores = 0
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "siblings":
                    siblings = int(value)
                elif key == "cpu cores":
                    cores = int(value)
                if siblings and cores:
                    break
    except (OSError, ValueError):
        pass
    per_core = siblings // cores if siblings and cores and siblings >= cores else 1
    physical = max(1, usable // max(per_core, 1))
    # A quota of N CPUs' time keeps at most N threads busy, whatever the cores are.
    return max(1, min(physical, usable_cpus()))
