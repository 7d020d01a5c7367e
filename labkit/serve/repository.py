"""The set of model versions being served, loaded from a bundle store (or one bundle).

Every version goes through ``labkit.runtime.load`` (which verifies every rule of the bundle
format before a session exists) and, by default, its golden self-test on this CPU. Any
failure to load one version (a bundle rule, an ONNX Runtime error, ``KeyError``,
``MemoryError``, anything) refuses that version only: one log line with its rule, remembered,
and retried only when the digest of its files changes; the versions already serving are
untouched. A store root that cannot be listed keeps what is loaded. Lookups never touch the
filesystem: a model name or version from a URL is only a key into the in-memory table.
The store may be a directory or a URL (``labkit.serve.sources``); aliases are followed and a
version policy bounds what is loaded (``labkit.serve.following``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from labkit.bundle import MANIFEST_NAME
from labkit.bundle.aliases import DEFAULT_ALIAS, check_alias
from labkit.bundle.location import is_remote, local_path
from labkit.bundle.semver import Version
from labkit.errors import LabkitError
from labkit.runtime import Model, load, verify
from labkit.runtime.batching import batch_dim as probe_batch_dim
from labkit.runtime.batching import probe_batching
from labkit.serve.errors import NotFound, ServeError
from labkit.serve.following import AliasEventHook, AliasRoutes, VersionPolicy
from labkit.serve.sources import StoreSource, StoreUnavailable
from labkit.serve.stamps import StampCache, stat_stamp

__all__ = ["ModelRepository", "ServedModel", "StoreUnavailable", "batch_dim", "rule_of"]

log = logging.getLogger("labkit.serve")


LoadEvent = Callable[[str, str, bool, str], None]  # name, version, ok, reason (rule if refused)
Event = tuple[str, str, bool, str]  # reasons: loaded, removed, forgotten, stuck, or a rule
STUCK = "stuck"  # the stamp of a version the watcher gave up on, until it is next looked at


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
        profile_dir: str | None = None,
        allow_reduced_precision: bool = False,
        follow: str = DEFAULT_ALIAS,
        versions: str | VersionPolicy = "all",
        on_alias: AliasEventHook | None = None,
    ) -> None:
        self._max_batch_size = max_batch_size  # the batching probe proves this size
        self._tuning, self._tune_budget_s = tuning, tune_budget_s
        self._profile_dir, self._allow_reduced = profile_dir, allow_reduced_precision
        self.source: Path | str = str(source) if is_remote(source) else local_path(source)
        self.policy = VersionPolicy.parse(versions)
        self._trusted = None
        if trusted_keys is not None:  # read once: a bad key file stops startup
            from labkit.runtime.signing import load_trusted_keys

            self._trusted = load_trusted_keys(trusted_keys)
            log.info(
                "serving only bundles signed by: %s",
                ", ".join(f"sha256:{k.fingerprint[:16]}… ({k.path})" for k in self._trusted),
            )
        self.single = isinstance(self.source, Path) and (self.source / MANIFEST_NAME).is_file()
        # a store (not one bundle): versions listed through it, aliases followed
        self._store = None if self.single else StoreSource(self.source)
        self.routes = (
            AliasRoutes(self._store.files, check_alias(follow), on_alias) if self._store else None
        )
        self._threads = threads
        self._self_test = self_test
        self._on_event = on_event or (lambda *_: None)
        self._table: dict[str, dict[str, ServedModel]] = {}
        self._refused: dict[tuple[str, str], tuple[str, str]] = {}  # -> (stamp, reason)
        self._stamps = StampCache()
        # One scan commits at a time; a scan abandoned by the watcher commits nothing more
        self._commit_lock = threading.Lock()

    # lookups (event loop; no I/O)
    def get(self, name: str, version: str | None = None) -> ServedModel:
        """``version``: a version, an alias (``prod``, ``staging`` …) or ``latest``; None
        follows the server's alias when the model has it, else the latest version."""
        versions = self._table.get(name)
        if not versions:
            raise NotFound(f"unknown model {name!r}; serving: {sorted(self._table) or 'none'}")
        if self.routes is not None:
            asked = version
            version, why = self.routes.resolve(name, version)
            if why is not None:
                known = self.routes.aliases.get(name, {})
                if asked is not None and asked not in known:
                    raise NotFound(why)
                raise ServeError(why, status=503)
        elif version == "latest":
            version = None
        if version is None:
            return versions[self.versions(name)[-1]]
        found = versions.get(version)
        if found is None:
            raise NotFound(
                f"model {name!r} has no version {version!r} being served; "
                f"serving: {self.versions(name)}"
            )
        return found

    def serves(self, name: str, version: str) -> bool:
        return version in self._table.get(name, {})

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
        if dim is not None and self._max_batch_size > 1:
            probe = probe_batching(model, self._max_batch_size)  # the one probe (runtime)
            if not probe.ok:
                log.warning("%s %s: %s; batching off", model.name, model.version, probe.reason)
                dim = None
        return ServedModel(model, dim)

    def _candidates(self) -> dict[tuple[str, str], Path | None]:
        """Versions to have loaded → their directory (None: pulled when loaded)."""
        if self.single:
            from labkit.bundle import read_manifest

            try:
                m = read_manifest(Path(self.source))
            except Exception as exc:  # noqa: BLE001 - any failure refuses, never crashes
                reason = f"{type(exc).__name__}: {exc}"
                self._refused[(str(self.source), "")] = ("", reason)
                log.error("refused %s [%s]: %s", self.source, rule_of(exc), reason)
                self._on_event(str(self.source), "", False, rule_of(exc))
                return {}
            return {(m.name, m.version): Path(self.source)}
        assert self._store is not None and self.routes is not None
        listed = self._store.versions()
        if not listed and self._table:  # an empty mount point looks like this too
            raise StoreUnavailable(
                f"store root {self.source} holds no versions; keeping the "
                f"{len(self.served())} loaded until it does"
            )
        aliases = self.routes.scan(listed)
        found: dict[tuple[str, str], Path | None] = {}
        for name, versions in listed.items():
            keep = self.routes.keep(name)
            bad = [v for (n, v) in self._refused if n == name]
            wanted = self.policy.wanted(versions, aliases.get(name, {}), keep, bad)
            for v in sorted(wanted, key=Version.parse):  # oldest first, as listed
                found[(name, v)] = None if self._store.remote else self._store.path(name, v)
        return found

    def refresh(
        self,
        *,
        beat: Callable[[tuple[str, str] | None], None] | None = None,
        current: Callable[[], bool] | None = None,
        listed: Callable[[], None] | None = None,
    ) -> list[Event]:
        """Sync with the store: load new versions, drop removed ones (or ones the version
        policy no longer wants), forget refused ones whose directory went, point aliases at
        what serves. Blocking; thread-safe against lookups. ``beat`` is called before each
        step (with the version about to load, else None): the watcher's heartbeat. Each
        change is committed (and its event sent) as soon as it is made, and only while
        ``current()`` is true: a scan the watcher gave up on changes nothing more when it
        wakes up. ``listed`` is called once the store root was listed. Raises only when the
        store root cannot be listed (nothing is unloaded then)."""
        beat = beat or (lambda _key: None)
        current = current or (lambda: True)
        events: list[Event] = []

        def commit(event: Event, change: Callable[[], None]) -> bool:
            with self._commit_lock:
                if not current():
                    return False
                change()
                events.append(event)
            self._on_event(*event)
            return True

        beat(None)
        candidates = self._candidates()
        if listed is not None:
            listed()
        present = self._present(candidates)
        self._load_new(candidates, commit, beat)
        for _ in range(8):  # an alias whose target was just refused wants an earlier one
            if self.policy.kind == "all":
                break
            more = {k: p for k, p in self._candidates().items() if k not in candidates}
            if not more:
                break
            candidates.update(more)
            self._load_new(more, commit, beat)
        self._stamps.keep_only({p for p in candidates.values() if p is not None})
        beat(None)
        for name, versions in list(self._table.items()):
            for v in [v for v in versions if (name, v) not in candidates]:
                if commit((name, v, True, "removed"), partial(self._drop, name, v)):
                    log.info("%s %s left the store (or the --versions policy)", name, v)
        if not self.single:  # a refused version whose directory went is forgotten (404)
            for key in [k for k in self._refused if k not in present]:
                commit((*key, False, "forgotten"), partial(self._forget, key))
        if self.routes is not None:
            routes = self.routes
            with self._commit_lock:
                if current():
                    routes.route(
                        {n: set(vs) for n, vs in self._table.items()},
                        {k: reason for k, (_, reason) in self._refused.items()},
                    )
        return events

    def _present(self, candidates: dict[tuple[str, str], Path | None]) -> set[tuple[str, str]]:
        """Every version the store holds now (the policy may want fewer)."""
        if self._store is None:
            return set(candidates)
        return {(n, v) for n, vs in self._store.last_listing.items() for v in vs}

    def _load_new(
        self,
        candidates: dict[tuple[str, str], Path | None],
        commit: Callable[[Event, Callable[[], None]], bool],
        beat: Callable[[tuple[str, str] | None], None],
    ) -> None:
        for (name, version), path in candidates.items():
            if version in self._table.get(name, {}):
                continue
            beat((name, version))
            previous = self._refused.get((name, version))
            if previous and self._unchanged(name, version, path, *previous):
                continue
            try:
                local = path
                if local is None:
                    assert self._store is not None
                    local = self._store.path(name, version)  # pulled and verified first
                served = self._load(local)
                if (served.name, served.version) != (name, version):
                    raise LabkitError(
                        f"directory {name}/{version} holds {served.name} {served.version}"
                    )
            except Exception as exc:  # noqa: BLE001 - one bad version never stops the others
                reason = f"{type(exc).__name__}: {exc}"
                stamp = self._stamp(name, version, path)
                if commit(
                    (name, version, False, rule_of(exc)),
                    partial(self._refuse, name, version, stamp, reason),
                ):
                    log.error("refused %s %s [%s]: %s", name, version, rule_of(exc), reason)
                continue
            if commit((name, version, True, "loaded"), partial(self._add, served)):
                log.info(
                    "serving %s %s (%s%s, batching %s)",
                    name,
                    version,
                    served.model.candidate.label,
                    ", tuned" if served.model.tuning["profile"] else "",
                    "on" if served.batch_dim else "off",
                )

    def mark_stuck(self, name: str, version: str, reason: str) -> None:
        """Refuse a version whose loading made no progress (the watcher gave up on it). It is
        retried only when its directory's entries change (see :func:`stat_stamp`)."""
        with self._commit_lock:
            self._refused[(name, version)] = (STUCK, reason)
        self._on_event(name, version, False, "stuck")

    # helpers (scan thread)
    def _unchanged(
        self, name: str, version: str, path: Path | None, stamp: str, reason: str
    ) -> bool:
        try:
            if path is None:  # remote: its manifest and signature pin everything else
                assert self._store is not None
                return self._store.stamp(name, version) == stamp
            if stamp == STUCK:  # first look since it got stuck: remember its entries only
                self._refused[(name, version)] = (stat_stamp(path), reason)
                return True
            if stamp.startswith("stat:"):
                return stat_stamp(path) == stamp
            return self._stamps.content_stamp(path) == stamp
        except (OSError, LabkitError):
            return True  # vanished between listing and reading: the next scan sees it

    def _stamp(self, name: str, version: str, path: Path | None) -> str:
        try:
            if path is None:
                assert self._store is not None
                return self._store.stamp(name, version)
            return self._stamps.content_stamp(path)
        except (OSError, LabkitError):
            return ""

    def _refuse(self, name: str, version: str, stamp: str, reason: str) -> None:
        self._refused[(name, version)] = (stamp, reason)

    def _forget(self, key: tuple[str, str]) -> None:
        self._refused.pop(key, None)

    def _add(self, served: ServedModel) -> None:
        self._refused.pop((served.name, served.version), None)
        table = dict(self._table)  # copy-on-write: lookups never see a half-built table
        table[served.name] = {**table.get(served.name, {}), served.version: served}
        self._table = table

    def _drop(self, name: str, version: str) -> None:
        table = dict(self._table)
        kept = {v: m for v, m in table.get(name, {}).items() if v != version}
        if kept:
            table[name] = kept
        else:
            table.pop(name, None)
        self._table = table
