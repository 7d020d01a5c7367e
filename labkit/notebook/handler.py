"""Answers the JupyterLab extension's requests inside the kernel.

Transport-free: :meth:`HandoffHandler.handle` takes one decoded message and a ``send``
callable, so tests drive it with recorded messages and the comm glue (``comm.py``) stays thin.
The handoff runs the same ``labkit.pipeline.run`` as the CLI; it is injectable for tests only.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError
from labkit.notebook import protocol as p
from labkit.notebook.bundles import default_store, list_bundles

__all__ = ["HandoffHandler", "RequestError"]

Send = Callable[[dict[str, Any]], None]
REGISTER_HINT = ('labkit.register(model, example_inputs, name="my-model")')


class RequestError(Exception):
    """A request that cannot be served as asked; ``kind`` is shown to the user as the type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _default_run(spec: Any, **kwargs: Any) -> Any:
    from labkit.pipeline import run

    return run(spec, **kwargs)


def _default_options(**kwargs: Any) -> Any:
    from labkit.pipeline import HandoffOptions

    return HandoffOptions(**kwargs)


def _default_registered() -> Mapping[str, Any]:
    from labkit.registry import registered

    return registered()


def _labkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("labkit")
    except PackageNotFoundError:
        return "unknown"


def _describe_tensor(t: Any) -> dict[str, Any]:
    shape = getattr(t, "shape", None)
    return {"shape": [int(d) for d in shape] if shape is not None else None,
            "dtype": str(getattr(t, "dtype", type(t).__name__)).replace("torch.", "")}


def resolve_source(path: str | None, cwd: Path) -> Path | None:
    """The notebook file on disk for the frontend's (server-relative) path, if found."""
    if not path:
        return None
    given = Path(path)
    candidates = [given] if given.is_absolute() else [cwd / given.name, cwd / given]
    return next((c.resolve() for c in candidates if c.is_file()), None)


class HandoffHandler:
    def __init__(self, *, run: Callable[..., Any] | None = None,
                 options: Callable[..., Any] | None = None,
                 registered: Callable[[], Mapping[str, Any]] | None = None,
                 cwd: Path | None = None) -> None:
        self._run = run or _default_run
        self._options = options or _default_options
        self._registered = registered or _default_registered
        self._cwd = cwd

    @property
    def cwd(self) -> Path:
        return self._cwd or Path.cwd()

    def handle(self, data: object, send: Send) -> None:
        """Serve one message; every outcome, even a crash, becomes a reply. Never raises."""
        rid = p.request_id(data)
        stage: list[str | None] = [None]
        try:
            req = p.parse_request(data)
            method = getattr(self, f"_do_{req.type}")
            send(p.reply(req.id, method(req, send, stage)))
        except p.ProtocolError as exc:
            send(p.error_reply(rid, "ProtocolError", str(exc)))
        except RequestError as exc:
            send(p.error_reply(rid, exc.kind, str(exc)))
        except LabkitError as exc:
            send(p.error_reply(rid, type(exc).__name__, str(exc), stage=stage[0]))
        # The kernel must survive anything a user's model does under export; report it instead.
        except Exception as exc:  # noqa: BLE001
            tb = traceback.format_exception_only(type(exc), exc)
            send(p.error_reply(rid, type(exc).__name__, "".join(tb).strip(), stage=stage[0]))

    def _store(self, payload: dict[str, Any]) -> Path:
        given = p.optional_str(payload, "store")
        if given is None:
            return default_store(self.cwd)
        path = Path(given).expanduser()
        return (path if path.is_absolute() else self.cwd / path).resolve()

    def _do_hello(self, req: p.Request, send: Send, stage: list[str | None]) -> dict[str, Any]:
        return {"protocol": p.PROTOCOL_VERSION, "labkit_version": _labkit_version(),
                "store": str(self._store(req.payload)), "cwd": str(self.cwd)}

    def _do_list_models(self, req: p.Request, send: Send,
                        stage: list[str | None]) -> dict[str, Any]:
        models = []
        for name, spec in self._registered().items():
            inputs = [_describe_tensor(t) for t in getattr(spec, "example_inputs", ())]
            model = getattr(spec, "model", None)
            params = getattr(model, "parameters", None)
            count = sum(int(t.numel()) for t in params()) if callable(params) else None
            models.append({"name": name, "task": getattr(spec, "task", None),
                           "inputs": inputs, "parameters": count,
                           "model_class": type(model).__name__})
        return {"models": models, "store": str(self._store(req.payload)),
                "hint": REGISTER_HINT}

    def _do_list_bundles(self, req: p.Request, send: Send,
                         stage: list[str | None]) -> dict[str, Any]:
        root = self._store(req.payload)
        return {"store": str(root), "bundles": list_bundles(root)}

    def _pick(self, payload: dict[str, Any]) -> Any:
        models = dict(self._registered())
        if not models:
            raise RequestError("NoModelRegistered", "labkit is imported but no model is "
                               f"registered in this kernel. Run: {REGISTER_HINT}")
        wanted = p.optional_str(payload, "model")
        if wanted is None:
            if len(models) > 1:
                raise RequestError("ModelNotChosen", "several models are registered ("
                                   f"{', '.join(sorted(models))}); choose one")
            wanted = next(iter(models))
        if wanted not in models:
            raise RequestError("UnknownModel", f"no model named {wanted!r} is registered; "
                               f"registered: {', '.join(sorted(models))}")
        return models[wanted]

    def _do_handoff(self, req: p.Request, send: Send, stage: list[str | None]) -> dict[str, Any]:
        spec = self._pick(req.payload)
        quantize = p.optional_bool(req.payload, "quantize", True)
        rename = p.optional_str(req.payload, "name")
        store = self._store(req.payload)
        source = resolve_source(p.optional_str(req.payload, "notebook_path"), self.cwd)

        def progress(event: Any) -> None:
            name = str(getattr(event, "stage", ""))
            status = str(getattr(event, "status", ""))
            if status in ("start", "fail"):
                stage[0] = name
            fraction = getattr(event, "fraction", None)
            send(p.progress_message(req.id, name, status, str(getattr(event, "message", "")),
                                    float(fraction) if fraction is not None else None))

        # Keep the notebook clean: anything printed during the run is kept out of its cells.
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            result = self._run(spec, store=store,
                               options=self._options(quantize=quantize, name=rename),
                               progress=progress, source=source)
        as_dict = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        return {"result": as_dict, "store": str(store),
                "source": str(source) if source is not None else None}
