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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labkit.bundle import MANIFEST_NAME, Store
from labkit.bundle.semver import Version
from labkit.errors import LabkitError, StoreError
from labkit.runtime import Model, load, verify
from labkit.serve.codec import oip_datatype
from labkit.serve.errors import NotFound

__all__ = ["ModelRepository", "ServedModel", "StoreUnavailable", "batch_dim", "rule_of"]

log = logging.getLogger("labkit.serve")


class StoreUnavailable(StoreError):
    """The store root cannot be listed right now; what is loaded keeps serving."""


LoadEvent = Callable[[str, str, bool, str], None]  # name, version, ok, reason (rule if refused)
_PROBE_ROWS = 4


def batch_dim(model: Model) -> str | None:
    """The symbolic leading dim shared by every input and output, if there is one."""
    firsts = {spec.shape[0] if spec.shape else None for spec in [*model.inputs, *model.outputs]}
    if len(firsts) == 1:
        (dim,) = firsts
        if isinstance(dim, str):
            return dim
    return None


def _probe_rows(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """At least two distinct rows for the probe: the golden rows, else a perturbed copy of
    the one row (a float input nudged, an integer one shifted by one); None if impossible."""
    rows = min(int(next(iter(feeds.values())).shape[0]), _PROBE_ROWS)
    feeds = {k: v[:rows] for k, v in feeds.items()}
    if rows >= 2 and any(len({r.tobytes() for r in v}) > 1 for v in feeds.values()):
        return feeds
    if rows < 1:
        return None
    second: dict[str, np.ndarray] = {}
    changed = False
    for k, v in feeds.items():
        row = v[:1].copy()
        if row.dtype.kind == "f":
            row = (row * 1.5 + 0.25).astype(row.dtype)
            changed = True
        elif row.dtype.kind in "iu" and row.size:
            # a neighbouring valid value (indices stay in range: 0 <-> 1, n -> n-1)
            row = np.where(row > 0, row - 1, row + 1).astype(row.dtype)
            changed = True
        second[k] = row
    if not changed:
        return None
    return {k: np.concatenate([feeds[k][:1], second[k]]) for k in feeds}


def _rows_independent(model: Model) -> bool:
    """Prove on at least two distinct rows that running rows together equals running them
    one by one; without that proof the model is not batched (another client's rows could
    change an answer)."""
    try:
        golden = model.golden_inputs()  # the bounded, re-hashed reader ([golden])
        feeds = {s.name: golden[s.name] for s in model.inputs}
    except Exception as exc:  # noqa: BLE001 - no proof, no batching
        log.warning(
            "%s %s: no golden inputs to probe batching (%s); batching off",
            model.name,
            model.version,
            exc,
        )
        return False
    probe = _probe_rows(feeds)
    if probe is None:
        log.warning(
            "%s %s: no two distinct rows to probe batching; batching off", model.name, model.version
        )
        return False
    rows = int(next(iter(probe.values())).shape[0])
    try:
        together = model.predict(probe)
        for i in range(rows):
            alone = model.predict({k: v[i : i + 1] for k, v in probe.items()})
            for name, value in alone.items():
                ref = together[name][i : i + 1]
                scale = float(np.max(np.abs(ref))) if ref.size and ref.dtype.kind == "f" else 1.0
                if value.shape != ref.shape or not np.allclose(
                    value, ref, rtol=1e-5, atol=1e-5 * max(scale, 1.0), equal_nan=True
                ):
                    return False
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run proves nothing
        log.warning(
            "%s %s: batching probe failed (%s); batching off", model.name, model.version, exc
        )
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
            "platform": self.model.platform,  # the engine that runs (openvino_onnx …)
            "inputs": [tensor(s) for s in self.model.inputs],
            "outputs": [tensor(s) for s in self.model.outputs],
        }


_digests: dict[Path, tuple[tuple[object, ...], str]] = {}


def _fingerprint(path: Path) -> str:
    """Digest of a bundle directory's file names and contents (not mtimes: a refused version
    is retried when what is in it changes, not when something merely touches it). Re-read
    only when a file's size, inode, mtime or ctime moved (ctime cannot be set back by hand)."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stats = tuple(
        (str(f), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        for f in files
        for st in [f.stat()]
    )
    cached = _digests.get(path)
    if cached is not None and cached[0] == stats:
        return cached[1]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
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
        profile_dir: str | None = None,
        allow_reduced_precision: bool = False,
    ) -> None:
        self._tuning, self._tune_budget_s = tuning, tune_budget_s
        self._profile_dir, self._allow_reduced = profile_dir, allow_reduced_precision
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
            ensure_tuned(
                path,
                budget_s=self._tune_budget_s,
                on_note=log.info,
                trusted_keys=self._trusted,
                profile_dir=self._profile_dir,
                allow_reduced_precision=self._allow_reduced,
            )
        model = load(
            path,
            threads=self._threads,
            profile="auto" if self._tuning else None,
            trusted_keys=self._trusted,
            profile_dir=self._profile_dir,
            allow_reduced_precision=self._allow_reduced,
        )
        if model.tuning["note"]:
            log.warning("%s %s: %s", model.name, model.version, model.tuning["note"])
        if self._self_test:
            report = model.self_test()
            if not report.ok:
                raise LabkitError(f"self-test failed on this CPU: {'; '.join(report.failures)}")
        dim = batch_dim(model)
        if dim is not None and not _rows_independent(model):
            log.warning(
                "%s %s: rows are not independent; batching disabled", model.name, model.version
            )
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
