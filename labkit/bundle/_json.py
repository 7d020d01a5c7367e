"""Strict JSON, the one home: depth measured before parsing, duplicate keys and (optionally)
NaN/Infinity refused. Manifests use it here; ``labkit.serve.jsonguard`` uses it for request
bodies and words the errors for HTTP.

Python's ``json`` keeps the last of duplicate keys silently, which lets two readers of one
document see different things; ``object_pairs_hook`` lets us refuse instead. It also recurses
per nesting level, so a body of 64 MiB of ``[`` must be measured, not parsed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from labkit.errors import FormatError

MAX_DEPTH = 32
_CHUNK = 1 << 18  # bounded scratch memory per scan (a few MiB), whatever the input size


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class NonFinite(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` where they are not allowed."""


class TooDeep(ValueError):
    """Objects and arrays nested deeper than the limit."""


def scan_depth(
    buf: bytes | bytearray, limit: int, *, probes: Sequence[int] = (), probe_depth: int = 0
) -> list[int]:
    """Raise TooDeep if JSON ``buf`` nests objects/arrays deeper than ``limit``, without
    parsing it.

    Brackets inside strings do not count; escapes are honoured. Vectorised in chunks so a
    64 MiB body costs milliseconds and no recursion. (UTF-8 never encodes a non-ASCII
    character with ASCII bytes, so scanning bytes is exact.) ``probes`` are byte offsets of
    ``"`` characters; returned are those that open a string (not inside one, not escaped)
    at nesting level ``probe_depth`` -- how :mod:`labkit.serve.jsondata` finds the
    ``"data"`` keys of input objects without parsing.
    """
    import numpy as np  # lazily: the torch-free request vocabulary imports this layer

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
            raise TooDeep(f"nesting deeper than {limit} levels")
        while k < len(pending) and pending[k] < start + arr.size:
            i = pending[k] - start
            if i >= 0 and quotes[i] and inside[i] and levels[i] == probe_depth:
                found.append(pending[k])
            k += 1
        depth = int(levels[-1]) if levels.size else depth
        in_string = int(inside[-1]) if arr.size else in_string
        bs_run = int(run[-1]) if arr.size else bs_run
    return found


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise NonFinite(name)


def parse(text: str | bytes | bytearray, **hooks: Any) -> Any:
    """``json.loads`` that raises DuplicateKey and NonFinite; ``hooks`` (``parse_float``,
    ``parse_int``, ``parse_constant``) add a caller's own number rules."""
    return json.loads(
        text,
        object_pairs_hook=no_duplicates,
        parse_constant=hooks.pop("parse_constant", _no_constant),
        **hooks,
    )


def loads_strict(data: bytes) -> Any:
    """Parse manifest bytes, refusing anything two JSON readers could disagree on."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"manifest is not UTF-8 ({exc})", rule="json") from None
    try:
        scan_depth(data, MAX_DEPTH)
    except TooDeep:
        raise FormatError(
            f"manifest JSON nests deeper than {MAX_DEPTH} levels", rule="json"
        ) from None
    try:
        return parse(text)
    except DuplicateKey as exc:
        raise FormatError(f"duplicate key {exc.key!r} in manifest JSON", rule="json") from None
    except NonFinite as exc:
        raise FormatError(f"{exc} is not allowed in manifest JSON", rule="json") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4,300 digits
        raise FormatError(f"manifest is not valid JSON: {exc}", rule="json") from None


def dumps_canonical(obj: Any) -> bytes:
    """Stable JSON (sorted keys, no NaN) used for manifests and digests."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
