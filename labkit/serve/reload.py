"""Watch the store and pick up new versions without dropping requests.

Loading (verification, session creation, self-test) runs on a worker thread; the switch to a
new version is one assignment of the repository's table, so a request sees either the old
table or the new one. Refusals are logged by the repository and counted in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from labkit.errors import LabkitError
from labkit.serve.repository import ModelRepository

__all__ = ["Reloader"]

log = logging.getLogger("labkit.serve")


class Reloader:
    def __init__(self, repo: ModelRepository, interval_s: float,
                 after: Callable[[], Awaitable[None]] | None = None) -> None:
        self._repo = repo
        self._interval = interval_s
        self._after = after
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def check_now(self) -> None:
        await asyncio.to_thread(self._repo.refresh)
        if self._after is not None:
            await self._after()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.check_now()
            except (OSError, LabkitError) as exc:  # store unreadable: keep serving what we have
                log.error("store scan failed: %s", exc)

    async def stop(self) -> None:
        self._stopping.set()
        await self._task
