"""Answers the JupyterLab extension's requests inside the kernel.

Transport-free: :meth:`HandoffHandler.handle` takes one decoded message and a ``send``
callable, so tests drive it with recorded messages and the comm glue (``comm.py``) stays thin.
A handoff request is a :class:`~labkit.request.HandoffRequest` run by the same runner as
``handoff export`` (:func:`labkit.pipeline.runner.run_request`); its events become protocol
messages here. The pipeline is injectable for tests only.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labkit.errors import HandoffFailed, HandoffRequestError, LabkitError, MissingDependencyError
from labkit.notebook import protocol as p
from labkit.notebook.bundles import bundle_diff, bundle_report, list_bundles
from labkit.request import HandoffEvent, HandoffRequest, resolve_store

__all__ = ["HandoffHandler"]

Send = Callable[[dict[str, Any]], None]
REGISTER_HINT = 'labkit.register(model, example_inputs, name="my-model")'


def _default_registered() -> Mapping[str, Any]:
    from labkit.registry import registered

    return registered()


def _labkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("labkit")
    except PackageNotFoundError:
        return "unknown"


def _describe_tensor(t: Any) -> p.TensorInfo:
    shape = getattr(t, "shape", None)
    return p.TensorInfo(
        [int(d) for d in shape] if shape is not None else None,
        str(getattr(t, "dtype", type(t).__name__)).replace("torch.", ""),
    )


class HandoffHandler:
    def __init__(
        self,
        *,
        run: Callable[..., Any] | None = None,
        registered: Callable[[], Mapping[str, Any]] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self._pipeline = run
        self._registered = registered or _default_registered
        self._cwd = cwd

    @property
    def cwd(self) -> Path:
        return self._cwd or Path.cwd()

    def handle(self, data: object, send: Send) -> None:
        """Serve one message; every outcome, even a crash, becomes a reply. Never raises."""
        rid = p.request_id(data)
        try:
            req = p.parse_request(data)
            method = getattr(self, f"_do_{req.type}")
            send(p.reply(req.id, method(req, send)))
        except (p.ProtocolError, HandoffRequestError) as exc:
            send(p.error_reply(rid, "ProtocolError", str(exc)))
        except HandoffFailed as exc:
            send(p.error_reply(rid, exc.type, str(exc), stage=exc.stage))
        except LabkitError as exc:
            send(p.error_reply(rid, type(exc).__name__, str(exc)))
        # The kernel must survive anything; report it instead.
        except Exception as exc:  # noqa: BLE001
            tb = traceback.format_exception_only(type(exc), exc)
            send(p.error_reply(rid, type(exc).__name__, "".join(tb).strip()))

    def _store(self, payload: dict[str, Any]) -> Path:
        return resolve_store(p.optional_str(payload, "store"), self.cwd)

    def _do_hello(self, req: p.Request, send: Send) -> p.HelloReply:
        return p.HelloReply(
            p.PROTOCOL_VERSION, _labkit_version(), str(self._store(req.payload)), str(self.cwd)
        )

    def _do_list_models(self, req: p.Request, send: Send) -> p.ModelsReply:
        models = []
        for name, spec in self._registered().items():
            inputs = [_describe_tensor(t) for t in getattr(spec, "example_inputs", ())]
            model = getattr(spec, "model", None)
            params = getattr(model, "parameters", None)
            count = sum(int(t.numel()) for t in params()) if callable(params) else None
            models.append(
                p.ModelInfo(name, getattr(spec, "task", None), inputs, count, type(model).__name__)
            )
        return p.ModelsReply(models, str(self._store(req.payload)), REGISTER_HINT)

    def _do_list_bundles(self, req: p.Request, send: Send) -> p.BundlesReply:
        root = self._store(req.payload)
        return p.BundlesReply(str(root), [p.BundleSummary(**b) for b in list_bundles(root)])

    def _do_bundle_report(self, req: p.Request, send: Send) -> p.ReportReply:
        name = p.optional_str(req.payload, "name") or ""
        version = p.optional_str(req.payload, "version")
        return p.ReportReply(**bundle_report(self._store(req.payload), name, version))

    def _do_bundle_diff(self, req: p.Request, send: Send) -> p.DiffReply:
        return p.DiffReply(
            **bundle_diff(
                self._store(req.payload),
                p.optional_str(req.payload, "name") or "",
                p.optional_str(req.payload, "version"),
                p.optional_str(req.payload, "against"),
            )
        )

    def _do_handoff(self, req: p.Request, send: Send) -> p.HandoffReply:
        return self._run(req, send, HandoffRequest.from_dict(req.payload), self._registered())

    def _do_handoff_trial(self, req: p.Request, send: Send) -> p.HandoffReply:
        """The per-trial button: the run open in this kernel, else reopened from its store
        (a trial's model comes back from its saved weights through ``model_fn``)."""
        from labkit.notebook.experiment_model import find_open, open_experiment

        ask = p.TrialHandoffRequest.from_dict(req.payload)
        root = resolve_experiments(ask.store, self.cwd)
        exp = find_open(str(root), ask.experiment, ask.run) or open_experiment(
            root, ask.experiment, ask.run
        )
        spec = exp.spec(ask.trial, name=ask.options.name)
        request = HandoffRequest(
            model=spec.name, store=ask.bundle_store, source=ask.source, options=ask.options
        )
        return self._run(req, send, request, {spec.name: spec})

    def _run(
        self, req: p.Request, send: Send, request: HandoffRequest, specs: Mapping[str, Any]
    ) -> p.HandoffReply:
        from labkit.pipeline.runner import run_request

        answers: list[p.HandoffReply] = []

        def emit(event: HandoffEvent) -> None:
            if event.progress is not None:
                send(p.progress_message(req.id, event.progress))
            elif event.result is not None:
                answers.append(
                    p.HandoffReply(
                        event.result,
                        event.store or "",
                        event.headline or "",
                        _speed_json(event.result),
                    )
                )
            # an error event arrives again as the HandoffFailed that handle() replies with

        # Keep the notebook clean: anything printed during the run is kept out of its cells.
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            run_request(request, emit, specs=specs, cwd=self.cwd, run=self._pipeline)
        return answers[-1]


def resolve_experiments(given: str | None, cwd: Path) -> Path:
    """The experiments store a request means: ``given``, else ``experiments``, relative to
    the kernel's folder (where ``labkit.experiment`` writes by default)."""
    path = Path(given).expanduser() if given else Path("experiments")
    return (path if path.is_absolute() else cwd / path).resolve()


def _speed_json(result: dict[str, Any]) -> dict[str, Any] | None:
    """The result's speed chart as plotly JSON, built by the one chart builder; without
    plotly the reply goes without it (the view's table still shows every speed-up)."""
    from labkit.notebook.charts import figure_json, speed_figure

    try:
        fig = speed_figure(result)
    except MissingDependencyError:
        return None
    return figure_json(fig) if fig is not None else None
