"""JSON from untrusted bodies: nesting depth measured before parsing, duplicate keys refused,
numbers that JSON cannot hold (NaN, Infinity, overflowing or 5,000-digit literals) refused.

Python's ``json`` recurses per nesting level, keeps the last of duplicate keys silently,
accepts ``NaN``/``Infinity``, turns ``1e999`` into ``inf`` and raises a bare ``ValueError``
on an integer of more than 4,300 digits: a body of 64 MiB of ``[`` or one long number must
cost milliseconds and a clear 400, not a RecursionError or a 500. The depth scanner and the
duplicate-key parser are ``labkit.bundle._json``'s (one home for strict JSON); this module
adds the protocol's number rules and words every refusal as a :class:`BadRequest`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from labkit.bundle._json import DuplicateKey, TooDeep, parse, scan_depth
from labkit.serve.errors import BadRequest

__all__ = ["check_json_depth", "loads_strict"]

_MAX_INT_DIGITS = 64  # no field of the protocol needs more; int() of 5,000 digits is slow


def check_json_depth(
    buf: bytes | bytearray, limit: int, *, probes: Sequence[int] = (), probe_depth: int = 0
) -> list[int]:
    """Refuse JSON nested deeper than ``limit``, without parsing it; return the ``probes``
    (offsets of ``"``) that open a string at level ``probe_depth``. The scanner is
    ``labkit.bundle._json.scan_depth`` (one home for strict JSON); here it is worded for HTTP.
    """
    try:
        return scan_depth(buf, limit, probes=probes, probe_depth=probe_depth)
    except TooDeep:
        raise BadRequest(f"JSON nesting deeper than {limit} levels; flatten the request") from None


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON number; send finite numbers (or binary tensors)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"number {text[:40]!r} overflows a 64-bit float")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise BadRequest(
            f"integer literal of {digits} digits; at most {_MAX_INT_DIGITS} are accepted"
        )
    return int(text)


def loads_strict(buf: bytes | bytearray, *, max_depth: int) -> Any:
    """Parse JSON bytes: depth-capped, duplicate keys and non-finite or huge numbers refused,
    every error a :class:`BadRequest`."""
    check_json_depth(buf, max_depth)
    try:
        return parse(
            buf, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except BadRequest:
        raise
    except DuplicateKey as exc:
        raise BadRequest(f"duplicate JSON key {exc.key!r}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError included
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
