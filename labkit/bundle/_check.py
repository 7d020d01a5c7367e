"""Small helpers shared by the manifest's parsers: one message style, one rule per refusal.

Every refusal reads ``manifest field 'a.b[2].c': what is wrong`` and carries the rule of
``docs/bundle-format.md`` that was broken (``schema`` unless said otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from labkit.errors import FormatError

HEX64 = re.compile(r"[0-9a-f]{64}")
Obj = Mapping[str, Any]


def fail(field: str, message: str, rule: str = "schema") -> FormatError:
    return FormatError(f"manifest field {field!r}: {message}", rule=rule)


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))


def require(obj: Obj, key: str, types: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]``, refused when missing or of another JSON type (bool is not an int)."""
    if key not in obj:
        raise fail(f"{where}{key}", "is missing")
    return check_type(obj[key], types, f"{where}{key}")


def optional(obj: Obj, key: str, types: type | tuple[type, ...], where: str) -> Any:
    """Like :func:`require`, but a missing key reads as None."""
    if key not in obj:
        return None
    return check_type(obj[key], (*_as_tuple(types), type(None)), f"{where}{key}")


def check_type(value: Any, types: type | tuple[type, ...], field: str) -> Any:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise fail(field, f"expected {_type_names(types)}, got {type(value).__name__}")
    return value


def obj(value: Any, field: str) -> Obj:
    if not isinstance(value, dict):
        raise fail(field, "must be an object")
    return value


def hex64(value: str, field: str) -> str:
    if not HEX64.fullmatch(value):
        raise fail(field, "must be 64 lowercase hex digits")
    return value


def extra(o: Obj, known: tuple[str, ...]) -> dict[str, Any]:
    """The keys a reader does not know: kept so that re-writing a manifest loses nothing."""
    return {k: v for k, v in o.items() if k not in known}
