"""Strict JSON for manifests: duplicate keys, NaN/Infinity and deep nesting are refused.

Python's ``json`` keeps the last of duplicate keys silently, which lets two readers of one
manifest see different things; ``object_pairs_hook`` lets us refuse instead.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.errors import FormatError

MAX_DEPTH = 32


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"duplicate key {key!r} in manifest JSON", rule="json")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise FormatError(f"{name} is not allowed in manifest JSON", rule="json")


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_strict(data: bytes) -> Any:
    """Parse manifest bytes, refusing anything two JSON readers could disagree on."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"manifest is not UTF-8 ({exc})", rule="json") from None
    if _depth(text) > MAX_DEPTH:
        raise FormatError(f"manifest JSON nests deeper than {MAX_DEPTH} levels", rule="json")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(f"manifest is not valid JSON: {exc}", rule="json") from None


def dumps_canonical(obj: Any) -> bytes:
    """Stable JSON (sorted keys, no NaN) used for manifests and digests."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
