"""The set of model versions being served, loaded from a bundle store (or one bundle).

Every version goes through ``labkit.runtime.load`` (which verifies every rule of the bundle
format before a session exists) and, by default, its golden self-test on this CPU. Any
failure to load one version (a bundle rule, an ONNX Runtime error, ``KeyError``,
``MemoryError``, anything) refuses that version only: one log line with its rule, remembered,
and retried only when the digest of its files changes; the versions already serving are
untouched. A store root that cannot be listed keeps what is loaded. Lookups never touch the
filesystem: a model name or version from a URL is only a key into the in-memory table.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.bundle import MANIFEST_NAME, Store
from labkit.bundle.files import file_kind, sha256_of
from labkit.bundle.integrity import MAX_ENTRIES
from labkit.bundle.semver import Version
from labkit.errors import LabkitError, StoreError
from labkit.runtime import Model, load, verify
from labkit.runtime.batching import batch_dim as probe_batch_dim
from labkit.runtime.batching import probe_batching
from labkit.serve.codec import oip_datatype
from labkit.serve.errors import NotFound

__all__ = ["ModelRepository", "ServedModel", "StoreUnavailable", "batch_dim", "rule_of"]

log = logging.getLogger("labkit.serve")


class StoreUnavailable(StoreError):
    """The store root cannot be listed right now; what is loaded keeps serving."""


LoadEvent = Callable[[str, str, bool, str], None]  # name, version, ok, reason (rule if refused)


def batch_dim(model: Model) -> str | None:
    """The symbolic leading dim shared by every input and output, if there is one."""
    return probe_batch_dim(model.inputs, model.outputs)


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


_digests: dict[Path, tuple[tuple[object, ...], str]] = {}


def _entries(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry under ``root`` (relative path, lstat), links not followed, at most
    MAX_ENTRIES of them."""
    found: list[tuple[str, os.stat_result]] = []
    stack = [(root, "")]
    while stack and len(found) <= MAX_ENTRIES:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                found.append((prefix + entry.name, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(entry.path), f"{prefix}{entry.name}/"))
    return sorted(found, key=lambda e: e[0])


def _fingerprint(path: Path) -> str:
    """Digest of a bundle directory's entry names and contents (not mtimes: a refused version
    is retried when what is in it changes, not when something merely touches it). Re-read
    only when an entry's kind, size, inode, mtime or ctime moved (ctime cannot be set back by
    hand). Nothing is followed or waited on (a refused version is hostile by definition): a
    link counts by its target's name, a FIFO, socket or device by its kind, and regular files
    are read through the bundle layer's one safe reader."""
    entries = _entries(path)
    stats = tuple(
        (rel, st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        for rel, st in entries
    )
    cached = _digests.get(path)
    if cached is not None and cached[0] == stats:
        return cached[1]
    digest = hashlib.sha256()
    for rel, st in entries:
        digest.update(rel.encode(errors="surrogateescape") + b"\0")
        if stat.S_ISREG(st.st_mode):
            try:
                digest.update(sha256_of(path, rel, single_link=False).encode())
            except (LabkitError, OSError) as exc:  # swapped meanwhile: it changed
                digest.update(f"unreadable {type(exc).__name__}".encode())
        elif stat.S_ISLNK(st.st_mode):
            digest.update(b"link " + os.fsencode(os.readlink(path / rel)))
        else:
            digest.update(file_kind(st.st_mode).encode())
        digest.update(b"\0")
    _digests[path] = (stats, digest.hexdigest())
    return digest.hexdigest()


def rule_of(exc: BaseException) -> str:
    """The bundle rule a refusal broke, else the exception's type: a bounded metric label."""
    rule = getattr(exc, "rule", None)
    return rule if isinstance(rule, str) and rule else type(exc).__name__


class ModelRepository:
    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        threads: int | None = None,
        self_test: bool = True,
        on_event: LoadEvent | None = None,
        tuning: bool = True,
        tune_budget_s: float | None = None,
        trusted_keys: Sequence[str] | None = None,
        max_batch_size: int = 32,
    ) -> None:
        self._tuning, self._tune_budget_s = tuning, tune_budget_s
        self._max_batch_size = max_batch_size  # the batching probe proves this size
        self.source = Path(source)
        self._trusted = None
        if trusted_keys is not None:  # read once: a bad key file stops startup
            from labkit.runtime.signing import load_trusted_keys

            self._trusted = load_trusted_keys(trusted_keys)
            log.info(
                "serving only bundles signed by: %s",
                ", ".join(f"sha256:{k.fingerprint[:16]}… ({k.path})" for k in self._trusted),
            )
        self.single = (self.source / MANIFEST_NAME).is_file()
        self._threads = threads
        self._self_test = self_test
        self._on_event = on_event or (lambda *_: None)
        self._table: dict[str, dict[str, ServedModel]] = {}
        self._refused: dict[tuple[str, str], tuple[str, str]] = {}  # -> (digest, reason)

    # lookups (event loop; no I/O)
    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._table.get(name)
        if not versions:
            raise NotFound(f"unknown model {name!r}; serving: {sorted(self._table) or 'none'}")
        if version is None:
            return versions[self.versions(name)[-1]]
        found = versions.get(version)
        if found is None:
            raise NotFound(
                f"model {name!r} has no version {version!r} being served; "
                f"serving: {self.versions(name)}"
            )
        return found

    def versions(self, name: str) -> list[str]:
        return sorted(self._table.get(name, {}), key=Version.parse)

    def served(self) -> list[tuple[str, str]]:
        return [(n, v) for n in sorted(self._table) for v in self.versions(n)]

    def refused(self) -> dict[tuple[str, str], str]:
        return {k: reason for k, (_, reason) in self._refused.items()}

    # loading (worker thread)
    def _load(self, path: Path) -> ServedModel:
        if self._tuning and self._tune_budget_s:
            from labkit.runtime.tune import ensure_tuned

            if self._trusted is not None:  # tuning runs sessions: the signature comes first
                from labkit.runtime.signing import check_signature

                check_signature(verify(path), self._trusted)
            ensure_tuned(path, budget_s=self._tune_budget_s, on_note=log.info)
        model = load(
            path,
            threads=self._threads,
            profile="auto" if self._tuning else None,
            trusted_keys=self._trusted,
        )
        if model.tuning["note"]:
            log.warning("%s %s: %s", model.name, model.version, model.tuning["note"])
        if self._self_test:
            report = model.self_test()
            if not report.ok:
                raise LabkitError(f"self-test failed on this CPU: {'; '.join(report.failures)}")
        dim = batch_dim(model)
        if dim is not None and self._max_batch_size > 1:
            probe = probe_batching(model, self._max_batch_size)  # the one probe (runtime)
            if not probe.ok:
                log.warning("%s %s: %s; batching off", model.name, model.version, probe.reason)
                dim = None
        return ServedModel(model, dim)

    def _candidates(self) -> dict[tuple[str, str], Path]:
        if self.single:
            from labkit.bundle import read_manifest

            try:
                m = read_manifest(self.source)
            except Exception as exc:  # noqa: BLE001 - any failure refuses, never crashes
                reason = f"{type(exc).__name__}: {exc}"
                self._refused[(str(self.source), "")] = ("", reason)
                log.error("refused %s [%s]: %s", self.source, rule_of(exc), reason)
                self._on_event(str(self.source), "", False, rule_of(exc))
                return {}
            return {(m.name, m.version): self.source}
        if not self.source.is_dir():  # unmounted or moved: keep serving what is loaded
            raise StoreUnavailable(f"store root {self.source} is not a directory")
        store = Store(self.source)
        found = {(n, v): store.root / n / v for n in store.names() for v in store.versions(n)}
        if not found and self._table:  # an empty mount point looks like this too
            raise StoreUnavailable(
                f"store root {self.source} holds no versions; keeping the "
                f"{len(self.served())} loaded until it does"
            )
        return found

    def refresh(self) -> list[tuple[str, str, bool, str]]:
        """Sync with the store: load new versions, drop removed ones. Blocking; thread-safe
        only against concurrent lookups (one refresher at a time). Raises only when the store
        root cannot be listed (nothing is unloaded then)."""
        events: list[tuple[str, str, bool, str]] = []
        candidates = self._candidates()
        for (name, version), path in candidates.items():
            if version in self._table.get(name, {}):
                continue
            previous = self._refused.get((name, version))
            if previous:
                try:
                    if _fingerprint(path) == previous[0]:
                        continue
                except OSError:
                    continue  # vanished between listing and reading
            try:
                served = self._load(path)
                if (served.name, served.version) != (name, version):
                    raise LabkitError(
                        f"directory {name}/{version} holds {served.name} {served.version}"
                    )
            except Exception as exc:  # noqa: BLE001 - one bad version never stops the others
                reason = f"{type(exc).__name__}: {exc}"
                try:
                    stamp = _fingerprint(path)
                except OSError:
                    stamp = ""
                self._refused[(name, version)] = (stamp, reason)
                log.error("refused %s %s [%s]: %s", name, version, rule_of(exc), reason)
                events.append((name, version, False, rule_of(exc)))
                continue
            self._refused.pop((name, version), None)
            table = dict(self._table)  # copy-on-write: lookups never see a half-built table
            table[name] = {**table.get(name, {}), version: served}
            self._table = table
            log.info(
                "serving %s %s (%s%s, batching %s)",
                name,
                version,
                served.model.candidate.label,
                ", tuned" if served.model.tuning["profile"] else "",
                "on" if served.batch_dim else "off",
            )
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
