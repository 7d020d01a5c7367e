"""The one handoff runner: picking models, translating options once, one event stream,
errors as events and as HandoffFailed, and no second pipeline run for a handed-off model."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ExportError, HandoffFailed, HandoffRequestError
from labkit.pipeline import BenchOptions, HandoffOptions
from labkit.pipeline import runner as r
from labkit.request import STAGES, HandoffEvent, HandoffRequest, ProgressEvent, RequestOptions


@dataclass
class Result:
    name: str
    version: str = "1.0.0"
    change: str = "first"
    previous: str | None = None
    change_reason: str = "first handoff of this model"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "change": self.change}


class Spec:
    def __init__(self, name: str, model: Any = None) -> None:
        self.name = name
        self.model = model


class Pipeline:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, spec: Any, **kw: Any) -> Result:
        self.calls.append({"spec": spec, **kw})
        progress = kw["progress"] or (lambda event: None)
        for stage in STAGES:
            progress(ProgressEvent(stage, "start"))
            if self.fail is not None and stage == "parity":
                raise self.fail
            progress(ProgressEvent(stage, "done"))
        return Result(spec.name)


def test_options_are_translated_in_one_place() -> None:
    opts = r.handoff_options(
        RequestOptions(
            quantize=False, quick=True, min_top1=0.9, calibration="/data/c.npz", name="x"
        )
    )
    assert isinstance(opts, HandoffOptions)
    assert (opts.quantize, opts.name, str(opts.calibration)) == (False, "x", "/data/c.npz")
    assert opts.budget.min_top1_agreement == 0.9 and opts.budget.min_cosine == 0.99
    assert opts.bench == BenchOptions.quick()  # quick
    assert r.handoff_options(RequestOptions()).bench.rounds == HandoffOptions().bench.rounds
    with pytest.raises(HandoffRequestError, match="min_cosine 1.5 must be between 0 and 1"):
        RequestOptions(min_cosine=1.5)


def test_events_progress_then_one_result_per_model(tmp_path: Path) -> None:
    events: list[HandoffEvent] = []
    pipeline = Pipeline()
    specs = {"a": Spec("a"), "b": Spec("b")}
    results = r.run_request(
        HandoffRequest(store="s", all_models=True),
        events.append,
        specs=specs,
        cwd=tmp_path,
        run=pipeline,
    )
    assert [x.name for x in results] == ["a", "b"]
    kinds = [e.kind for e in events]
    assert kinds == (["progress"] * 12 + ["result"]) * 2
    assert events[12].store == str((tmp_path / "s").resolve())
    assert events[12].headline == "1.0.0 — first handoff of this model"
    done = [e.progress for e in events if e.progress and e.progress.status == "done"]
    assert all(p.elapsed_s is not None and p.elapsed_s >= 0 for p in done)
    assert pipeline.calls[0]["store"] == (tmp_path / "s").resolve()


@pytest.mark.parametrize(
    ("specs", "request_", "kind"),
    [
        ({}, HandoffRequest(), "NoModelRegistered"),
        ({"a": Spec("a"), "b": Spec("b")}, HandoffRequest(), "ModelNotChosen"),
        ({"a": Spec("a")}, HandoffRequest(model="zz"), "UnknownModel"),
        (
            {"a": Spec("a"), "b": Spec("b")},
            HandoffRequest(all_models=True, options=RequestOptions(name="n")),
            "NameAmbiguous",
        ),
    ],
)
def test_refusals_are_one_error_event(
    specs: dict[str, Any], request_: HandoffRequest, kind: str, tmp_path: Path
) -> None:
    events: list[HandoffEvent] = []
    pipeline = Pipeline()
    with pytest.raises(HandoffFailed) as info:
        r.run_request(request_, events.append, specs=specs, cwd=tmp_path, run=pipeline)
    assert info.value.type == kind and pipeline.calls == []
    assert [e.kind for e in events] == ["error"]
    assert events[0].error is not None and events[0].error.type == kind


@pytest.mark.parametrize(
    ("exc", "etype", "text"),
    [
        (
            ExportError("unsupported operator aten::weird"),
            "ExportError",
            "unsupported operator aten::weird",
        ),
        (RuntimeError("forward() raised"), "RuntimeError", "RuntimeError: forward() raised"),
    ],
)
def test_a_failure_names_its_stage(exc: Exception, etype: str, text: str, tmp_path: Path) -> None:
    events: list[HandoffEvent] = []
    with pytest.raises(HandoffFailed) as info:
        r.run_request(
            HandoffRequest(),
            events.append,
            specs={"a": Spec("a")},
            cwd=tmp_path,
            run=Pipeline(fail=exc),
        )
    assert (info.value.type, info.value.stage, str(info.value)) == (etype, "parity", text)
    assert info.value.__cause__ is exc  # --debug shows the original traceback
    assert events[-1].error is not None and events[-1].error.stage == "parity"


def test_a_model_handed_off_by_a_cell_is_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    store = tmp_path / "store"
    monkeypatch.chdir(tmp_path)
    pipeline = Pipeline()
    # the module, not the function labkit.pipeline re-exports under the same name
    monkeypatch.setattr(sys.modules["labkit.pipeline.run"], "run", pipeline)
    spec = Spec("m", torch.nn.Linear(3, 2))
    first = r.handoff(spec, store=store)  # what labkit.handoff(...) in a cell does
    events: list[HandoffEvent] = []

    def export(store: Path) -> list[Any]:  # what handoff export notebook.ipynb does
        return r.run_request(
            HandoffRequest(store=str(store)),
            events.append,
            specs={"m": spec},
            cwd=tmp_path,
            run=pipeline,
            reuse_cell_handoffs=True,
        )

    assert export(store) == [first] and len(pipeline.calls) == 1
    assert "already handed off" in events[0].progress.message  # type: ignore[union-attr]
    # another store, or weights changed in place since (a training step): run again
    export(tmp_path / "other")
    with torch.no_grad():
        spec.model.weight.add_(1.0)
    export(store)
    assert len(pipeline.calls) == 3
    # the button never reuses: clicking twice hands off twice (the store then says "none")
    for _ in range(2):
        r.run_request(
            HandoffRequest(store=str(store)),
            events.append,
            specs={"m": spec},
            cwd=tmp_path,
            run=pipeline,
        )
    assert len(pipeline.calls) == 5
