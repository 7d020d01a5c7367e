"""The one handoff runner: a :class:`~labkit.request.HandoffRequest` in, events out.

The Handoff button (``labkit/notebook/handler.py``), ``handoff export notebook.ipynb``
(``handoff/kernel_side.py``, inside the notebook's kernel) and ``handoff export file.py:fn``
(``handoff/commands.py``) all call :func:`run_request`. It picks the model(s), resolves the
store and source, turns the request's options into :class:`HandoffOptions` (the only place
that does), runs :func:`labkit.pipeline.run` and reports every outcome as a
:class:`~labkit.request.HandoffEvent`: progress (with the stage's time measured here, where
it ran), then a result per model, or one error — after which it raises
:class:`~labkit.errors.HandoffFailed` carrying the same information.

:func:`handoff` is ``labkit.handoff``: ``run`` plus a note of what this process handed off,
so a notebook run by ``handoff export`` whose own cells already handed a model off is not
run through the pipeline a second time.
"""

from __future__ import annotations

import os
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from labkit.errors import HandoffFailed, LabkitError
from labkit.pipeline.options import BenchOptions, Budget, HandoffOptions
from labkit.request import (
    HandoffEvent,
    HandoffRequest,
    ProgressEvent,
    RequestOptions,
    resolve_source,
    resolve_store,
)

__all__ = ["REGISTER_HINT", "handoff", "handoff_options", "headline", "run_request"]

Emit = Callable[[HandoffEvent], None]
REGISTER_HINT = 'labkit.register(model, example_inputs, name="my-model")'

# id(spec) -> (the spec, weakly; store; the weights' state; the result). See handoff().
_handed_off: dict[int, tuple[Any, Path, tuple[tuple[int, int], ...], Any]] = {}


def handoff_options(opts: RequestOptions) -> HandoffOptions:
    """The request's user-facing options as the pipeline's options (the one translation)."""
    default = Budget()
    budget = Budget(
        min_top1_agreement=default.min_top1_agreement if opts.min_top1 is None else opts.min_top1,
        min_cosine=default.min_cosine if opts.min_cosine is None else opts.min_cosine,
        max_rel=default.max_rel,
    )
    return HandoffOptions(
        quantize=opts.quantize,
        benchmark=opts.benchmark,
        bench=BenchOptions.quick() if opts.quick else BenchOptions(),
        calibration=Path(opts.calibration) if opts.calibration else None,
        name=opts.name,
        budget=budget,
    )


def headline(result: Any) -> str:
    """What a handoff did, in one line naming the version it updates, e.g.
    "1.1.0 — weights-only update from 1.0.0: drop-in compatible". The words are the store's
    reason for the change (``labkit/bundle``'s wording), so they have one home."""
    if result.change == "none":
        return f"no new version: identical to {result.version}"
    what, colon, meaning = str(result.change_reason).partition(": ")
    if result.previous:
        what = f"{what} from {result.previous}"
    return f"{result.version} — {what}{colon}{meaning}"


def _weights_state(spec: Any) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version counter of every tensor: training steps bump
    ``_version``, so a model changed after its handoff is not mistaken for the same."""
    model = getattr(spec, "model", None)
    tensors = [*getattr(model, "parameters", list)(), *getattr(model, "buffers", list)()]
    return tuple((id(t), int(getattr(t, "_version", 0))) for t in tensors)


def _remember(spec: Any, store: Path, result: Any) -> None:
    try:
        ref: Any = weakref.ref(spec)
    except TypeError:  # not weak-referenceable: keep no note rather than keep it alive
        return
    _handed_off[id(spec)] = (ref, store, _weights_state(spec), result)


def _already_handed_off(spec: Any, store: Path) -> Any:
    note = _handed_off.get(id(spec))
    if note is None or note[0]() is not spec or note[1] != store:
        return None
    return note[3] if note[2] == _weights_state(spec) else None


def handoff(
    spec: Any,
    *,
    store: str | Path | None = None,
    options: HandoffOptions | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    source: str | Path | None = None,
    sign_key: str | os.PathLike[str] | None = None,
) -> Any:
    """Hand ``spec`` off: freeze → export → parity → optimize → benchmark → bundle.

    Same as :func:`labkit.pipeline.run` (``sign_key``: default ``$LABKIT_SIGN_KEY``, ``""``
    for none); returns its :class:`HandoffResult`.
    """
    from labkit.pipeline.run import run

    result = run(
        spec, store=store, options=options, progress=progress, source=source, sign_key=sign_key
    )
    _remember(spec, resolve_store(None if store is None else str(store), Path.cwd()), result)
    return result


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _pick(request: HandoffRequest, specs: Mapping[str, Any]) -> list[Any]:
    if not specs:
        raise _Refused(
            "NoModelRegistered",
            "this kernel has registered no model; run a cell with: " + REGISTER_HINT,
        )
    if request.model is not None:
        if request.model not in specs:
            raise _Refused(
                "UnknownModel",
                f"no model named {request.model!r} is "
                f"registered; registered: {', '.join(sorted(specs))}",
            )
        return [specs[request.model]]
    if len(specs) == 1:
        return list(specs.values())
    if not request.all_models:
        raise _Refused(
            "ModelNotChosen",
            f"several models are registered ({', '.join(sorted(specs))}); choose one",
        )
    if request.options.name:
        raise _Refused(
            "NameAmbiguous",
            f"a bundle name was given but {len(specs)} models "
            f"are registered ({', '.join(sorted(specs))}); drop the name",
        )
    return list(specs.values())


class _Timer:
    """Forwards pipeline progress as events, timing each stage and noting the current one."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._t0: dict[str, float] = {}
        self.stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.status == "start":
            self._t0[event.stage] = time.perf_counter()
            self.stage = event.stage
        elif event.status in ("done", "fail") and event.stage in self._t0:
            event = replace(
                event, elapsed_s=round(time.perf_counter() - self._t0.pop(event.stage), 3)
            )
        if event.status == "fail":
            self.stage = event.stage
        self._emit(HandoffEvent.of_progress(event))


def run_request(
    request: HandoffRequest,
    emit: Emit,
    *,
    specs: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    run: Callable[..., Any] | None = None,
    reuse_cell_handoffs: bool = False,
) -> list[Any]:
    """Run ``request``; every outcome is emitted, and a failure also raises HandoffFailed.

    ``specs`` defaults to the models registered in this process; ``run`` (the pipeline) is
    replaceable for tests of the front-ends only. ``reuse_cell_handoffs``: a model that a
    ``labkit.handoff(...)`` call already handed off to this store, unchanged since, is
    reported, not run again (``handoff export notebook.ipynb``, whose notebook may do that).
    """
    if run is None:
        from labkit.pipeline.run import run as run_pipeline

        run = run_pipeline
    if specs is None:
        from labkit.registry import registered

        specs = registered()
    cwd = cwd or Path.cwd()
    timer = _Timer(emit)
    try:
        chosen = _pick(request, specs)
        store = resolve_store(request.store, cwd)
        source = resolve_source(request.source, cwd)
        options = handoff_options(request.options)
        results = []
        for spec in chosen:
            result = _already_handed_off(spec, store) if reuse_cell_handoffs else None
            if result is not None:
                emit(
                    HandoffEvent.of_progress(
                        ProgressEvent(
                            "bundle",
                            "info",
                            f"{getattr(spec, 'name', '?')}: already handed off by "
                            f"the notebook's own cell ({result.version}); not run again",
                        )
                    )
                )
            else:
                result = run(spec, store=store, options=options, progress=timer, source=source)
            emit(HandoffEvent.of_result(result.to_dict(), str(store), headline(result)))
            results.append(result)
        return results
    except _Refused as exc:
        raise _failed(emit, HandoffFailed(exc.kind, str(exc))) from None
    except LabkitError as exc:
        raise _failed(emit, HandoffFailed(type(exc).__name__, str(exc), timer.stage)) from exc
    # A user's model can raise anything under export; it becomes an error event, not a crash.
    except Exception as exc:  # noqa: BLE001
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise _failed(emit, HandoffFailed(type(exc).__name__, text, timer.stage)) from exc


def _failed(emit: Emit, failure: HandoffFailed) -> HandoffFailed:
    emit(HandoffEvent.of_error(failure.type, str(failure), failure.stage))
    return failure
