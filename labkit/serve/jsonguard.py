"""JSON from untrusted bodies, worded for HTTP: nesting depth measured before parsing,
duplicate keys refused. The scanner and the parser are ``labkit.bundle._json``'s (one home
for strict JSON); this module only turns their refusals into :class:`BadRequest`.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.bundle._json import DuplicateKey, exceeds_depth, parse
from labkit.serve.errors import BadRequest

__all__ = ["check_json_depth", "loads_strict"]


def check_json_depth(buf: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` (objects and arrays), without parsing it."""
    if exceeds_depth(buf, limit):
        raise BadRequest(f"JSON nesting deeper than {limit} levels; flatten the request")


def loads_strict(buf: bytes, *, max_depth: int) -> Any:
    """Parse JSON bytes: depth-capped, duplicate keys refused, errors as :class:`BadRequest`."""
    check_json_depth(buf, max_depth)
    try:
        return parse(buf, allow_nan=True)
    except DuplicateKey as exc:
        raise BadRequest(f"duplicate JSON key {exc.key!r}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
