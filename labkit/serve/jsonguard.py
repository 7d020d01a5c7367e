"""JSON from untrusted bodies: nesting depth measured before parsing, duplicate keys refused,
numbers that JSON cannot hold (NaN, Infinity, overflowing or 5,000-digit literals) refused.

Python's ``json`` recurses per nesting level, keeps the last of duplicate keys silently,
accepts ``NaN``/``Infinity``, turns ``1e999`` into ``inf`` and raises a bare ``ValueError``
on an integer of more than 4,300 digits: a body of 64 MiB of ``[`` or one long number must
cost milliseconds and a clear 400, not a RecursionError or a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from labkit.serve.errors import BadRequest

__all__ = ["check_json_depth", "loads_strict"]

_CHUNK = 1 << 18  # bounded scratch memory per scan (a few MiB), whatever the body size
_MAX_INT_DIGITS = 64  # no field of the protocol needs more; int() of 5,000 digits is slow


def check_json_depth(buf: bytes | bytearray, limit: int, *, probes: Sequence[int] = (),
                     probe_depth: int = 0) -> list[int]:
    """Refuse JSON nested deeper than ``limit`` (objects and arrays), without parsing it.

    Brackets inside strings do not count; escapes are honoured. Vectorised in chunks so a
    64 MiB body costs milliseconds and no recursion. ``probes`` are byte offsets of ``"``
    characters; returned are those that open a string (not inside one, not escaped) at
    nesting level ``probe_depth`` -- how :mod:`labkit.serve.jsondata` finds the ``"data"``
    keys of input objects without parsing.
    """
    depth = 0
    in_string = 0
    bs_run = 0  # backslashes ending the previous chunk
    found: list[int] = []
    pending = sorted(probes)
    k = 0
    for start in range(0, len(buf), _CHUNK):
        arr = np.frombuffer(buf, dtype=np.uint8, count=min(_CHUNK, len(buf) - start), offset=start)
        idx = np.arange(arr.size, dtype=np.int64)
        is_bs = arr == 0x5C
        last_other = np.maximum.accumulate(np.where(is_bs, -1 - bs_run, idx))
        run = idx - last_other  # backslashes ending at i (0 when arr[i] is not one)
        prev_run = np.empty_like(run)
        prev_run[0] = bs_run
        prev_run[1:] = run[:-1]
        quotes = (arr == 0x22) & (prev_run % 2 == 0)
        inside = (np.cumsum(quotes) + in_string) % 2 == 1
        delta = ((arr == 0x5B) | (arr == 0x7B)).astype(np.int64)
        delta -= ((arr == 0x5D) | (arr == 0x7D)).astype(np.int64)
        delta[inside] = 0
        levels = np.cumsum(delta) + depth
        if levels.size and int(levels.max()) > limit:
            raise BadRequest(f"JSON nesting deeper than {limit} levels; flatten the request")
        while k < len(pending) and pending[k] < start + arr.size:
            i = pending[k] - start
            if i >= 0 and quotes[i] and inside[i] and levels[i] == probe_depth:
                found.append(pending[k])
            k += 1
        depth = int(levels[-1]) if levels.size else depth
        in_string = int(inside[-1]) if arr.size else in_string
        bs_run = int(run[-1]) if arr.size else bs_run
    return found


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


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
        raise BadRequest(f"integer literal of {digits} digits; at most {_MAX_INT_DIGITS} "
                         "are accepted")
    return int(text)


def loads_strict(buf: bytes | bytearray, *, max_depth: int) -> Any:
    """Parse JSON bytes: depth-capped, duplicate keys and non-finite or huge numbers refused,
    every error a :class:`BadRequest`."""
    check_json_depth(buf, max_depth)
    try:
        return json.loads(buf, object_pairs_hook=_refuse_duplicates,
                          parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError included
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
