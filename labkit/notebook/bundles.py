"""Summaries of the bundles in a store, for the JupyterLab side panel (``list_bundles``).

Reading and listing are ``labkit.bundle``'s (the strict reader, ``default_store``,
``labkit.bundle.listing.list_bundles``); this module only shapes the panel's JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.bundle import Manifest, Store, default_store
from labkit.bundle.listing import BundleEntry
from labkit.bundle.listing import list_bundles as _list_entries

__all__ = ["default_store", "list_bundles", "summarize_manifest"]


def summarize_manifest(m: Manifest) -> dict[str, Any]:
    """The fields the side panel shows for one bundle version."""
    return {
        "version": m.version,
        "created": m.created,
        "default_variant": m.default_variant,
        "variants": [v.name for v in m.variants],
    }


def _panel_entry(e: BundleEntry, versions: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": e.name,
        "versions": versions,
        "latest": e.version,
        "path": str(e.path),
    }
    if e.manifest is None:
        entry.update(
            {"default_variant": None, "speedup": None, "parity_ok": None, "problem": e.problem}
        )
    else:
        entry.update(summarize_manifest(e.manifest))
        entry.update({"speedup": e.speedup_p50, "parity_ok": e.parity_ok})
    return entry


def list_bundles(root: Path) -> list[dict[str, Any]]:
    """One entry per bundle name: versions (ascending) and a summary of the latest."""
    store = Store(root)
    return [_panel_entry(e, store.versions(e.name)) for e in _list_entries(store, latest_only=True)]
