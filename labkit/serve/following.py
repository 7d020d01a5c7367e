"""Serving follows aliases, and a version policy bounds what a server loads.

An unversioned request is answered by the version the followed alias (``--alias``, default
``prod``) points at, when the model has that alias; ``/versions/ALIAS/`` names any alias;
answers always carry the concrete version. A target that was refused on this host (it does
not verify, its self-test fails here, its signature is not trusted) is never put into
service: the alias keeps answering with the newest earlier target that is being served, with
one log line and ``labkit_alias_held_total`` counting it.

The policy (``--versions``): ``all`` loads every version in the store; ``latest:N`` the N
highest plus every alias's target; ``aliases`` only the aliases' targets. Either way the
versions an alias falls back to stay loaded while they answer for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from labkit.bundle.aliases import ALIAS_RE, ALIASES_DIR, RESERVED, Alias, AliasEvent, read_alias
from labkit.bundle.aliases import read_event as _read_event
from labkit.bundle.semver import Version
from labkit.errors import LabkitError

__all__ = ["AliasRoutes", "VersionPolicy"]

log = logging.getLogger("labkit.serve")

AliasEventHook = Callable[[str, str, str, bool], None]  # model, alias, version, in service


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "all"  # all | latest | aliases
    n: int = 0

    @classmethod
    def parse(cls, text: str | VersionPolicy) -> VersionPolicy:
        if isinstance(text, VersionPolicy):
            return text
        found = re.fullmatch(r"latest:([1-9][0-9]{0,5})", text)
        if found:
            return cls("latest", int(found.group(1)))
        if text in ("all", "aliases"):
            return cls(text)
        raise ValueError(
            f"--versions {text!r}: use all, aliases or latest:N (N ≥ 1, e.g. latest:2)"
        )

    def __str__(self) -> str:
        return f"latest:{self.n}" if self.kind == "latest" else self.kind

    def wanted(
        self,
        versions: Iterable[str],
        aliases: dict[str, Alias],
        keep: Iterable[str],
        refused: Iterable[str] = (),
    ) -> set[str]:
        """Which of ``versions`` (in the store) to load: the policy's, each alias's target
        (and, while that was refused here, the targets before it, newest first, up to one
        that was not), and ``keep`` (versions answering for an alias right now)."""
        present = set(versions)
        if self.kind == "all":
            return present
        bad = set(refused)
        chosen = set(keep)
        for alias in aliases.values():
            for target in alias.targets():
                chosen.add(target)
                if target not in bad and target in present:
                    break
        if self.kind == "latest":
            chosen |= set(sorted(present, key=Version.parse)[-self.n :])
        return chosen & present


class AliasRoutes:
    """The aliases of every model in a store, and the version each one answers with here.

    Records never change once written, so each is read once (``read_event`` is cached); a
    scan lists the alias folders and reads only new generations.
    """

    def __init__(self, files: Any, follow: str, on_event: AliasEventHook | None = None) -> None:
        self.files = files
        self.follow = follow
        self._on_event = on_event or (lambda *_: None)
        self._records: dict[tuple[str, str, int], AliasEvent] = {}
        self.aliases: dict[str, dict[str, Alias]] = {}  # model -> alias -> Alias
        self._routes: dict[str, dict[str, str]] = {}  # model -> alias -> serving version
        self._held: set[tuple[str, str, int]] = set()  # (model, alias, generation) logged

    def _record(self, model: str, alias: str, generation: int) -> AliasEvent:
        key = (model, alias, generation)
        if key not in self._records:
            self._records[key] = _read_event(self.files, model, alias, generation)
        return self._records[key]

    def _reader(self, model: str, alias: str) -> Callable[[int], AliasEvent]:
        return lambda generation: self._record(model, alias, generation)

    def scan(self, names: Iterable[str]) -> dict[str, dict[str, Alias]]:
        """Read every model's aliases. A model whose records cannot be read keeps the
        aliases it had (logged): a broken record never moves traffic."""
        found: dict[str, dict[str, Alias]] = {}
        for name in names:
            try:
                got = {}
                for alias in self.files.listdir(f"{name}/{ALIASES_DIR}"):
                    if not ALIAS_RE.fullmatch(alias) or alias in RESERVED:
                        continue
                    read = read_alias(self.files, name, alias, reader=self._reader(name, alias))
                    if read is not None:
                        got[alias] = read
                found[name] = got
            except (LabkitError, OSError) as exc:
                log.error("aliases of %s unreadable, keeping the last good ones: %s", name, exc)
                found[name] = self.aliases.get(name, {})
        self.aliases = found
        return found

    def keep(self, name: str) -> set[str]:
        """Versions answering for an alias of ``name`` now."""
        return set(self._routes.get(name, {}).values())

    def route(self, served: dict[str, set[str]], refused: dict[tuple[str, str], str]) -> None:
        """Point each alias at its newest target being served. Called after a refresh
        loaded what was wanted, so a newest target not served now was refused here (or is
        not in the store): the alias is held on an earlier one."""
        routes: dict[str, dict[str, str]] = {}
        for name, aliases in self.aliases.items():
            loaded = served.get(name, set())
            for alias_name, alias in aliases.items():
                newest = alias.version
                target = next((v for v in alias.targets() if v in loaded), None)
                before = self._routes.get(name, {}).get(alias_name)
                if target is not None:
                    routes.setdefault(name, {})[alias_name] = target
                if target != newest:
                    why = refused.get((name, newest), "it is not in the store")
                    self._hold(alias, target, why)
                elif target != before:
                    log.info("%s: alias %s → %s in service", name, alias_name, newest)
                    self._on_event(name, alias_name, newest, True)
        self._routes = routes  # one assignment: lookups see the old routes or the new

    def _hold(self, alias: Alias, target: str | None, why: str) -> None:
        key = (alias.model, alias.name, alias.generation)
        if key in self._held:
            return
        self._held.add(key)
        log.error(
            "%s: alias %s → %s not put into service (%s); %s",
            alias.model,
            alias.name,
            alias.version,
            why,
            f"it keeps answering with {target}" if target else "no earlier target is loaded",
        )
        self._on_event(alias.model, alias.name, alias.version, False)

    def resolve(self, name: str, version: str | None) -> tuple[str | None, str | None]:
        """(concrete version or None for "the latest", why nothing can answer or None)."""
        if version is None:
            alias = self.follow
        elif version == "latest":
            return None, None
        elif ALIAS_RE.fullmatch(version):  # an alias never looks like MAJOR.MINOR.PATCH
            alias = version
        else:
            return version, None
        routed = self._routes.get(name, {}).get(alias)
        if routed is not None:
            return routed, None
        known = self.aliases.get(name, {}).get(alias)
        if known is None:
            if version is None:
                return None, None  # no such alias: the latest version answers, as always
            return None, f"model {name!r} has no alias {alias!r}"
        return None, (
            f"model {name!r}: alias {alias!r} → {known.version} is not being served here "
            "(refused on this host or not loaded yet) and no earlier target is loaded"
        )
