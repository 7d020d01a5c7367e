"""Summaries of the bundles in a store, for the JupyterLab side panel (``list_bundles``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["default_store", "list_bundles", "summarize_manifest"]

_MAX_MANIFEST = 4 * 1024 * 1024


def default_store(cwd: Path | None = None) -> Path:
    """``$LABKIT_STORE``, else ``bundles/`` in the kernel's working directory."""
    env = os.environ.get("LABKIT_STORE")
    if env:
        return Path(env).expanduser().resolve()
    return ((cwd or Path.cwd()) / "bundles").resolve()


def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _speedup(variant: dict[str, Any]) -> float | None:
    """Batch-1 p50 speed-up vs PyTorch: ``speedup.p50`` (also under ``benchmark``)."""
    bench = variant.get("benchmark")
    for holder in (variant, bench if isinstance(bench, dict) else {}):
        found = holder.get("speedup")
        if isinstance(found, dict):
            found = found.get("p50")
        if (value := _num(found if found is not None else holder.get("speedup_p50"))) is not None:
            return value
    return None


def _parity_ok(variant: dict[str, Any]) -> bool | None:
    parity = variant.get("parity")
    if isinstance(parity, dict):
        for key in ("ok", "passed"):
            if isinstance(parity.get(key), bool):
                return bool(parity[key])
    return None


def summarize_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The fields the side panel shows, read leniently from one manifest."""
    variants = [v for v in manifest.get("variants", []) if isinstance(v, dict)]
    default = manifest.get("default_variant")
    fallback: dict[str, Any] = variants[0] if variants else {}
    chosen = next((v for v in variants if v.get("name") == default), fallback)
    oks = [ok for ok in (_parity_ok(v) for v in variants) if ok is not None]
    return {
        "version": manifest.get("version"),
        "created": manifest.get("created"),
        "default_variant": default,
        "variants": [v.get("name") for v in variants],
        "speedup": _speedup(chosen),
        "parity_ok": all(oks) if oks else (True if variants else None),
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _MAX_MANIFEST:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_bundles(root: Path) -> list[dict[str, Any]]:
    """One entry per bundle name: versions (ascending) and a summary of the latest."""
    from labkit.bundle import Store
    from labkit.errors import LabkitError

    store = Store(root)
    out: list[dict[str, Any]] = []
    for name in store.names():
        try:
            versions = store.versions(name)
        except LabkitError:
            continue
        if not versions:
            continue
        latest = versions[-1]
        manifest = _read_json(root / name / latest / "manifest.json")
        entry: dict[str, Any] = {"name": name, "versions": versions, "latest": latest,
                                 "path": str(root / name / latest)}
        if manifest is None:
            entry.update({"default_variant": None, "speedup": None, "parity_ok": None,
                          "problem": "manifest.json missing or unreadable"})
        else:
            entry.update(summarize_manifest(manifest))
            entry["version"] = latest
        out.append(entry)
    return out
