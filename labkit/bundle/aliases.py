"""Aliases: movable names (``prod``, ``staging`` …) for a model's immutable versions.

``STORE/NAME/.aliases/ALIAS/GENERATION.json`` holds one record per move of the alias, never
rewritten: generation 1 is the first promotion, each move writes the next one, and the
newest generation is where the alias points. The records are the history (who, when, from,
to). A move writes its generation with an exclusive create (:mod:`labkit.bundle.storefiles`):
of two promoters that read the same state, one writes generation N+1 and the other is told
the alias moved under it, so the history never forks or loses a move.

Rollback replays the history as a stack: a promotion pushes its target, a rollback pops
one; rolling back again goes further back, like undo. The rules are in
``docs/bundle-format.md`` ("Aliases").
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.bundle._json import dumps_canonical, loads_strict
from labkit.bundle.manifest import NAME_RE
from labkit.bundle.semver import Version, is_version
from labkit.bundle.storefiles import Files
from labkit.errors import LabkitError, StoreError

__all__ = [
    "ALIASES_DIR",
    "ALIAS_RE",
    "DEFAULT_ALIAS",
    "Alias",
    "AliasConflict",
    "AliasEvent",
    "check_alias",
    "move",
    "plan_rollback",
    "promote",
    "read_alias",
    "read_aliases",
]

ALIASES_DIR = ".aliases"
DEFAULT_ALIAS = "prod"
# A leading letter: an alias can never look like a version, so /versions/{v} is unambiguous.
ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
RESERVED = frozenset({"latest"})  # means "the highest version" wherever a version is asked for
ALIAS_FORMAT = 1
MAX_RECORD_BYTES = 64 * 1024
MAX_GENERATIONS = 100_000
_GEN_DIGITS = 12
_GEN_RE = re.compile(rf"[0-9]{{{_GEN_DIGITS}}}\.json")
ACTIONS = ("promote", "rollback")
_FIELDS = {"alias_format", "model", "alias", "generation", "version", "previous", "action", "at"}
_OPTIONAL = {"by", "note"}


class AliasConflict(StoreError):
    """Another promoter moved the alias between this one's read and its write."""


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias) or alias in RESERVED:
        raise StoreError(
            f"alias {alias!r} is not allowed: use a lowercase letter, then up to 31 letters, "
            f"digits, '_' or '-' (e.g. prod, staging, canary); {sorted(RESERVED)} reserved"
        )
    return alias


def _check_model(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise StoreError(f"model name {name!r} must match {NAME_RE.pattern}")
    return name


def record_path(model: str, alias: str, generation: int) -> str:
    return f"{model}/{ALIASES_DIR}/{alias}/{generation:0{_GEN_DIGITS}d}.json"


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: generation N points it at ``version`` (from ``previous``)."""

    model: str
    alias: str
    generation: int
    version: str
    previous: str | None
    action: str  # promote | rollback
    at: str  # UTC ISO-8601
    by: str | None = None
    note: str | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "alias_format": ALIAS_FORMAT,
            "model": self.model,
            "alias": self.alias,
            "generation": self.generation,
            "version": self.version,
            "previous": self.previous,
            "action": self.action,
            "at": self.at,
        }
        doc.update({k: v for k, v in (("by", self.by), ("note", self.note)) if v is not None})
        return dumps_canonical(doc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "version": self.version,
            "from": self.previous,
            "action": self.action,
            "at": self.at,
            "by": self.by,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> AliasEvent:
        """The strict reader: every field present with its type, nothing unknown."""

        def bad(why: str) -> StoreError:
            return StoreError(f"alias record {where} is not valid: {why}")

        try:
            doc = loads_strict(data)
        except LabkitError as exc:
            raise bad(str(exc)) from None
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        missing, unknown = _FIELDS - set(doc), set(doc) - _FIELDS - _OPTIONAL
        if missing or unknown:
            raise bad(f"missing {sorted(missing)}, unknown {sorted(unknown)}")
        if doc["alias_format"] != ALIAS_FORMAT:
            raise bad(f"alias_format {doc['alias_format']!r}, this reader knows {ALIAS_FORMAT}")
        gen = doc["generation"]
        if not isinstance(gen, int) or isinstance(gen, bool) or not 1 <= gen <= MAX_GENERATIONS:
            raise bad(f"generation {gen!r}")
        for key in ("version", "previous"):
            value = doc[key]
            if not (value is None and key == "previous") and not (
                isinstance(value, str) and is_version(value)
            ):
                raise bad(f"{key} {value!r} is not MAJOR.MINOR.PATCH")
        if doc["action"] not in ACTIONS:
            raise bad(f"action {doc['action']!r}")
        for key in ("model", "alias", "at", "by", "note"):
            value = doc.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 1024):
                raise bad(f"{key} must be a string of at most 1024 characters")
        return cls(
            doc["model"],
            doc["alias"],
            gen,
            doc["version"],
            doc["previous"],
            doc["action"],
            doc["at"],
            doc.get("by"),
            doc.get("note"),
        )


@dataclass(frozen=True)
class Alias:
    """An alias and its whole history, oldest first; it points at the newest record."""

    model: str
    name: str
    history: tuple[AliasEvent, ...]

    @property
    def version(self) -> str:
        return self.history[-1].version

    @property
    def generation(self) -> int:
        return self.history[-1].generation

    def stack(self) -> list[str]:
        """The targets a rollback walks back through: promotions push, rollbacks pop."""
        stack: list[str] = []
        for event in self.history:
            if event.action == "rollback" and stack:
                stack.pop()
            if not stack or stack[-1] != event.version:
                stack.append(event.version)
        return stack

    def rollback_target(self) -> str | None:
        stack = self.stack()
        return stack[-2] if len(stack) >= 2 else None

    def targets(self) -> list[str]:
        """Every version the alias pointed at, newest first, each once: where a server
        looks when the newest target cannot be served on its host."""
        seen: list[str] = []
        for event in reversed(self.history):
            if event.version not in seen:
                seen.append(event.version)
        return seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.name,
            "version": self.version,
            "generation": self.generation,
            "rollback_to": self.rollback_target(),
            "history": [e.to_dict() for e in self.history],
        }


def _generations(files: Files, model: str, alias: str) -> list[int]:
    names = files.listdir(f"{model}/{ALIASES_DIR}/{alias}")
    return sorted(int(n[:_GEN_DIGITS]) for n in names if _GEN_RE.fullmatch(n))


def read_event(files: Files, model: str, alias: str, generation: int) -> AliasEvent:
    rel = record_path(model, alias, generation)
    event = AliasEvent.from_json(files.read(rel, MAX_RECORD_BYTES), where=rel)
    if (event.model, event.alias, event.generation) != (model, alias, generation):
        raise StoreError(
            f"alias record {rel} says {event.model}/{event.alias} generation "
            f"{event.generation}: a record must stay where it was written"
        )
    return event


def read_alias(
    files: Files,
    model: str,
    alias: str,
    *,
    reader: Callable[[int], AliasEvent] | None = None,
) -> Alias | None:
    """The alias with its history, or None when it was never set. ``reader`` lets a
    caller cache records (they never change) instead of reading each again."""
    _check_model(model)
    check_alias(alias)
    gens = _generations(files, model, alias)
    if not gens:
        return None
    if gens != list(range(1, len(gens) + 1)):
        raise StoreError(
            f"alias {model}/{alias} has generations {gens[:3]}…{gens[-3:]}: records are "
            "missing, so its history cannot be trusted; restore them from a backup"
        )
    read = reader or (lambda g: read_event(files, model, alias, g))
    return Alias(model, alias, tuple(read(g) for g in gens))


def read_aliases(files: Files, model: str) -> dict[str, Alias]:
    found = {}
    for name in files.listdir(f"{_check_model(model)}/{ALIASES_DIR}"):
        if ALIAS_RE.fullmatch(name) and name not in RESERVED:
            alias = read_alias(files, model, name)
            if alias is not None:
                found[name] = alias
    return found


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def move(
    files: Files,
    model: str,
    alias: str,
    version: str,
    *,
    action: str,
    expect: Alias | None,
    by: str | None = None,
    note: str | None = None,
) -> AliasEvent:
    """Point ``alias`` at ``version`` as the generation after ``expect`` (the state the
    caller decided on). Raises AliasConflict when another writer got there first."""
    check_alias(alias)
    _check_model(model)
    Version.parse(version)
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    generation = expect.generation + 1 if expect else 1
    if generation > MAX_GENERATIONS:
        raise StoreError(f"alias {model}/{alias} has {MAX_GENERATIONS} records, the most kept")
    event = AliasEvent(
        model,
        alias,
        generation,
        version,
        expect.version if expect else None,
        action,
        now(),
        by,
        note,
    )
    if not files.create(record_path(model, alias, generation), event.to_json()):
        raise AliasConflict(
            f"alias {model}/{alias} was moved by someone else at the same time "
            f"(generation {generation} exists now); look at the history and run again"
        )
    return event


def promote(
    files: Files,
    model: str,
    alias: str,
    version: str,
    *,
    by: str | None = None,
    note: str | None = None,
    retries: int = 5,
) -> tuple[Alias | None, AliasEvent | None]:
    """Point ``alias`` at ``version``; the caller has checked that the version exists and
    verifies. Returns (the alias before, the new record), or (alias, None) when it already
    pointed there. A concurrent move is retried: a promotion means "this version now"."""
    for _ in range(retries):
        current = read_alias(files, model, alias)
        if current is not None and current.version == version:
            return current, None
        try:
            return current, move(
                files, model, alias, version, action="promote", expect=current, by=by, note=note
            )
        except AliasConflict:
            continue
    raise AliasConflict(f"alias {model}/{alias} kept moving under {retries} attempts; run again")


def plan_rollback(files: Files, model: str, alias: str) -> tuple[Alias, str]:
    """The alias now and the version a rollback moves it to (its previous target)."""
    current = read_alias(files, model, alias)
    if current is None:
        raise StoreError(f"{model} has no alias {alias!r}: nothing to roll back")
    target = current.rollback_target()
    if target is None:
        raise StoreError(
            f"alias {model}/{alias} → {current.version} has no earlier target to roll back "
            f"to (history: {len(current.history)} record(s))"
        )
    return current, target
