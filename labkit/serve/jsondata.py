"""Numeric tensor data in JSON bodies, decoded straight into NumPy.

Python's ``json`` makes every number a float object in a list: ~32 bytes per element plus
its slot, about 32 times the text of a float32 tensor (a 60 MiB body cost 1.9 GB). So the
arrays of numbers under ``inputs[i].data`` are found on the raw bytes (keys named ``data``
outside strings, at the nesting level of input objects), cut out of the document, checked
against JSON's number and array grammar with vectorised scans, and parsed chunk by chunk into
the tensor's dtype. The rest of the document is small and goes through the strict loader.
Arrays the fast path does not take (booleans, strings) stay in the document, whose size is
capped separately. Scratch memory is a few chunks, whatever the body size.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import numpy as np

from labkit.serve.errors import BadRequest
from labkit.serve.jsonguard import check_json_depth

__all__ = ["NumericData", "decode_numbers", "extract_numeric_data"]

_CHUNK = 1 << 18
_KEY = b'"data"'
_INPUT_LEVEL = 3  # {"inputs": [{"data": ...}]}: the key sits inside three open brackets
_NUMERIC_BYTE = np.zeros(256, dtype=bool)  # what an array of JSON numbers is made of
_NUMERIC_BYTE[np.frombuffer(b"0123456789eE+-.,[] \t\r\n", dtype=np.uint8)] = True
_WS = re.compile(rb"[ \t\r\n]*")
_UNBRACKET = bytes.maketrans(b"[]", b"  ")
_LONG_INT = re.compile(rb"[0-9]{19}")  # may not fit int64: parse exactly
_TOO_LONG_INT = re.compile(rb"[0-9]{21}")
_OPEN, _CLOSE, _COMMA = 0x5B, 0x5D, 0x2C


@dataclass(frozen=True)
class NumericData:
    """A validated JSON array of numbers inside the body, not decoded yet."""

    buf: bytes | bytearray
    start: int  # at "["
    end: int  # just after the matching "]"
    count: int  # numbers in it
    floats: bool  # any fraction or exponent
    skeleton: bytes | None  # the brackets and commas, when nested (None: flat)


def _bad(pos: int, buf: bytes | bytearray) -> BadRequest:
    snippet = bytes(buf[max(pos - 10, 0) : pos + 10]).decode("ascii", "replace")
    return BadRequest(
        f"tensor data is not a valid JSON array of numbers near byte {pos} ({snippet!r})"
    )


def _span_end(buf: bytes | bytearray, start: int) -> int | None:
    """End of the bracketed array at ``start`` if it holds only numbers, else None."""
    depth = 0
    for a in range(start, len(buf), _CHUNK):
        arr = np.frombuffer(buf, dtype=np.uint8, count=min(_CHUNK, len(buf) - a), offset=a)
        other = np.flatnonzero(~_NUMERIC_BYTE[arr])
        if other.size:
            arr = arr[: int(other[0])]
        levels = np.cumsum((arr == _OPEN).astype(np.int64) - (arr == _CLOSE)) + depth
        closed = np.flatnonzero(levels == 0)
        if closed.size:
            return a + int(closed[0]) + 1
        if other.size or not levels.size:
            return None  # a string, a boolean, a brace...: not an array of numbers
        depth = int(levels[-1])
    return None


def _validate(buf: bytes | bytearray, start: int, end: int) -> NumericData:
    """JSON grammar of an array of numbers, checked with per-byte rules and separator pairs."""
    nested = buf.count(b"[", start, end) > 1
    skeleton: list[bytes] = []
    count = 0
    floats = False
    carry_kind, carry_digits = -1, 0
    for a in range(start, end, _CHUNK):
        b = min(a + _CHUNK, end)
        ctx = (
            bytes(buf[max(a - 2, 0) : a]).rjust(2, b" ")
            + bytes(buf[a:b])
            + (bytes(buf[b : b + 1]) or b" ")
        )
        ext = np.frombuffer(ctx, dtype=np.uint8)
        c, p, pp, n = ext[2:-1], ext[1:-2], ext[:-3], ext[3:]
        dig = (ext >= 0x30) & (ext <= 0x39)
        cd, pd, nd = dig[2:-1], dig[1:-2], dig[3:]
        p_e = (p == 0x65) | (p == 0x45)
        starts = (p == 0x2C) | (p == 0x5B) | (p == 0x20) | (p == 0x09) | (p == 0x0A) | (p == 0x0D)
        pp_starts = (
            (pp == 0x2C) | (pp == 0x5B) | (pp == 0x20) | (pp == 0x09) | (pp == 0x0A) | (pp == 0x0D)
        )
        is_e = (c == 0x65) | (c == 0x45)
        bad = (c == 0x2B) & ~(p_e & nd)  # "+" only in an exponent
        bad |= (c == 0x2D) & ~((starts | p_e) & nd)  # "-" starts a number or an exponent
        bad |= (c == 0x2E) & ~(pd & nd)  # "." between digits
        bad |= is_e & ~(pd & (nd | (n == 0x2B) | (n == 0x2D)))
        bad |= (c == 0x30) & nd & (starts | ((p == 0x2D) & pp_starts))  # no leading zeros
        if bad.any():
            raise _bad(a + int(np.flatnonzero(bad)[0]), buf)
        floats = floats or bool((c == 0x2E).any() or is_e.any())
        # separators: what lies between two of "[", "]", "," must fit JSON's array grammar
        sep = np.flatnonzero((c == _OPEN) | (c == _CLOSE) | (c == _COMMA))
        if not sep.size:
            carry_digits += int(cd.sum())
            continue
        csum = np.cumsum(cd, dtype=np.int64)
        kinds = c[sep].astype(np.int64)
        between = csum[sep]
        between[1:] -= csum[sep[:-1]]
        between[0] += carry_digits
        prev = np.empty_like(kinds)
        prev[0] = carry_kind
        prev[1:] = kinds[:-1]
        has = between > 0
        need = ((prev == _COMMA) | (prev == _OPEN)) & ((kinds == _COMMA) | (kinds == _CLOSE))
        need &= ~((prev == _OPEN) & (kinds == _CLOSE))  # [] is an empty array
        wrong = (need & ~has) | (((prev == _CLOSE) | (kinds == _OPEN)) & has)
        wrong |= (prev == _CLOSE) & (kinds == _OPEN)
        wrong[0] &= carry_kind >= 0
        if wrong.any():
            raise _bad(a + int(sep[int(np.flatnonzero(wrong)[0])]), buf)
        count += int((has & ((kinds == _COMMA) | (kinds == _CLOSE))).sum())
        if nested:
            skeleton.append(c[sep].tobytes())
        carry_kind = int(kinds[-1])
        carry_digits = int(csum[-1] - csum[sep[-1]])
    return NumericData(buf, start, end, count, floats, b"".join(skeleton) if nested else None)


def extract_numeric_data(
    buf: bytes | bytearray, max_depth: int
) -> tuple[bytes | bytearray, dict[str, NumericData]]:
    """The document with each input's numeric ``data`` array replaced by a placeholder
    string (random per request, so a client cannot forge one), and the arrays by placeholder.
    Also enforces ``max_depth`` (one scan of the bytes for both)."""
    probes, pos = [], buf.find(_KEY)
    while pos != -1:
        probes.append(pos)
        pos = buf.find(_KEY, pos + 1)
    keys = check_json_depth(buf, max_depth, probes=probes, probe_depth=_INPUT_LEVEL)
    if not keys:
        return buf, {}
    nonce = secrets.token_hex(16)
    pieces: list[bytes | bytearray | memoryview] = []
    found: dict[str, NumericData] = {}
    view, last = memoryview(buf), 0
    for key in keys:
        colon = _skip_ws(buf, key + len(_KEY))
        if buf[colon : colon + 1] != b":":
            continue
        start = _skip_ws(buf, colon + 1)
        if buf[start : start + 1] != b"[":
            continue
        end = _span_end(buf, start)
        if end is None:
            continue  # not only numbers: the strict loader sees it
        name = f"@labkit-data-{nonce}-{len(found)}"
        found[name] = _validate(buf, start, end)
        pieces += [view[last:start], f'"{name}"'.encode()]
        last = end
    pieces.append(view[last:])
    return b"".join(pieces), found


def _skip_ws(buf: bytes | bytearray, pos: int) -> int:
    found = _WS.match(buf, pos)
    return pos if found is None else found.end()


def _expected_skeleton(shape: tuple[int, ...]) -> bytes:
    inner = b""
    for dim in reversed(shape):
        inner = (
            b"[" + b",".join([inner] * dim) + b"]"
            if inner
            else b"[" + b"," * max(dim - 1, 0) + b"]"
        )
    return inner


def _chunks(data: NumericData) -> list[tuple[int, int]]:
    """Cut the array's interior at commas into pieces of about one chunk."""
    buf, end = data.buf, data.end - 1
    out, pos = [], data.start + 1
    while pos < end:
        cut = buf.find(b",", min(pos + _CHUNK, end), end) if pos + _CHUNK < end else -1
        cut = end if cut == -1 else cut
        out.append((pos, cut))
        pos = cut + 1
    return out


def decode_numbers(
    data: NumericData, dtype: np.dtype, datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    """Parse the numbers into an array of ``shape`` and ``dtype``: exact integers, range and
    finiteness checked, the same refusals as the list path of :func:`decode_json_data`."""
    count = 1
    for d in shape:
        count *= d
    if dtype.kind not in "iuf":
        held = "float64" if data.floats else "int64"
        if dtype == np.dtype(object):
            raise BadRequest(f"input {name!r}: BYTES data must be strings")
        raise BadRequest(f"input {name!r}: data holds {held} values, datatype says {datatype}")
    if dtype.kind in "iu" and data.floats:
        raise BadRequest(f"input {name!r}: data holds float64 values, datatype says {datatype}")
    if data.count != count:
        raise BadRequest(f"input {name!r}: {data.count} elements for shape {list(shape)}")
    if data.skeleton is not None and data.skeleton != _expected_skeleton(shape):
        raise BadRequest(
            f"input {name!r}: data is not a regular array nested as shape "
            f"{list(shape)}; send it flat or nested exactly as the shape"
        )
    out = np.empty(count, dtype=dtype)
    if not count:
        return out.reshape(shape)
    at = 0
    for a, b in _chunks(data):
        text = bytes(data.buf[a:b]).translate(_UNBRACKET)
        values = _parse(text, dtype, datatype, name)
        out[at : at + values.size] = values
        at += values.size
    if at != count:  # the grammar pass counted them; a mismatch is a bug, not bad input
        raise RuntimeError(f"parsed {at} numbers, expected {count}")
    return out.reshape(shape)


def _parse(text: bytes, dtype: np.dtype, datatype: str, name: str) -> np.ndarray:
    try:
        if dtype.kind == "f":
            values = np.fromstring(text, dtype=np.float64, sep=",")
            with np.errstate(over="ignore"):
                cast = values.astype(dtype)
            if not np.isfinite(values).all():
                raise BadRequest(f"input {name!r}: values overflow a 64-bit float")
            if not np.isfinite(cast).all():
                raise BadRequest(f"input {name!r}: values overflow {datatype}")
            return cast
        if _TOO_LONG_INT.search(text):  # no 64-bit integer has 21 digits; int() would be slow
            raise BadRequest(f"input {name!r}: values out of range for {datatype}")
        if dtype == np.dtype(np.uint64) or _LONG_INT.search(text):
            exact = [int(t) for t in text.split(b",")]  # rare: 19+ digits or UINT64
            info = np.iinfo(dtype)
            if exact and (min(exact) < info.min or max(exact) > info.max):
                raise BadRequest(f"input {name!r}: values out of range for {datatype}")
            return np.array(exact, dtype=dtype)
        ints = np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError as exc:
        if isinstance(exc, BadRequest):
            raise
        raise BadRequest(
            f"input {name!r}: data is not a regular array of numbers ({exc})"
        ) from None
    info = np.iinfo(dtype)
    if ints.size and (int(ints.min()) < info.min or int(ints.max()) > info.max):
        raise BadRequest(f"input {name!r}: values out of range for {datatype}")
    return ints.astype(dtype)
