"""Watch the store and pick up new versions without dropping requests, with a heartbeat.

Loading (verification, session creation, self-test) runs on a scan thread; the switch to a
new version is one assignment of the repository's table, so a request sees either the old
table or the new one. Refusals are logged by the repository and counted in the metrics. A
store that cannot be listed (unmounted, moved) is logged and retried; what is loaded keeps
serving.

The scan thread beats before every step (listing the store, each version it loads). A scan
silent for longer than ``stall_s`` is stuck (a read that never returns: a FIFO swapped in for
a file, a hung mount): it is reported (a log line, ``labkit_watcher_stalls_total``, and the
server is not ready until a replacement scan completes), the version it was loading is
refused with rule ``stuck`` (retried only when that directory's entries change), and a new
scan starts at once. The stuck thread cannot be killed; it is abandoned (a daemon thread
whose late results are ignored) and counted in ``labkit_watcher_stuck_threads``. At most
``max_stuck`` abandoned threads may be blocked at once: past that, no scan starts (and the
server stays not ready) until one of them returns. The same supervision covers the first
scan at startup, so one version cannot hang startup. If the watcher itself ever dies,
``alive`` turns false (readiness with it) and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial

from labkit.errors import StoreError
from labkit.serve.metrics import Metrics
from labkit.serve.repository import Event, ModelRepository

__all__ = ["DEFAULT_MAX_STUCK", "Reloader"]

log = logging.getLogger("labkit.serve")
DEFAULT_STALL_S = 300.0
DEFAULT_MAX_STUCK = 4


class _Scan:
    """One ``repo.refresh`` on its own daemon thread, beating as it goes."""

    def __init__(
        self,
        repo: ModelRepository,
        current: Callable[[], bool],
        listed: Callable[[], None],
    ) -> None:
        self.key: tuple[str, str] | None = None  # the version being loaded, if any
        self.beat_at = time.monotonic()
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()  # set (thread-safely) when the scan ends
        self._repo, self._current, self._listed = repo, current, listed
        self.thread = threading.Thread(target=self._run, name="labkit-watcher", daemon=True)
        self.thread.start()

    def beat(self, key: tuple[str, str] | None) -> None:
        self.key, self.beat_at = key, time.monotonic()

    async def wait(self, stall_s: float) -> bool:
        """Until the scan is done (True) or silent for ``stall_s`` (False)."""
        while not self.done.is_set():
            left = stall_s - (time.monotonic() - self.beat_at)
            if left <= 0:
                return False
            self._wake.clear()
            if self.done.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def _run(self) -> None:
        try:
            self.events = self._repo.refresh(
                beat=self.beat, current=self._current, listed=self._listed
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the supervisor
            self.error = exc
        finally:
            self.done.set()
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass  # an abandoned scan outliving the loop that started it: nobody waits


class Reloader:
    def __init__(
        self,
        repo: ModelRepository,
        interval_s: float,
        after: Callable[[], Awaitable[None]] | None = None,
        on_death: Callable[[], None] | None = None,
        *,
        stall_s: float = DEFAULT_STALL_S,
        max_stuck: int = DEFAULT_MAX_STUCK,
        metrics: Metrics | None = None,
        start: bool = True,
    ) -> None:
        self._repo = repo
        self._interval = interval_s
        self._after = after
        self._on_death = on_death
        self._stall = stall_s
        self._max_stuck = max_stuck
        self._metrics = metrics
        self._stopping = threading.Event()
        self._store_down = False
        self._generation = 0
        self._abandoned: list[threading.Thread] = []
        self.alive = True
        self.stalled = False  # silent past the bound, and not yet replaced by a full scan
        self.stalls = 0
        self._task: asyncio.Task[None] | None = None
        if start:
            self.start()

    @property
    def healthy(self) -> bool:
        return self.alive and not self.stalled

    def start(self) -> None:
        """Scan every ``interval_s`` from now on (needs a running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._finished)

    async def scan(self) -> list[Event]:
        """One supervised scan of the store, replacing stuck ones until one completes."""
        while not self._stopping.is_set():
            if self._blocked() >= self._max_stuck:
                await asyncio.sleep(min(0.5, self._stall / 4))
                continue
            self._generation += 1
            generation = self._generation
            scan = _Scan(self._repo, partial(self._is_current, generation), self._listed)
            if await scan.wait(self._stall):
                self.stalled = False
                if scan.error is not None:
                    raise scan.error
                return scan.events
            self._give_up(scan)
        return []

    def _is_current(self, generation: int) -> bool:
        return generation == self._generation

    def _listed(self) -> None:  # scan thread
        if self._store_down:
            self._store_down = False
            log.info("store readable again: %s", self._repo.source)

    async def check_now(self) -> None:
        await self.scan()
        if self._after is not None:
            await self._after()

    def _blocked(self) -> int:
        """Abandoned scan threads still blocked (updates the gauge)."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if self._metrics is not None:
            self._metrics.watcher_stuck.set(len(self._abandoned))
        if len(self._abandoned) >= self._max_stuck and not self.stalled:
            self.stalled = True
        return len(self._abandoned)

    def _give_up(self, scan: _Scan) -> None:
        self._generation += 1  # whatever it finds when it wakes up is not committed
        self._abandoned.append(scan.thread)
        self.stalled = True
        self.stalls += 1
        if self._metrics is not None:
            self._metrics.watcher_stalls.inc()
        where = "listing the store" if scan.key is None else f"loading {' '.join(scan.key)}"
        blocked = self._blocked()
        log.error(
            "store watcher stuck for %.1fs while %s (a read that never returns?); not ready "
            "until a new watcher completes a scan; starting one (%d stuck thread(s)%s)",
            time.monotonic() - scan.beat_at,
            where,
            blocked,
            "; no new scan until one returns" if blocked >= self._max_stuck else "",
        )
        if scan.key is not None:
            self._repo.mark_stuck(
                *scan.key,
                f"StuckError: loading it made no progress for {self._stall:g}s "
                "(--stall-timeout); retried when its files change",
            )

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._interval)
            if self._stopping.is_set():
                return
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
        self._generation += 1  # a scan still running commits nothing more
        if self._task is not None:
            self._task.cancel()  # it waits in asyncio.sleep, or on a scan it may abandon
            await asyncio.gather(self._task, return_exceptions=True)
