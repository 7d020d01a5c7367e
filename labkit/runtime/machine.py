"""What machine this is: CPU model and the instruction-set flags that decide INT8 speed."""

from __future__ import annotations

import os
import platform
import sys
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


def physical_cores() -> int:
    """Cores this process may run on, counting each physical core once (no SMT siblings)."""
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
    return max(1, usable // max(per_core, 1))
