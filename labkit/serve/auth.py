"""The bearer token, checked the same way by every front end.

``Authorization: Bearer <token>`` (gRPC: metadata ``authorization``). The scheme is
case-insensitive (RFC 7235), the token is compared in constant time. More than one
Authorization header is refused outright (400), token or not: a proxy in front that reads
the first while the server reads the last could be made to let a request through.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from labkit.serve.errors import BadRequest, Unauthorized

__all__ = ["authorization_ok", "check_authorization"]


def authorization_ok(header: bytes, token: bytes) -> bool:
    """``Bearer <token>``; the scheme is case-insensitive (RFC 7235), the token is not."""
    scheme, _, credentials = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)


def check_authorization(values: Sequence[bytes], token: bytes | None, *, required: bool) -> None:
    """``values``: every Authorization header (or metadata entry) the request carries.
    ``required`` is false for the open health probes (duplicates are refused even there)."""
    if len(values) > 1:
        raise BadRequest(
            f"{len(values)} Authorization headers; send exactly one "
            "(a proxy and this server could read different ones)"
        )
    if token is None or not required:
        return
    if not values or not authorization_ok(values[0], token):
        raise Unauthorized("missing or wrong bearer token")
