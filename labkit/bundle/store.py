"""The bundle store: ``STORE/NAME/VERSION/`` directories, and how versions are assigned."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labkit.bundle.aliases import Alias, read_alias, read_aliases
from labkit.bundle.changes import WORDING, major_reason
from labkit.bundle.integrity import read_manifest
from labkit.bundle.manifest import NAME_RE, Manifest
from labkit.bundle.parts import Fingerprint
from labkit.bundle.semver import Version, is_version
from labkit.bundle.storefiles import LocalFiles
from labkit.errors import StoreError

FIRST_VERSION = "1.0.0"


def default_store() -> Path:
    """``$LABKIT_STORE``, else ``bundles``; ``labkit.request.resolve_store`` resolves a
    relative one against the folder the user meant (kernel or shell)."""
    return Path(os.environ.get("LABKIT_STORE") or "bundles")


@dataclass(frozen=True)
class Plan:
    """The version a handoff gets; becomes the manifest's ``Change`` unless ``kind`` is none."""

    kind: str  # first | major | minor | patch | none
    version: str  # the version to write (or the existing one, for "none")
    previous: str | None
    reason: str


def classify(old: Fingerprint, new: Fingerprint) -> str:
    """Compare two fingerprints → major / minor / patch / none."""
    if old.architecture != new.architecture or old.signature != new.signature:
        return "major"
    if old.weights != new.weights:
        return "minor"
    if old.metadata != new.metadata:
        return "patch"
    return "none"


def explain(old: Fingerprint, new: Fingerprint) -> tuple[str, str]:
    kind = classify(old, new)
    reason = WORDING[kind].reason
    if kind == "major":
        parts = [
            part
            for part, changed in (
                ("signature", old.signature != new.signature),
                ("architecture", old.architecture != new.architecture),
            )
            if changed
        ]
        reason = major_reason(" and ".join(parts))
    return kind, reason


class Store:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_store()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir()
            and not p.is_symlink()
            and NAME_RE.fullmatch(p.name)
            and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and is_version(p.name)]
        return [str(v) for v in sorted(Version.parse(x) for x in found)]

    def latest(self, name: str) -> str | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def path(self, name: str, version: str | None = None) -> Path:
        version = version or self.latest(name)
        if version is None:
            raise StoreError(f"no bundle named {name!r} in {self.root}")
        path = self.root / name / version
        if not path.is_dir():
            raise StoreError(
                f"no version {version} of {name!r} in {self.root}; "
                f"it has: {', '.join(self.versions(name)) or 'none'}"
            )
        return path

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        return read_manifest(self.path(name, version))

    def plan(self, name: str, fingerprint: Fingerprint) -> Plan:
        """Which version a handoff with this fingerprint gets, and why."""
        latest = self.latest(name)
        if latest is None:
            return Plan("first", FIRST_VERSION, None, WORDING["first"].reason)
        old = self.manifest(name, latest)
        kind, reason = explain(old.fingerprint, fingerprint)
        if kind == "none":
            return Plan("none", latest, latest, WORDING["none"].title)
        # A new major resets minor/patch relative to the newest version of any kind.
        new = Version.parse(latest).bump(kind)
        return Plan(kind, str(new), latest, reason)

    # aliases ([aliases] in docs/bundle-format.md)
    @property
    def files(self) -> LocalFiles:
        return LocalFiles(self.root)

    def aliases(self, name: str) -> dict[str, Alias]:
        return read_aliases(self.files, name)

    def alias(self, name: str, alias: str) -> Alias | None:
        return read_alias(self.files, name, alias)

    def local_path(self, name: str, version: str) -> Path:
        """Where the bundle can be read on this host (for a local store: where it is)."""
        return self.path(name, version)
