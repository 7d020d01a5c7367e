"""Adaptive micro-batching of one model version, with a bounded queue.

Requests whose inputs agree on everything but the leading (batch) dimension are concatenated
along it, run in one ONNX Runtime call on a worker thread (never on the event loop), and the
outputs are split back by rows. Adaptive: a batch is whatever queued while the previous one
ran; the batcher waits (up to ``max_delay``) only for requests it knows are on their way, i.e.
admitted for this model and still being parsed, so an idle or lightly loaded model never
waits for company that is not coming. If a batched
run fails, its requests are re-run one by one, so one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from labkit.errors import EngineError, InputError
from labkit.serve.errors import BadRequest, Overloaded, ServeError
from labkit.serve.metrics import Metrics
from labkit.serve.repository import ServedModel

__all__ = ["Batcher"]

log = logging.getLogger("labkit.serve")
Arrays = dict[str, np.ndarray]


@dataclass
class _Item:
    feeds: Arrays
    rows: int
    key: tuple[object, ...]
    future: asyncio.Future[Arrays]
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        served: ServedModel,
        executor: Executor,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        queue_timeout_s: float,
        retry_after: int = 1,
        concurrency: int = 1,
    ) -> None:
        self.served = served
        self._executor = executor
        self._max_batch = max_batch_size if served.batch_dim else 1
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._timeout = queue_timeout_s
        self._retry_after = retry_after
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._arriving = 0
        self._slots = asyncio.Semaphore(concurrency)  # batches of this model running at once
        self._running: set[asyncio.Task[None]] = set()
        labels = (served.name, served.version)
        self._depth = metrics.queue_depth.labels(*labels)
        self._sizes = metrics.batch_size.labels(*labels)
        self._rejected = metrics.rejected
        self._task = asyncio.get_running_loop().create_task(self._loop())

    @property
    def depth(self) -> int:
        return len(self._queue)

    def begin_arrival(self) -> None:
        """A request for this model is being read and parsed; worth waiting for."""
        self._arriving += 1

    def end_arrival(self) -> None:
        self._arriving -= 1
        self._wake.set()

    async def infer(self, feeds: Arrays) -> Arrays:
        if self._closing:
            raise Overloaded("model is being unloaded; retry", retry_after=self._retry_after)
        if len(self._queue) >= self._max_queue:
            self._rejected.labels("queue_full").inc()
            raise Overloaded(
                f"Exceeds maximum queue size ({self._max_queue})", retry_after=self._retry_after
            )
        first = next(iter(feeds.values()))
        rows = int(first.shape[0]) if first.ndim else 1
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feeds.items()))
        item = _Item(feeds, rows, key, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._depth.set(len(self._queue))
        self._wake.set()
        return await item.future

    async def close(self) -> None:
        """Finish what is queued and running, then stop."""
        self._closing = True
        self._wake.set()
        await self._task
        if self._running:
            await asyncio.gather(*self._running)

    def _take(self, batch: list[_Item], rows: int) -> int:
        """Move compatible items from the queue into ``batch``; drop ones that waited too long."""
        now = time.monotonic()
        kept: collections.deque[_Item] = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():
                continue  # client went away
            if now - item.enqueued > self._timeout:
                self._rejected.labels("queue_timeout").inc()
                item.future.set_exception(
                    Overloaded(
                        f"waited more than {self._timeout:.3f}s in the queue",
                        retry_after=self._retry_after,
                    )
                )
                continue
            fits = not batch or (item.key == batch[0].key and rows + item.rows <= self._max_batch)
            if fits:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        self._queue = kept
        self._depth.set(len(kept))
        return rows

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._slots.acquire()  # requests keep queueing (and batching) meanwhile
            batch: list[_Item] = []
            rows = self._take(batch, 0)
            if batch and rows < self._max_batch and self._max_delay > 0:
                deadline = batch[0].enqueued + self._max_delay
                while (
                    rows < self._max_batch
                    and self._arriving > 0
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), left)
                    except asyncio.TimeoutError:
                        break
                    rows = self._take(batch, rows)
            if not batch:
                self._slots.release()
                continue
            self._sizes.observe(len(batch))
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _run(self, batch: list[_Item]) -> None:
        try:
            await self._run_items(batch)
        except Exception:  # noqa: BLE001 - a bug here must not leave clients waiting forever
            log.exception("batch of %s %s failed", self.served.name, self.served.version)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ServeError("internal error", status=500))

    async def _run_items(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        if len(batch) > 1:
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except (ServeError, InputError, EngineError):
                results = None  # fall back to one by one; the culprit gets its own error
            if results is not None:
                for item, result in zip(batch, results):
                    if not item.future.done():
                        item.future.set_result(result)
                return
        for item in batch:
            try:
                result = await loop.run_in_executor(self._executor, self._predict, item.feeds)
            except ServeError as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            if not item.future.done():
                item.future.set_result(result)

    def _predict(self, feeds: Arrays) -> Arrays:
        try:
            return self.served.model.predict(feeds)
        except InputError as exc:  # the engines classify their own errors (runtime.engines)
            raise BadRequest(str(exc)) from None
        except EngineError as exc:
            raise ServeError(f"inference failed: {exc}", status=500) from None

    def _run_batch(self, batch: list[_Item]) -> list[Arrays]:
        names = list(batch[0].feeds)
        joined = {n: np.concatenate([it.feeds[n] for it in batch], axis=0) for n in names}
        total = sum(it.rows for it in batch)
        out = self._predict(joined)
        if any(v.ndim == 0 or v.shape[0] != total for v in out.values()):
            raise ServeError("outputs are not split by rows", status=500)
        results, start = [], 0
        for it in batch:
            results.append({k: v[start : start + it.rows] for k, v in out.items()})
            start += it.rows
        return results
