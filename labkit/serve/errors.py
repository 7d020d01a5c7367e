"""HTTP-facing errors of the inference server.

Every refusal the server sends is one of these, so a handler never guesses a status code:
the code travels with the error, and the body is always ``{"error": "<message>"}``.
"""

from __future__ import annotations

from labkit.errors import InputError, LabkitError

__all__ = [
    "BadRequest",
    "ClientGone",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServeError",
    "Unauthorized",
]


class ServeError(LabkitError):
    """An error with the HTTP status the server answers with."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    def headers(self) -> dict[str, str]:
        """Response headers that go with this refusal."""
        return {}


class Unauthorized(ServeError):
    """Missing or wrong bearer token (401)."""

    status = 401

    def headers(self) -> dict[str, str]:
        return {"www-authenticate": "Bearer"}


class RequestTimeout(ServeError):
    """The body did not arrive in time (408); the connection is closed after the answer."""

    status = 408

    def headers(self) -> dict[str, str]:
        return {"connection": "close"}


class ClientGone(ServeError):
    """The client closed the connection mid-request: nobody to answer (logged as 499, the
    status nginx uses for it, never counted as a server error)."""

    status = 499


class BadRequest(ServeError, InputError):
    """The request does not match the protocol or the model's signature (400)."""

    status = 400


class NotFound(ServeError):
    """Unknown model or version (404)."""

    status = 404


class PayloadTooLarge(ServeError):
    """The body is larger than the configured cap (413)."""

    status = 413

    def headers(self) -> dict[str, str]:
        return {"connection": "close"}  # the rest of the body is not read


class Overloaded(ServeError):
    """Queue or concurrency limit reached; the client should retry later (503 + Retry-After)."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1, status: int = 503) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}
