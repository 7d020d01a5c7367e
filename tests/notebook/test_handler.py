"""The kernel-side handler, driven with recorded messages of each kind (no kernel needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ExportError
from labkit.notebook import protocol as p
from labkit.notebook.handler import HandoffHandler
from labkit.request import STAGES, ProgressEvent

V = p.PROTOCOL_VERSION


@dataclass(frozen=True)
class FakeSpec:
    name: str
    example_inputs: tuple[Any, ...] = ()
    task: str | None = "classification"
    model: Any = None


@dataclass
class FakeResult:
    name: str
    version: str
    change: str
    previous: str | None = None
    change_reason: str = "first handoff of this model"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "change": self.change,
            "previous": self.previous,
        }


@dataclass
class Recorder:
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_at: str | None = None

    def __call__(self, spec: Any, **kwargs: Any) -> FakeResult:
        self.calls.append({"spec": spec, **kwargs})
        progress = kwargs["progress"]
        for stage in STAGES:
            progress(ProgressEvent(stage, "start"))
            if stage == self.fail_at:
                progress(ProgressEvent(stage, "fail", "boom"))
                raise ExportError(f"{stage} failed: unsupported operator aten::weird")
            print("noise that must not reach the notebook")
            progress(ProgressEvent(stage, "done", "", 1.0))
        return FakeResult(kwargs["options"].name or spec.name, "1.0.0", "first")


def make(
    models: dict[str, Any] | None = None, run: Any = None, tmp: Path | None = None
) -> tuple[HandoffHandler, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    handler = HandoffHandler(run=run or Recorder(), registered=lambda: models or {}, cwd=tmp)
    return handler, sent


def req(rtype: str, payload: dict[str, Any] | None = None, rid: str = "r1") -> dict[str, Any]:
    return {"protocol": V, "kind": "request", "id": rid, "type": rtype, "payload": payload or {}}


def roundtrip(msg: Any) -> Any:
    """What the comm delivers: JSON on the wire."""
    return json.loads(json.dumps(msg))


def test_hello_reports_version_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_STORE", str(tmp_path / "s"))
    handler, sent = make(tmp=tmp_path)
    handler.handle(roundtrip(req("hello")), sent.append)
    assert sent == [p.reply("r1", {**sent[0]["payload"]})]
    assert sent[0]["payload"]["protocol"] == V
    assert sent[0]["payload"]["store"] == str((tmp_path / "s").resolve())


def test_store_defaults_to_bundles_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_STORE", raising=False)
    handler, sent = make(tmp=tmp_path)
    handler.handle(req("hello"), sent.append)
    assert sent[0]["payload"]["store"] == str((tmp_path / "bundles").resolve())


def test_list_models(tmp_path: Path) -> None:
    handler, sent = make({"a": FakeSpec("a"), "b": FakeSpec("b")}, tmp=tmp_path)
    handler.handle(req("list_models"), sent.append)
    names = [m["name"] for m in sent[0]["payload"]["models"]]
    assert sent[0]["ok"] and names == ["a", "b"]


def test_handoff_streams_progress_then_replies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = tmp_path / "quick.ipynb"
    nb.write_text("{}")
    run = Recorder()
    handler, sent = make({"digits": FakeSpec("digits")}, run=run, tmp=tmp_path)
    handler.handle(
        req(
            "handoff",
            {"options": {"quantize": False}, "source": "examples/quick.ipynb", "store": "st"},
        ),
        sent.append,
    )
    kinds = [m["kind"] for m in sent]
    assert kinds == ["progress"] * 12 + ["reply"]
    assert [m["payload"]["stage"] for m in sent[:-1:2]] == list(STAGES)
    assert sent[-1]["ok"] and sent[-1]["payload"]["result"]["version"] == "1.0.0"
    assert sent[-1]["payload"]["store"] == str((tmp_path / "st").resolve())
    assert sent[-1]["payload"]["headline"] == "1.0.0 — first handoff of this model"
    assert sent[-1]["payload"]["figure"] is None  # no variant was benchmarked: no chart
    # every done event carries the stage's time, measured where it ran
    assert all(m["payload"]["elapsed_s"] >= 0 for m in sent[1:-1:2])
    call = run.calls[0]
    assert call["options"].quantize is False and call["options"].benchmark is True
    assert call["source"] == nb.resolve()
    assert call["store"] == (tmp_path / "st").resolve()
    assert "noise" not in capsys.readouterr().out
    for m in sent:
        assert roundtrip(m) == m  # JSON-safe


@dataclass
class BenchedResult(FakeResult):
    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "default_variant": "int8",
            "variants": [
                {"name": "fp32", "speedup": {"p50": 2.0, "throughput": 1.5}},
                {"name": "int8", "speedup": {"p50": 3.5, "throughput": 2.5}},
            ],
        }


def test_handoff_reply_carries_the_kernels_speed_figure(tmp_path: Path) -> None:
    from labkit.notebook.charts import figure_json, speed_figure

    def run(spec: Any, **kwargs: Any) -> BenchedResult:
        return BenchedResult(spec.name, "1.0.0", "first")

    handler, sent = make({"digits": FakeSpec("digits")}, run=run, tmp=tmp_path)
    handler.handle(req("handoff", {"store": "st"}), sent.append)
    figure = roundtrip(sent[-1])["payload"]["figure"]
    assert figure == figure_json(speed_figure(BenchedResult("d", "1", "first").to_dict()))
    assert [t["y"] for t in figure["data"]] == [[2.0, 3.5], [1.5, 2.5]]
    assert figure["data"][0]["x"] == ["fp32", "int8 (default)"]


def test_handoff_rename(tmp_path: Path) -> None:
    handler, sent = make({"digits": FakeSpec("digits")}, tmp=tmp_path)
    handler.handle(req("handoff", {"options": {"name": "digits-v2"}}), sent.append)
    assert sent[-1]["payload"]["result"]["name"] == "digits-v2"


def test_handoff_failure_names_the_stage(tmp_path: Path) -> None:
    handler, sent = make({"m": FakeSpec("m")}, run=Recorder(fail_at="export"), tmp=tmp_path)
    handler.handle(req("handoff"), sent.append)
    last = sent[-1]
    assert last["ok"] is False
    assert last["error"] == {
        "type": "ExportError",
        "stage": "export",
        "message": "export failed: unsupported operator aten::weird",
    }


def test_unexpected_exception_becomes_a_reply(tmp_path: Path) -> None:
    def crash(spec: Any, **kwargs: Any) -> Any:
        kwargs["progress"](ProgressEvent("freeze", "start"))
        raise RuntimeError("forward() raised")

    handler, sent = make({"m": FakeSpec("m")}, run=crash, tmp=tmp_path)
    handler.handle(req("handoff"), sent.append)
    assert sent[-1]["error"]["type"] == "RuntimeError"
    assert sent[-1]["error"]["stage"] == "freeze"
    assert "forward() raised" in sent[-1]["error"]["message"]


@pytest.mark.parametrize(
    ("models", "payload", "kind"),
    [
        ({}, {}, "NoModelRegistered"),
        ({"a": FakeSpec("a"), "b": FakeSpec("b")}, {}, "ModelNotChosen"),
        ({"a": FakeSpec("a")}, {"model": "zzz"}, "UnknownModel"),
    ],
)
def test_model_choice_errors(
    models: dict[str, Any], payload: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    handler, sent = make(models, tmp=tmp_path)
    handler.handle(req("handoff", payload), sent.append)
    assert sent == [sent[0]] and sent[0]["ok"] is False
    assert sent[0]["error"]["type"] == kind


MALFORMED = [
    ("not an object", "must be a JSON object", None),
    ([1, 2], "must be a JSON object", None),
    ({"protocol": 99, "kind": "request", "id": "x", "type": "hello"}, "version 99", "x"),
    ({"kind": "request", "id": "x", "type": "hello"}, "version None", "x"),
    ({"protocol": True, "kind": "request", "id": "x", "type": "hello"}, "version True", "x"),
    ({"protocol": V, "kind": "reply", "id": "x", "type": "hello"}, "kind must be", "x"),
    ({"protocol": V, "kind": "request", "type": "hello"}, "id must be", None),
    ({"protocol": V, "kind": "request", "id": "x" * 500, "type": "hello"}, "id must be", None),
    ({"protocol": V, "kind": "request", "id": "x", "type": "rm -rf"}, "unknown request", "x"),
    (
        {"protocol": V, "kind": "request", "id": "x", "type": "hello", "payload": []},
        "payload must be",
        "x",
    ),
    (
        {
            "protocol": V,
            "kind": "request",
            "id": "x",
            "type": "handoff",
            "payload": {"options": {"quantize": "yes"}},
        },
        "quantize must be true or false",
        "x",
    ),
    (
        {
            "protocol": V,
            "kind": "request",
            "id": "x",
            "type": "handoff",
            "payload": {"quantize": False},
        },
        "unknown field(s) quantize",
        "x",
    ),
    (
        {
            "protocol": V,
            "kind": "request",
            "id": "x",
            "type": "handoff",
            "payload": {"options": {"min_top1": 2}},
        },
        "min_top1 2 must be between 0 and 1",
        "x",
    ),
    (
        {"protocol": V, "kind": "request", "id": "x", "type": "handoff", "payload": {"store": 5}},
        "store must be a string",
        "x",
    ),
]


@pytest.mark.parametrize(("data", "text", "rid"), MALFORMED)
def test_malformed_and_wrong_version_get_a_clear_error_reply(
    data: Any, text: str, rid: str | None, tmp_path: Path
) -> None:
    run = Recorder()
    handler, sent = make({"m": FakeSpec("m")}, run=run, tmp=tmp_path)
    handler.handle(data, sent.append)
    assert len(sent) == 1
    reply = sent[0]
    assert reply["kind"] == "reply" and reply["ok"] is False and reply["id"] == rid
    assert reply["error"]["type"] == "ProtocolError"
    assert text in reply["error"]["message"]
    assert run.calls == []
    # the handler is unharmed: the next good request works
    handler.handle(req("list_models"), sent.append)
    assert sent[-1]["ok"] is True


def test_list_bundles_reads_manifests(tmp_path: Path) -> None:
    from bundle_factory import small_manifest

    from labkit.bundle import write_bundle

    root = tmp_path / "store"
    for version, speed in (("1.0.0", 2.0), ("1.1.0", 3.0)):
        m, files = small_manifest("digits", speedup=speed)
        write_bundle(root, "digits", version, files, m)
    (root / "broken" / "1.0.0").mkdir(parents=True)
    # a manifest that only looks like one is refused by the strict reader, not summarized
    (root / "fake" / "1.0.0").mkdir(parents=True)
    (root / "fake" / "1.0.0" / "manifest.json").write_text(
        json.dumps({"name": "fake", "version": "1.0.0", "default_variant": "fp32"})
    )
    handler, sent = make(tmp=tmp_path)
    handler.handle(req("list_bundles", {"store": str(root)}), sent.append)
    bundles = {b["name"]: b for b in sent[0]["payload"]["bundles"]}
    assert bundles["digits"]["versions"] == ["1.0.0", "1.1.0"]
    assert bundles["digits"]["speedup"] == 3.0 and bundles["digits"]["parity_ok"] is True
    assert bundles["digits"]["variants"] == ["fp32"]
    assert bundles["broken"]["problem"]
    assert "schema_version" in bundles["fake"]["problem"]
    assert bundles["fake"]["parity_ok"] is None


@pytest.mark.parametrize(
    ("change", "version", "previous", "reason", "text"),
    [
        ("none", "1.0.0", "1.0.0", "identical", "no new version: identical to 1.0.0"),
        (
            "minor",
            "1.1.0",
            "1.0.0",
            "weights-only update: drop-in compatible",
            "1.1.0 — weights-only update from 1.0.0: drop-in compatible",
        ),
        (
            "major",
            "2.0.0",
            "1.1.0",
            "signature changed: not drop-in compatible",
            "2.0.0 — signature changed from 1.1.0: not drop-in compatible",
        ),
        (
            "first",
            "1.0.0",
            None,
            "first handoff of this model",
            "1.0.0 — first handoff of this model",
        ),
    ],
)
def test_headline_names_the_previous_version(
    change: str, version: str, previous: str | None, reason: str, text: str
) -> None:
    from labkit.pipeline.runner import headline

    assert headline(FakeResult("digits", version, change, previous, reason)) == text


def test_handoff_trial_uses_the_open_run_or_reopens_it_from_the_store(tmp_path: Path) -> None:
    """The per-trial button: the run open in this kernel, else reopened from disk (after a
    restart), where a trial's model needs model_fn — the error says what to run."""
    import sys

    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).parent))
    from exp_train_fn import build, train

    import labkit
    from labkit.notebook import experiment_model

    exp = labkit.experiment(
        train,
        {"hidden": [4, 8]},
        name="buttons",
        metric="val_acc",
        example_inputs=torch.randn(1, 8),
        task="classification",
        widgets=False,
        store=tmp_path / "experiments",
    )
    payload = {"experiment": "buttons", "run": exp.run, "trial": 2, "bundle_store": "b"}
    run = Recorder()
    handler, sent = make(run=run, tmp=tmp_path)
    handler.handle(req("handoff_trial", payload), sent.append)
    assert sent[-1]["ok"], sent[-1]
    assert [m["kind"] for m in sent] == ["progress"] * 12 + ["reply"]
    spec = run.calls[0]["spec"]
    assert spec.model is exp.trial(2).model and spec.experiment.trial == 2
    assert run.calls[0]["store"] == (tmp_path / "b").resolve()

    experiment_model._OPEN.clear()  # a restarted kernel: nothing open, only the store
    sent.clear()
    handler.handle(req("handoff_trial", payload), sent.append)
    assert not sent[-1]["ok"]
    assert "labkit.experiment.load('buttons', run=" in sent[-1]["error"]["message"]
    labkit.experiment.load("buttons", store=tmp_path / "experiments", model_fn=build)
    sent.clear()
    handler.handle(req("handoff_trial", {**payload, "trial": 1}), sent.append)
    assert sent[-1]["ok"], sent[-1]
    rebuilt = run.calls[-1]["spec"].model
    assert torch.equal(rebuilt[0].weight, exp.trial(1).model[0].weight)
    for bad, text in (
        ({**payload, "trial": 0}, "trial must be a trial id"),
        ({**payload, "run": "../../etc"}, "is not a run id"),
        ({**payload, "experiment": "abc\n"}, "not usable as a folder name"),
        ({**payload, "extra": 1}, "unknown field"),
    ):
        sent.clear()
        handler.handle(req("handoff_trial", bad), sent.append)
        assert not sent[-1]["ok"] and text in sent[-1]["error"]["message"], sent[-1]
