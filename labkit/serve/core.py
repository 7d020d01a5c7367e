"""The protocol-neutral data plane: what is served, whether it is ready, and inference.

One :class:`DataPlane` per server holds the model repository (verified versions in memory),
the store watcher, one batcher per model version, the worker threads that run the engines,
the shared admission limits and the metrics. Front ends (REST in :mod:`labkit.serve.app`,
gRPC in :mod:`labkit.serve.grpc_front`) translate their wire format to and from the calls
below and add nothing else: every lookup goes through :meth:`DataPlane.resolve`, every
inference through :meth:`DataPlane.infer`, every refusal is a :class:`ServeError` whose
status each front end maps to its own protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from labkit.errors import LabkitError
from labkit.serve.admission import Admission, limits_of
from labkit.serve.batching import Batcher, BatchStats
from labkit.serve.classification import top_k
from labkit.serve.codec import InferRequest
from labkit.serve.config import ServeConfig
from labkit.serve.errors import ClientGone, Overloaded, ServeError
from labkit.serve.metadata import ModelMetadata, ServerMetadata, model_metadata, server_metadata
from labkit.serve.metrics import Metrics
from labkit.serve.reload import Reloader
from labkit.serve.repository import ModelRepository, ServedModel
from labkit.serve.tracing import Tracing
from labkit.serve.validation import WantedOutput, bind_inputs, check_parameters, select_outputs

__all__ = ["DataPlane", "InferResult", "NothingToServe", "OutputTensor"]

log = logging.getLogger("labkit.serve")
_OFFLOAD_CLASSES = 1 << 14  # values ranked for classification off the event loop past this


class NothingToServe(LabkitError):
    """The store holds no version that could be served."""


@dataclass(frozen=True)
class OutputTensor:
    name: str
    array: np.ndarray
    binary: bool  # asked for as raw bytes (REST's binary extension; gRPC always sends raw)


@dataclass(frozen=True)
class InferResult:
    model_name: str
    model_version: str  # always the concrete version that answered
    id: str | None
    outputs: list[OutputTensor]
    stats: BatchStats


def _outcome(exc: ServeError) -> str:
    if exc.status == ClientGone.status:
        return "cancelled"
    if isinstance(exc, Overloaded):
        return "overloaded"
    return "client_error" if exc.status < 500 else "error"


def _answer(served: ServedModel, wanted: WantedOutput, array: np.ndarray) -> np.ndarray:
    if wanted.classification is None:
        return array
    spec = next(s for s in served.model.outputs if s.name == wanted.name)
    by_row = bool(spec.shape) and isinstance(spec.shape[0], str)
    return top_k(array, wanted.classification, by_row=by_row, labels=served.model.labels)


class DataPlane:
    def __init__(
        self,
        source: str | os.PathLike[str],
        config: ServeConfig | None = None,
        *,
        tracer_provider: Any = None,
    ) -> None:
        self.config = config = config or ServeConfig()
        self.metrics = Metrics()
        self.tracing = Tracing(tracer_provider)
        self.repo = ModelRepository(
            source,
            threads=config.threads,
            self_test=config.self_test,
            on_event=self._on_event,
            tuning=config.tuning,
            tune_budget_s=config.tune_budget_s,
            trusted_keys=config.trusted_keys,
        )
        self.admission = Admission(limits_of(config), self.metrics)
        self.reloader = Reloader(
            self.repo,
            config.reload_interval_s,
            after=self._after_reload,
            on_death=lambda: self.set_ready(False),
            stall_s=config.stall_timeout_s + (config.tune_budget_s or 0.0),
            max_stuck=config.max_stuck_watchers,
            metrics=self.metrics,
            start=False,
        )
        self._ready = False
        self._scanned = False
        self._executor: ThreadPoolExecutor | None = None
        self._executor_size = 0
        self._old_executors: list[ThreadPoolExecutor] = []
        self._batchers: dict[tuple[str, str], Batcher] = {}
        self._stoppers: list[Callable[[], object]] = []

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        """Whether new versions can ever appear (a store, with hot reload on)."""
        return not self.repo.single and self.config.reload_interval_s > 0

    def nothing_to_serve(self) -> str | None:
        """One line saying why nothing is served, or None when something is."""
        if self.repo.served():
            return None
        refused = [f"{n} {v}: {r}" for (n, v), r in sorted(self.repo.refused().items())]
        if len(refused) > 3:
            refused[3:] = [f"and {len(refused) - 3} more refused"]
        why = f" ({'; '.join(refused)})" if refused else ""
        return " ".join(f"nothing to serve in {self.repo.source}{why}".split())  # one line

    def scan(self) -> None:
        """The first look at the store, before any event loop runs (blocking): load every
        version it holds, under the watcher's supervision (a stuck one is given up on)."""
        asyncio.run(self.reloader.scan())
        self._scanned = True

    async def start(self) -> None:
        """Load what the store holds (unless :meth:`scan` did), start the worker threads and
        the watcher, then report ready. An empty store is said in one line and watched for
        versions; :class:`NothingToServe` only when none can ever come (one bundle, or hot
        reload off)."""
        if not self._scanned:
            await self.reloader.scan()
            self._scanned = True
        empty = self.nothing_to_serve()
        if empty is not None and not self.watching:
            log.error("%s", empty)
            raise NothingToServe(empty)
        if empty is not None:
            log.warning(
                "%s yet; waiting for versions (scanning every %gs)",
                empty,
                self.config.reload_interval_s,
            )
        self._count_served()
        self._fit_executor()
        if self.watching:
            self.reloader.start()
        self.set_ready(True)

    def set_ready(self, value: bool) -> None:
        self._ready = value
        self.metrics.ready.set(1 if value else 0)

    def begin_drain(self) -> None:
        """Shutdown has begun: not ready from now on; requests are still answered."""
        self.set_ready(False)

    def on_stop_accepting(self, callback: Callable[[], object]) -> None:
        """Register what stops a front end from taking new requests (another listener than
        the one the ASGI server closes itself, e.g. gRPC's)."""
        self._stoppers.append(callback)

    def stop_accepting(self) -> None:
        """The drain delay is over: every front end stops taking new requests (event loop)."""
        for callback in self._stoppers:
            callback()

    async def stop(self) -> None:
        """Stop watching, finish what is queued and running, stop the worker threads."""
        self.set_ready(False)
        await self.reloader.stop()
        for batcher in list(self._batchers.values()):
            await batcher.close()
        for pool in [*self._old_executors, self._executor]:
            if pool is not None:
                pool.shutdown(wait=True)

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self._ready and self.reloader.healthy and bool(self.repo.served())

    # -- lookups (event loop; no I/O) ---------------------------------------------------------
    def resolve(self, name: str, version: str | None = None) -> ServedModel:
        """The one lookup every front end uses: the model version a request names (the
        latest served when it names none); :class:`NotFound` otherwise."""
        return self.repo.get(name, version)

    def server_metadata(self) -> ServerMetadata:
        return server_metadata()

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        served = self.resolve(name, version)
        return model_metadata(served.model, self.repo.versions(served.name))

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """False for a version that was refused (while its directory exists); NotFound for
        one the store does not hold."""
        if version is not None and (name, version) in self.repo.refused():
            return False
        self.resolve(name, version)
        return self.is_ready()

    # -- inference ---------------------------------------------------------------------------
    def batcher(self, served: ServedModel) -> Batcher:
        key = (served.name, served.version)
        found = self._batchers.get(key)
        if found is None:
            if self._executor is None:
                raise Overloaded("server is starting; retry")
            self.resolve(served.name, served.version)  # NotFound if it left meanwhile
            c = self.config
            found = Batcher(
                served,
                self._executor,
                self.metrics,
                max_batch_size=c.max_batch_size,
                max_delay_s=c.max_batch_delay_ms / 1000,
                max_queue=c.max_queue,
                queue_timeout_s=c.queue_timeout_ms / 1000,
                retry_after=c.retry_after_s,
                concurrency=max(c.workers, served.model.streams),
            )
            self._batchers[key] = found
        return found

    async def infer(
        self,
        served: ServedModel,
        decode: Callable[[], InferRequest],
        *,
        offload: bool = False,
        protocol: str = "rest",
        carrier: Mapping[str, str] | None = None,
    ) -> InferResult:
        """Decode (``decode`` turns the front end's bytes into a request), check the request
        against the model's signature, run it in a batch and return the outputs asked for.
        ``offload`` decodes on a worker thread (big bodies stay off the event loop);
        ``carrier`` holds the request's headers or metadata (a ``traceparent`` continues the
        caller's trace). Counted, timed and traced per model version and protocol."""
        start = time.perf_counter()
        outcome = "error"
        m, name, version = self.metrics, served.name, served.version
        attributes = {"labkit.model": name, "labkit.version": version, "labkit.protocol": protocol}
        with self.tracing.span(attributes, carrier) as span:
            try:
                result = await self._infer(served, decode, offload)
                outcome = "ok"
                span.set_attribute("labkit.batch.requests", result.stats.requests)
                span.set_attribute("labkit.batch.rows", result.stats.rows)
                span.set_attribute("labkit.queue_ms", round(result.stats.queued_s * 1000, 3))
                return result
            except ServeError as exc:
                outcome = _outcome(exc)
                span.refuse(str(exc))
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            finally:
                if self.repo.serves(name, version):  # never re-create a forgotten version's
                    m.of(m.model_requests, name, version, protocol, outcome).inc()
                    took = time.perf_counter() - start
                    m.of(m.model_latency, name, version, protocol).observe(took)

    async def _infer(
        self, served: ServedModel, decode: Callable[[], InferRequest], offload: bool
    ) -> InferResult:
        batcher = self.batcher(served)
        batcher.begin_arrival()  # worth waiting for: its inputs are being decoded
        try:

            def bind() -> tuple[InferRequest, dict[str, np.ndarray], list[WantedOutput]]:
                request = decode()
                check_parameters(request)
                wanted = select_outputs(request, served)
                feeds = bind_inputs(request, served, max_elements=self.config.max_body_bytes)
                return request, feeds, wanted

            request, feeds, wanted = await asyncio.to_thread(bind) if offload else bind()
        finally:
            batcher.end_arrival()
        result, stats = await batcher.run(feeds)

        def answer() -> list[OutputTensor]:
            return [
                OutputTensor(w.name, _answer(served, w, result[w.name]), w.binary) for w in wanted
            ]

        classes = sum(result[w.name].size for w in wanted if w.classification)
        outputs = await asyncio.to_thread(answer) if classes > _OFFLOAD_CLASSES else answer()
        if self.repo.serves(served.name, served.version):
            self.metrics.of(self.metrics.inferences, served.name, served.version).inc()
        return InferResult(served.name, served.version, request.id, outputs, stats)

    # -- the store changed -------------------------------------------------------------------
    def _on_event(self, name: str, version: str, ok: bool, reason: str) -> None:
        m = self.metrics
        if reason in ("removed", "forgotten"):  # it left the store: its series go with it
            m.forget(name, version)
            return
        m.of(m.loads, name, version, "ok" if ok else "refused").inc()
        if not ok:
            m.of(m.refused, name, version, reason).inc()

    def _count_served(self) -> None:
        repo = self.repo
        for name in {n for n, _ in repo.served()} | {n for n, _ in repo.refused()}:
            self.metrics.served.labels(name).set(len(repo.versions(name)))

    def _fit_executor(self) -> None:
        """Enough worker threads for the widest model: a tuned model runs its chosen number of
        parallel sessions (streams). A wider one arriving later gets a new, larger pool; the
        old one finishes its work and is shut down with the plane."""
        streams = [self.repo.get(n, v).model.streams for n, v in self.repo.served()]
        size = max([self.config.workers, *streams])
        if self._executor is not None and size <= self._executor_size:
            return
        if self._executor is not None:
            self._old_executors.append(self._executor)
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="labkit-ort")
        self._executor_size = size

    async def _after_reload(self) -> None:
        self._count_served()
        self._fit_executor()
        live = set(self.repo.served())
        for key in [k for k in self._batchers if k not in live]:
            await self._batchers.pop(key).close()
