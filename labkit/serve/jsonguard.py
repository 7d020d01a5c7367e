"""JSON from untrusted bodies: nesting depth measured before parsing, duplicate keys refused.

Python's ``json`` recurses per nesting level and keeps the last of duplicate keys silently;
a body of 64 MiB of ``[`` must cost milliseconds and a clear 400, not a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from labkit.serve.errors import BadRequest

__all__ = ["check_json_depth", "loads_strict"]

_CHUNK = 1 << 20


def check_json_depth(buf: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` (objects and arrays), without parsing it.

    Brackets inside strings do not count; escapes are honoured. Vectorised in chunks so a
    64 MiB body costs milliseconds and no recursion.
    """
    depth = 0
    in_string = 0
    bs_run = 0  # backslashes ending the previous chunk
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
        depth = int(levels[-1]) if levels.size else depth
        in_string = int(inside[-1]) if arr.size else in_string
        bs_run = int(run[-1]) if arr.size else bs_run


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def loads_strict(buf: bytes, *, max_depth: int) -> Any:
    """Parse JSON bytes: depth-capped, duplicate keys refused, errors as :class:`BadRequest`."""
    check_json_depth(buf, max_depth)
    try:
        return json.loads(buf, object_pairs_hook=_refuse_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
