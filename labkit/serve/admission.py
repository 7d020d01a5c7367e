"""Admission shared by every front end: inferences in flight, and request bytes held at once.

REST and gRPC take their slots from the same :class:`Admission`, so ``max_inflight`` and the
memory budget bound the server, not each protocol. A :class:`Ticket` is one request's share;
``release`` gives back whatever it took, on every path.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.serve.config import ServeConfig
from labkit.serve.errors import Overloaded, PayloadTooLarge
from labkit.serve.metrics import Metrics

__all__ = ["Admission", "Limits", "Ticket", "limits_of"]


@dataclass(frozen=True)
class Limits:
    max_inflight: int  # inferences whose request has arrived, at once
    max_body_bytes: int  # one request body
    max_body_budget: int  # bytes of request bodies held by the server at once
    body_timeout_s: float  # from the end of the headers to the end of the body
    retry_after_s: int


def limits_of(config: ServeConfig) -> Limits:
    return Limits(
        max_inflight=config.max_inflight,
        max_body_bytes=config.max_body_bytes,
        max_body_budget=config.max_body_budget_bytes,
        body_timeout_s=config.body_timeout_s,
        retry_after_s=config.retry_after_s,
    )


class Ticket:
    """One request's bytes held and in-flight slot."""

    __slots__ = ("admitted", "held")

    def __init__(self) -> None:
        self.held = 0
        self.admitted = False


class Admission:
    def __init__(self, limits: Limits, metrics: Metrics) -> None:
        self.limits = limits
        self._metrics = metrics
        self.inflight = 0  # admitted inferences
        self.held = 0  # request bytes held

    def hold(self, ticket: Ticket, size: int) -> None:
        """Account ``size`` more bytes of ``ticket``'s body: 413 past the body cap, 503 past
        the memory budget (a request alone is never refused by the budget: the cap bounds it)."""
        ticket.held += size
        self.held += size
        if ticket.held > self.limits.max_body_bytes:
            raise PayloadTooLarge(
                f"request body exceeds the cap of {self.limits.max_body_bytes} bytes"
            )
        if self.held > self.limits.max_body_budget and self.held > ticket.held:
            self._metrics.rejected.labels("memory").inc()
            raise Overloaded(
                f"request bodies in flight exceed the memory budget of "
                f"{self.limits.max_body_budget} bytes; retry",
                retry_after=self.limits.retry_after_s,
            )

    def admit(self, ticket: Ticket) -> None:
        """Take an in-flight slot for an inference whose request has fully arrived."""
        if ticket.admitted:
            return
        if self.inflight >= self.limits.max_inflight:
            self._metrics.rejected.labels("inflight").inc()
            raise Overloaded(
                f"server overloaded: more than {self.limits.max_inflight} "
                "inferences in flight; retry later",
                retry_after=self.limits.retry_after_s,
            )
        ticket.admitted = True
        self.inflight += 1
        self._metrics.inflight.set(self.inflight)

    def release(self, ticket: Ticket) -> None:
        self.held -= ticket.held
        ticket.held = 0
        if ticket.admitted:
            ticket.admitted = False
            self.inflight -= 1
            self._metrics.inflight.set(self.inflight)
