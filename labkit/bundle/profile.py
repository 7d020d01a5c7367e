"""Host profiles as a type: how ``handoff tune`` found one host runs one bundle fastest.

A profile lives outside the immutable bundle and anyone who can write beside a store (or in
a profile directory) can write one, so it is untrusted input, read like a manifest:
:meth:`HostProfile.from_json` is the one strict reader (UTF-8 JSON, at most
:data:`MAX_PROFILE_BYTES`, nesting at most :data:`MAX_PROFILE_DEPTH`, no duplicate keys, no
NaN, known fields only, every field typed and bounded) and :meth:`HostProfile.to_json` the
one writer. What the profile chooses must also fit this host and this bundle
(:meth:`HostProfile.check_fit`): threads at least 1 and at most the host's cores, streams ×
threads at most :data:`STREAMS_PER_CORE` × cores, a variant the bundle has and whose
``runs_on`` allows the engine. Whether the engine and precision exist here is the runtime's
question (``labkit.runtime.profile``): engines are registered there.

Every refusal is a :class:`~labkit.errors.FormatError` with rule ``profile``; readers turn it
into "ignored: reason", never into a failure to load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.bundle._json import DuplicateKey, NonFinite, TooDeep, parse, scan_depth
from labkit.bundle.manifest import NAME_RE, Manifest
from labkit.errors import FormatError

PROFILE_VERSION = 1
MAX_PROFILE_BYTES = 1 << 20
#: The deepest a profile written by ``handoff tune`` nests is 5 (a golden check's tolerance).
MAX_PROFILE_DEPTH = 8
#: Rows in ``runners_up`` and ``golden_checks`` (a tune times far fewer).
MAX_ROWS = 1024
#: streams × threads may be at most this many times the host's cores: a little
#: oversubscription can pay for I/O-bound serving, thousands of threads never do.
STREAMS_PER_CORE = 2
OBJECTIVES = ("latency", "throughput")
CHECKS = ("pass", "fail", "error", "skipped")
RULE = "profile"
_ENGINE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_TEXT = 4096
_BIG = 1e300


def _fail(where: str, message: str) -> FormatError:
    return FormatError(f"profile field {where!r}: {message}", rule=RULE)


def _obj(value: Any, where: str, known: tuple[str, ...], required: tuple[str, ...]) -> Any:
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown[:5]!r}; known: {list(known)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise _fail(where, f"missing field(s) {missing!r}")
    return value


def _str(value: Any, where: str, *, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise _fail(where, f"must be a string of at most {_MAX_TEXT} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(where, f"{value[:80]!r} must match {pattern.pattern}")
    return value


def _int(value: Any, where: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be an integer, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise _fail(where, f"{value} must be {bound}")
    return value


def _num(value: Any, where: str, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    # 1e999 parses to infinity and 10**400 has no float; NaN is refused by the parser.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < _BIG:
        raise _fail(where, f"must be a finite number, got {str(value)[:40]}")
    return float(value)


def _numbers(value: Any, where: str) -> dict[str, float | None]:
    if not isinstance(value, dict) or len(value) > 32:
        raise _fail(where, "must be an object of at most 32 numbers")
    return {
        _str(k, f"{where}.<key>"): _num(v, f"{where}.{k}", nullable=True) for k, v in value.items()
    }


def _rows(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_ROWS:
        raise _fail(where, f"must be a list of at most {MAX_ROWS} rows")
    return value


@dataclass(frozen=True)
class Choice:
    """A way of running the bundle: what :class:`labkit.runtime.engines.Candidate` holds,
    every field required (a profile states its thread count, never "whatever")."""

    variant: str
    engine: str
    precision: str
    threads: int
    streams: int

    _KEYS = ("variant", "engine", "precision", "threads", "streams")

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Choice:
        c = _obj(d, where, cls._KEYS, cls._KEYS)
        return cls(
            _str(c["variant"], f"{where}.variant", pattern=NAME_RE),
            _str(c["engine"], f"{where}.engine", pattern=_ENGINE_RE),
            _str(c["precision"], f"{where}.precision", pattern=_ENGINE_RE),
            _int(c["threads"], f"{where}.threads", 1, 1 << 16),
            _int(c["streams"], f"{where}.streams", 1, 1 << 16),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._KEYS}


@dataclass(frozen=True)
class Row:
    """One configuration as timed: ``chosen``, ``default`` and each of ``runners_up``."""

    candidate: Choice
    label: str
    stats: Mapping[str, float | None]
    vs_default: Mapping[str, float | None]
    cost: Mapping[str, float | None]

    _KEYS = ("candidate", "label", "stats", "vs_default", "cost")

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Row:
        r = _obj(d, where, cls._KEYS, cls._KEYS)
        return cls(
            Choice.from_dict(r["candidate"], f"{where}.candidate"),
            _str(r["label"], f"{where}.label"),
            _numbers(r["stats"], f"{where}.stats"),
            _numbers(r["vs_default"], f"{where}.vs_default"),
            _numbers(r["cost"], f"{where}.cost"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "label": self.label,
            "stats": dict(self.stats),
            "vs_default": dict(self.vs_default),
            "cost": dict(self.cost),
        }


@dataclass(frozen=True)
class GoldenCheck:
    """A candidate's golden check on the host: ``pass``, ``fail`` (with the failures),
    ``error`` (the engine could not run it) or ``skipped`` (not reached in the budget)."""

    label: str
    check: str
    candidate: Mapping[str, Any]
    max_rel: float | None = None
    tolerance: Mapping[str, Any] | None = None
    reason: str | None = None

    _KEYS = ("label", "check", "candidate", "max_rel", "tolerance", "reason")

    @classmethod
    def from_dict(cls, d: Any, where: str) -> GoldenCheck:
        g = _obj(d, where, cls._KEYS, ("label", "check", "candidate"))
        check = _str(g["check"], f"{where}.check")
        if check not in CHECKS:
            raise _fail(f"{where}.check", f"{check!r} is not one of {list(CHECKS)}")
        cand = _obj(g["candidate"], f"{where}.candidate", Choice._KEYS, ())
        tol = g.get("tolerance")
        if tol is not None:
            _obj(tol, f"{where}.tolerance", ("rel", "metric", "min_metric"), ())
        reason = g.get("reason")
        return cls(
            _str(g["label"], f"{where}.label"),
            check,
            cand,
            _num(g.get("max_rel"), f"{where}.max_rel", nullable=True),
            tol,
            None if reason is None else _str(reason, f"{where}.reason"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "check": self.check,
            "candidate": dict(self.candidate),
        }
        for key in ("max_rel", "tolerance", "reason"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


_KEYS = (
    "profile_version",
    "created",
    "bundle",
    "host",
    "engines",
    "objective",
    "budget_s",
    "elapsed_s",
    "method",
    "throughput_batch",
    "chosen",
    "default",
    "runners_up",
    "golden_checks",
    "search",
)
_REQUIRED = tuple(k for k in _KEYS if k != "search")
_BUNDLE_KEYS = ("name", "version", "manifest_digest")
_HOST_KEYS = ("key", "model", "machine", "flags", "logical_cores", "physical_cores")


@dataclass(frozen=True)
class HostProfile:
    """Everything a profile file says, checked. ``bundle``/``host``/``engines`` are what it
    is keyed on; ``chosen.candidate`` is what would run."""

    created: str
    bundle: Mapping[str, str]
    host: Mapping[str, Any]
    engines: Mapping[str, str]
    objective: str
    budget_s: float
    elapsed_s: float
    method: str
    throughput_batch: int
    chosen: Row
    default: Row
    runners_up: tuple[Row, ...] = ()
    golden_checks: tuple[GoldenCheck, ...] = ()
    search: Mapping[str, Any] | None = None  # how the search spent its budget (report only)
    profile_version: int = PROFILE_VERSION

    @classmethod
    def from_json(cls, data: bytes) -> HostProfile:
        """Parse profile bytes strictly; raise FormatError (rule ``profile``) naming why."""
        if len(data) > MAX_PROFILE_BYTES:
            raise FormatError(
                f"profile is {len(data)} bytes; at most {MAX_PROFILE_BYTES}", rule=RULE
            )
        try:
            text = data.decode("utf-8")
            scan_depth(data, MAX_PROFILE_DEPTH)
            raw = parse(text)
        except UnicodeDecodeError:
            raise FormatError("profile is not UTF-8", rule=RULE) from None
        except TooDeep:
            raise FormatError(
                f"profile JSON nests deeper than {MAX_PROFILE_DEPTH} levels", rule=RULE
            ) from None
        except DuplicateKey as exc:
            raise FormatError(f"duplicate key {exc.key!r} in profile JSON", rule=RULE) from None
        except NonFinite as exc:
            raise FormatError(f"{exc} is not allowed in profile JSON", rule=RULE) from None
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4,300 digits
            raise FormatError(f"profile is not valid JSON: {exc}", rule=RULE) from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> HostProfile:
        p = _obj(raw, "<root>", _KEYS, _REQUIRED)
        version = p["profile_version"]
        if version != PROFILE_VERSION or isinstance(version, bool):
            raise _fail(
                "profile_version",
                f"{version!r} is not {PROFILE_VERSION}; run 'handoff tune' again to rewrite it",
            )
        b = _obj(p["bundle"], "bundle", _BUNDLE_KEYS, _BUNDLE_KEYS)
        h = _obj(p["host"], "host", _HOST_KEYS, _HOST_KEYS)
        flags = h["flags"]
        if not isinstance(flags, list) or len(flags) > 64:
            raise _fail("host.flags", "must be a list of at most 64 strings")
        engines = p["engines"]
        if not isinstance(engines, dict) or len(engines) > 16:
            raise _fail("engines", "must be an object of at most 16 engine versions")
        objective = _str(p["objective"], "objective")
        if objective not in OBJECTIVES:
            raise _fail("objective", f"{objective!r} is not one of {list(OBJECTIVES)}")
        search = p.get("search")
        if search is not None and not isinstance(search, dict):
            raise _fail("search", "must be an object")
        return cls(
            created=_str(p["created"], "created"),
            bundle={k: _str(b[k], f"bundle.{k}") for k in _BUNDLE_KEYS},
            host={
                "key": _str(h["key"], "host.key"),
                "model": _str(h["model"], "host.model"),
                "machine": _str(h["machine"], "host.machine"),
                "flags": [_str(f, "host.flags[]") for f in flags],
                "logical_cores": None
                if h["logical_cores"] is None
                else _int(h["logical_cores"], "host.logical_cores", 1),
                "physical_cores": _int(h["physical_cores"], "host.physical_cores", 1),
            },
            engines={
                _str(k, "engines.<name>", pattern=_ENGINE_RE): _str(v, f"engines.{k}")
                for k, v in engines.items()
            },
            objective=objective,
            budget_s=_positive(p["budget_s"], "budget_s"),
            elapsed_s=_num(p["elapsed_s"], "elapsed_s") or 0.0,
            method=_str(p["method"], "method"),
            throughput_batch=_int(p["throughput_batch"], "throughput_batch", 1),
            chosen=Row.from_dict(p["chosen"], "chosen"),
            default=Row.from_dict(p["default"], "default"),
            runners_up=tuple(
                Row.from_dict(r, f"runners_up[{i}]")
                for i, r in enumerate(_rows(p["runners_up"], "runners_up"))
            ),
            golden_checks=tuple(
                GoldenCheck.from_dict(g, f"golden_checks[{i}]")
                for i, g in enumerate(_rows(p["golden_checks"], "golden_checks"))
            ),
            search=search,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "profile_version": self.profile_version,
            "created": self.created,
            "bundle": dict(self.bundle),
            "host": dict(self.host),
            "engines": dict(self.engines),
            "objective": self.objective,
            "budget_s": self.budget_s,
            "elapsed_s": self.elapsed_s,
            "method": self.method,
            "throughput_batch": self.throughput_batch,
            "chosen": self.chosen.to_dict(),
            "default": self.default.to_dict(),
            "runners_up": [r.to_dict() for r in self.runners_up],
            "golden_checks": [g.to_dict() for g in self.golden_checks],
        }
        if self.search is not None:
            out["search"] = self.search
        return out

    def to_json(self) -> bytes:
        """The bytes ``handoff tune`` writes (sorted keys, 2-space indent, no NaN)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        return (text + "\n").encode("utf-8")

    def check_fit(self, manifest: Manifest, cores: int) -> None:
        """Refuse (FormatError, rule ``profile``) a choice that is not for this bundle or
        does not fit a host with ``cores`` usable cores."""
        if self.bundle["manifest_digest"] != manifest.digest:
            raise FormatError(
                f"it was tuned for another bundle (manifest digest "
                f"{self.bundle['manifest_digest'][:12]}…, this one {manifest.digest[:12]}…)",
                rule=RULE,
            )
        c = self.chosen.candidate
        if c.threads > cores:
            raise _fail(
                "chosen.candidate.threads", f"{c.threads} threads > this host's {cores} cores"
            )
        if c.threads * c.streams > STREAMS_PER_CORE * cores:
            raise _fail(
                "chosen.candidate.streams",
                f"{c.streams} streams × {c.threads} threads > {STREAMS_PER_CORE} × this "
                f"host's {cores} cores",
            )
        names = {v.name: v for v in manifest.variants}
        if c.variant not in names:
            raise _fail(
                "chosen.candidate.variant",
                f"{c.variant!r} is not a variant of the bundle ({', '.join(names)})",
            )
        if not names[c.variant].runs_on_engine(c.engine):
            raise _fail(
                "chosen.candidate.engine",
                f"variant {c.variant!r} runs on {list(names[c.variant].runs_on or ())}, "
                f"not {c.engine!r}",
            )


def _positive(value: Any, where: str) -> float:
    x = _num(value, where)
    if x is None or not x > 0:
        raise _fail(where, f"must be > 0, got {value!r}")
    return x
