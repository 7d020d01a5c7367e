"""The set of model versions being served, loaded from a bundle store (or one bundle).

Every version goes through ``labkit.runtime.load`` (which verifies every rule of the bundle
format before a session exists) and, by default, its golden self-test on this CPU. A version
that fails is refused, remembered with its reason, and retried only if its directory changes;
the versions already serving are untouched. Lookups never touch the filesystem: a model name
or version from a URL is only a key into the in-memory table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labkit.bundle import MANIFEST_NAME, Store
from labkit.bundle.semver import Version
from labkit.errors import LabkitError
from labkit.runtime import Model, load
from labkit.serve.codec import oip_datatype
from labkit.serve.errors import NotFound

__all__ = ["ModelRepository", "ServedModel", "batch_dim"]

log = logging.getLogger("labkit.serve")

LoadEvent = Callable[[str, str, bool, str], None]  # name, version, ok, reason


def batch_dim(model: Model) -> str | None:
    """The symbolic leading dim shared by every input and output, if there is one."""
    firsts = {spec.shape[0] if spec.shape else None for spec in [*model.inputs, *model.outputs]}
    if len(firsts) == 1:
        (dim,) = firsts
        if isinstance(dim, str):
            return dim
    return None


def _rows_independent(model: Model) -> bool:
    """Check on the golden inputs that running rows together equals running them one by one."""
    try:
        with np.load(model.path / model.manifest.golden.inputs, allow_pickle=False) as z:
            feeds = {s.name: z[s.name] for s in model.inputs}
    except (KeyError, OSError, ValueError) as exc:
        log.warning("%s %s: no golden inputs to probe batching (%s)",
                    model.name, model.version, exc)
        return True  # the signature says the leading dim is a batch; trust it
    rows = min(int(next(iter(feeds.values())).shape[0]), 4)
    if rows < 2:
        return True
    together = model.predict({k: v[:rows] for k, v in feeds.items()})
    for i in range(rows):
        alone = model.predict({k: v[i : i + 1] for k, v in feeds.items()})
        for name, value in alone.items():
            ref = together[name][i : i + 1]
            scale = float(np.max(np.abs(ref))) if ref.size and ref.dtype.kind == "f" else 1.0
            if not np.allclose(value, ref, rtol=1e-5, atol=1e-5 * max(scale, 1.0)):
                return False
    return True


@dataclass(frozen=True)
class ServedModel:
    model: Model
    batch_dim: str | None  # None: requests of this model are never batched together

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    def metadata(self, versions: list[str]) -> dict[str, Any]:
        def tensor(spec: Any) -> dict[str, Any]:
            shape = [d if isinstance(d, int) else -1 for d in spec.shape]
            return {"name": spec.name, "datatype": oip_datatype(spec.dtype), "shape": shape}

        return {
            "name": self.name,
            "versions": versions,
            "platform": "onnxruntime_onnx",
            "inputs": [tensor(s) for s in self.model.inputs],
            "outputs": [tensor(s) for s in self.model.outputs],
        }


def _fingerprint(path: Path) -> tuple[int, int]:
    """Changes when files are added to or replaced in a bundle directory."""
    manifest = path / MANIFEST_NAME
    m = manifest.stat().st_mtime_ns if manifest.exists() else 0
    return path.stat().st_mtime_ns, m


class ModelRepository:
    def __init__(self, source: str | os.PathLike[str], *, threads: int | None = None,
                 self_test: bool = True, on_event: LoadEvent | None = None,
                 trusted_keys: Sequence[str] | None = None) -> None:
        self.source = Path(source)
        self._trusted = None
        if trusted_keys is not None:  # read once: a bad key file stops startup
            from labkit.runtime.signing import load_trusted_keys

            self._trusted = load_trusted_keys(trusted_keys)
            log.info("serving only bundles signed by: %s",
                     ", ".join(f"sha256:{k.fingerprint[:16]}… ({k.path})" for k in self._trusted))
        self.single = (self.source / MANIFEST_NAME).is_file()
        self._threads = threads
        self._self_test = self_test
        self._on_event = on_event or (lambda *_: None)
        self._table: dict[str, dict[str, ServedModel]] = {}
        self._refused: dict[tuple[str, str], tuple[tuple[int, int], str]] = {}

    # lookups (event loop; no I/O)
    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._table.get(name)
        if not versions:
            raise NotFound(f"unknown model {name!r}; serving: {sorted(self._table) or 'none'}")
        if version is None:
            return versions[self.versions(name)[-1]]
        found = versions.get(version)
        if found is None:
            raise NotFound(f"model {name!r} has no version {version!r} being served; "
                           f"serving: {self.versions(name)}")
        return found

    def versions(self, name: str) -> list[str]:
        return sorted(self._table.get(name, {}), key=Version.parse)

    def served(self) -> list[tuple[str, str]]:
        return [(n, v) for n in sorted(self._table) for v in self.versions(n)]

    def refused(self) -> dict[tuple[str, str], str]:
        return {k: reason for k, (_, reason) in self._refused.items()}

    # loading (worker thread)
    def _load(self, path: Path) -> ServedModel:
        model = load(path, threads=self._threads, trusted_keys=self._trusted)
        if self._self_test:
            report = model.self_test()
            if not report.ok:
                raise LabkitError(f"self-test failed on this CPU: {'; '.join(report.failures)}")
        dim = batch_dim(model)
        if dim is not None and not _rows_independent(model):
            log.warning("%s %s: rows are not independent; batching disabled",
                        model.name, model.version)
            dim = None
        return ServedModel(model, dim)

    def _candidates(self) -> dict[tuple[str, str], Path]:
        if self.single:
            from labkit.bundle import read_manifest

            try:
                m = read_manifest(self.source)
            except (LabkitError, OSError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._refused[(str(self.source), "")] = ((0, 0), reason)
                log.error("refused %s: %s", self.source, reason)
                self._on_event(str(self.source), "", False, reason)
                return {}
            return {(m.name, m.version): self.source}
        store = Store(self.source)
        return {(n, v): store.root / n / v for n in store.names() for v in store.versions(n)}

    def refresh(self) -> list[tuple[str, str, bool, str]]:
        """Sync with the store: load new versions, drop removed ones. Blocking; thread-safe
        only against concurrent lookups (one refresher at a time)."""
        events: list[tuple[str, str, bool, str]] = []
        candidates = self._candidates()
        for (name, version), path in candidates.items():
            if version in self._table.get(name, {}):
                continue
            try:
                stamp = _fingerprint(path)
            except OSError:
                continue  # vanished between listing and stat
            previous = self._refused.get((name, version))
            if previous and previous[0] == stamp:
                continue
            try:
                served = self._load(path)
                if (served.name, served.version) != (name, version):
                    raise LabkitError(f"directory {name}/{version} holds "
                                      f"{served.name} {served.version}")
            except (LabkitError, OSError, ValueError, RuntimeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._refused[(name, version)] = (stamp, reason)
                log.error("refused %s %s: %s", name, version, reason)
                events.append((name, version, False, reason))
                continue
            self._refused.pop((name, version), None)
            table = dict(self._table)  # copy-on-write: lookups never see a half-built table
            table[name] = {**table.get(name, {}), version: served}
            self._table = table
            log.info("serving %s %s (variant %s, batching %s)", name, version,
                     served.model.variant, "on" if served.batch_dim else "off")
            events.append((name, version, True, "loaded"))
        for name, versions in list(self._table.items()):
            gone = [v for v in versions if (name, v) not in candidates]
            if gone:
                table = dict(self._table)
                kept = {v: m for v, m in versions.items() if v not in gone}
                if kept:
                    table[name] = kept
                else:
                    table.pop(name)
                self._table = table
                for v in gone:
                    log.info("%s %s left the store; no longer served", name, v)
                    events.append((name, v, True, "removed"))
        for event in events:
            self._on_event(*event)
        return events
