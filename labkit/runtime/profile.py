"""Host profiles: how ``handoff tune`` found this host runs a bundle fastest.

A profile lives outside the immutable bundle, beside the store's bundles:
``STORE/.tuning/NAME/VERSION/<host-key>.json`` (``.tuning`` is not a valid bundle name, so
store listings skip it, and verification never looks outside the bundle's directory). It is
only used while it still describes this bundle on this host: its ``manifest_digest`` (the
bundle's ``manifest_sha256``), the host key (CPU model, flags, cores) and the engine versions
must all match, otherwise it is ignored with a one-line note.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.bundle.manifest import Manifest
from labkit.errors import LabkitError
from labkit.runtime import engines
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import cpu_info, physical_cores

PROFILE_VERSION = 1
TUNING_DIR = ".tuning"
PROFILE_DIR_ENV = "LABKIT_PROFILE_DIR"
MAX_PROFILE_BYTES = 1 << 20


def host() -> dict[str, Any]:
    """The facts a profile is keyed on: what makes one CPU run a graph unlike another."""
    cpu = cpu_info()
    return {
        "model": cpu["model"],
        "machine": cpu["machine"],
        "flags": cpu["flags"],
        "logical_cores": cpu["cores"],
        "physical_cores": physical_cores(),
    }


def host_key(h: Mapping[str, Any] | None = None) -> str:
    h = h or host()
    keyed = {k: h.get(k) for k in ("model", "machine", "flags", "logical_cores", "physical_cores")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def profile_path(bundle_root: Path, manifest: Manifest, key: str | None = None) -> Path:
    """``STORE/.tuning/NAME/VERSION/<host-key>.json`` for a bundle at ``STORE/NAME/VERSION``,
    or ``$LABKIT_PROFILE_DIR/NAME/VERSION/<host-key>.json`` when that is set (a store
    mounted read-only, as in the container image, keeps its profiles elsewhere)."""
    elsewhere = os.environ.get(PROFILE_DIR_ENV)
    base = Path(elsewhere) if elsewhere else Path(bundle_root).resolve().parent.parent / TUNING_DIR
    return base / manifest.name / manifest.version / f"{key or host_key()}.json"


@dataclass(frozen=True)
class Profile:
    path: Path
    doc: dict[str, Any]

    @property
    def candidate(self) -> Candidate:
        return Candidate.from_dict(self.doc["chosen"]["candidate"])

    def describe(self) -> str:
        c, s = self.candidate, self.doc["chosen"].get("stats") or {}
        return (
            f"{c.label} ({self.doc.get('objective')}; p50 {s.get('p50_ms', 0):.3f} ms, "
            f"{s.get('throughput_per_s', 0):.0f}/s) from {self.path}"
        )


def write(path: Path, doc: Mapping[str, Any]) -> Path:
    """Atomically: a reader sees the old profile or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def mismatch(doc: Mapping[str, Any], manifest: Manifest) -> str | None:
    """Why a profile does not describe this bundle on this host (None when it does)."""
    bundle = doc.get("bundle") or {}
    if bundle.get("manifest_digest") != manifest.digest:
        return (
            f"it was tuned for another bundle (manifest digest "
            f"{str(bundle.get('manifest_digest'))[:12]}…, this one "
            f"{manifest.digest[:12]}…)"
        )
    here = host()
    if (doc.get("host") or {}).get("key") != host_key(here):
        return (
            f"it was tuned on another CPU ({(doc.get('host') or {}).get('model')!r}, "
            f"this host: {here['model']!r}, {here['physical_cores']} cores)"
        )
    now = engines.versions()
    if doc.get("engines") != now:
        return f"engine versions changed (tuned with {doc.get('engines')}, now {now})"
    chosen = Candidate.from_dict((doc.get("chosen") or {}).get("candidate") or {})
    if chosen.variant not in {v.name for v in manifest.variants}:
        return f"it names variant {chosen.variant!r}, which the bundle does not have"
    return None


def read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise LabkitError(f"cannot read the tuning profile {path}: {exc.strerror}") from None
    try:
        doc = json.loads(data) if len(data) <= MAX_PROFILE_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("profile_version") != PROFILE_VERSION:
        raise LabkitError(
            f"{path} is not a labkit tuning profile (version "
            f"{PROFILE_VERSION}); run 'handoff tune' again to rewrite it"
        )
    return doc


def resolve(
    root: Path, manifest: Manifest, profile: str | os.PathLike[str] | None
) -> tuple[Profile | None, str | None]:
    """(the profile to use, a one-line note on why none is used) for the bundle at ``root``;
    ``profile="auto"`` looks for this host's profile beside the store, ``None`` uses none, a
    path uses that file."""
    if profile is None:
        return None, None
    if str(profile) == "auto":
        path = profile_path(root, manifest)
        if not path.is_file():
            return None, None
    else:
        path = Path(profile)
    try:
        doc = read(path)
    except LabkitError as exc:
        if str(profile) == "auto":
            return None, f"tuning profile ignored: {exc}"
        raise
    why = mismatch(doc, manifest)
    if why:
        return None, f"tuning profile {path} ignored: {why}; run 'handoff tune' again"
    return Profile(path, doc), None
