"""What the JupyterLab Bundles panel shows: the bundles of a store (``list_bundles``), one
bundle's report (``bundle_report``), and what changed from the version before it
(``bundle_diff``, the same words as ``handoff diff``).

Reading, listing and comparing are ``labkit.bundle``'s and ``labkit.runtime``'s (the strict
reader, ``verify``, ``labkit.runtime.drift``); this module only finds the bundle the panel
names, refusing names and versions the store could not have written, and shapes the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.bundle import NAME_RE, Manifest, Store, default_store
from labkit.bundle.integrity import verify
from labkit.bundle.listing import BundleEntry
from labkit.bundle.listing import list_bundles as _list_entries
from labkit.bundle.semver import is_version
from labkit.errors import InputError, StoreError

__all__ = [
    "REPORT",
    "bundle_diff",
    "bundle_report",
    "default_store",
    "list_bundles",
    "summarize_manifest",
]

REPORT = "report.md"


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


def _version(store: Store, name: str, version: str | None) -> str:
    """``version`` of bundle ``name`` (default: the latest), checked to be one the store
    holds; a name or version that is not one the store could write is refused before it
    touches a path."""
    if not NAME_RE.fullmatch(name):
        raise InputError(f"{name!r} is not a bundle name (it must match {NAME_RE.pattern})")
    if version is not None and not is_version(version):
        raise InputError(f"{version!r} is not a version: give one like 1.2.0")
    versions = store.versions(name)
    if not versions:
        raise StoreError(f"no bundle named {name!r} in {store.root}")
    chosen = version or versions[-1]
    if chosen not in versions:
        raise StoreError(
            f"no version {chosen} of {name!r} in {store.root}; it has: {', '.join(versions)}"
        )
    return chosen


def bundle_report(root: Path, name: str, version: str | None = None) -> dict[str, Any]:
    """The bundle's ``report.md``, read from the verified bundle (its digest checked)."""
    store = Store(root)
    chosen = _version(store, name, version)
    bundle = verify(store.path(name, chosen))
    if not any(f.path == REPORT for f in bundle.manifest.files):
        raise StoreError(f"{name} {chosen} has no {REPORT} (it lists no such file)")
    text = bundle.read(REPORT).decode("utf-8", errors="replace")
    return {"name": name, "version": chosen, "path": str(bundle.root), "markdown": text}


def bundle_diff(
    root: Path, name: str, version: str | None = None, against: str | None = None
) -> dict[str, Any]:
    """``handoff diff`` of ``against`` (default: the version before ``version``) and
    ``version`` (default: the latest): the JSON and the lines the CLI prints."""
    from labkit.runtime.drift import bundle_diff as diff_bundles
    from labkit.runtime.drift import diff_lines

    store = Store(root)
    newer = _version(store, name, version)
    if against is None:
        versions = store.versions(name)
        i = versions.index(newer)
        if i == 0:
            raise StoreError(
                f"{name} {newer} is the oldest version in {store.root}: nothing before it to diff"
            )
        older = versions[i - 1]
    else:
        older = _version(store, name, against)
    d = diff_bundles(store.path(name, older), store.path(name, newer))
    return {
        "name": name,
        "from_version": older,
        "to_version": newer,
        "diff": d,
        "lines": diff_lines(d),
    }
