"""Watch the store and pick up new versions without dropping requests.

Loading (verification, session creation, self-test) runs on a worker thread; the switch to a
new version is one assignment of the repository's table, so a request sees either the old
table or the new one. Refusals are logged by the repository and counted in the metrics. A
store that cannot be listed (unmounted, moved) is logged and retried; what is loaded keeps
serving. The watcher is supervised: if it ever dies, ``alive`` turns false (readiness with
it) and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from labkit.errors import StoreError
from labkit.serve.repository import ModelRepository

__all__ = ["Reloader"]

log = logging.getLogger("labkit.serve")


class Reloader:
    def __init__(
        self,
        repo: ModelRepository,
        interval_s: float,
        after: Callable[[], Awaitable[None]] | None = None,
        on_death: Callable[[], None] | None = None,
    ) -> None:
        self._repo = repo
        self._interval = interval_s
        self._after = after
        self._on_death = on_death
        self._stopping = asyncio.Event()
        self._store_down = False
        self.alive = True
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._finished)

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
            except (OSError, StoreError) as exc:  # unreadable store: keep what is loaded
                if not self._store_down:
                    log.error(
                        "store scan failed, keeping what is loaded and retrying every %.1fs: %s",
                        self._interval,
                        exc,
                    )
                self._store_down = True
                continue
            if self._store_down:
                log.info("store readable again: %s", self._repo.source)
                self._store_down = False

    def _finished(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() and self._stopping.is_set():
            return
        exc = None if task.cancelled() else task.exception()
        if exc is None and self._stopping.is_set():
            return
        self.alive = False
        log.error(
            "the store watcher died (%s); not ready: no new version will be loaded",
            repr(exc) if exc is not None else "cancelled",
            exc_info=exc,
        )
        if self._on_death is not None:
            self._on_death()

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(self._task, return_exceptions=True)
