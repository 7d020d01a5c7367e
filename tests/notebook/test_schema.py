"""The JSON Schema and the extension's TypeScript contract are generated from the Python
types, are current, and describe what Python really writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema" / "labkit.schema.json").read_text())


def validate(name: str, payload: Any) -> None:
    """Validate against one definition, resolving $refs within the schema."""
    doc = {**SCHEMA, "$ref": f"#/$defs/{name}"}
    jsonschema.Draft202012Validator(doc).validate(json.loads(json.dumps(payload)))


def test_generated_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_schema.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_schema", ROOT / "scripts" / "gen_schema.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_check_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _generator()
    stale = tmp_path / "contract.ts"
    stale.write_text("export const STAGES = ['freeze'];\n")
    monkeypatch.setattr(gen, "TS_PATH", stale)
    monkeypatch.setattr(gen, "outputs", lambda: {stale: "new\n"})
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and stale.read_text() == "new\n"


def test_typescript_constants_come_from_python() -> None:
    from labkit.bundle.manifest import NAME_RE
    from labkit.notebook.protocol import PROTOCOL_VERSION, REQUEST_TYPES, TARGET
    from labkit.request import STAGE_STATUSES, STAGES

    ts = (ROOT / "extension" / "src" / "generated" / "contract.ts").read_text()
    assert f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};" in ts
    assert f"export const COMM_TARGET = '{TARGET}';" in ts
    assert "export const STAGES = [" + ", ".join(f"'{s}'" for s in STAGES) + "]" in ts
    assert "'skip'" in ts and len(STAGE_STATUSES) == 5
    assert "'" + "', '".join(REQUEST_TYPES) + "'" in ts
    assert json.dumps(f"^(?:{NAME_RE.pattern})$") in ts
    # no hand copy of the stage list or the name rule is left in the extension's sources
    for src in (ROOT / "extension" / "src").glob("*.ts"):
        text = src.read_text()
        assert "'freeze'," not in text and "[a-z0-9._-]" not in text, src


def test_request_and_events_match_the_schema() -> None:
    from labkit.request import (
        HandoffEvent,
        HandoffRequest,
        ProgressEvent,
        RequestOptions,
    )

    request = HandoffRequest(
        model="digits",
        store="/s",
        source="a.ipynb",
        options=RequestOptions(quantize=False, min_top1=0.9),
    )
    validate("HandoffRequest", request.to_dict())
    assert HandoffRequest.from_dict(request.to_dict()) == request
    validate("HandoffRequest", {})  # every field has a default
    for event in (
        HandoffEvent.of_progress(ProgressEvent("export", "done", "", None, 1.5)),
        HandoffEvent.of_error("ExportError", "boom", "export"),
    ):
        validate("HandoffEvent", event.to_dict())
        assert HandoffEvent.from_dict(event.to_dict()) == event
    with pytest.raises(jsonschema.ValidationError):
        validate("ProgressEvent", {"stage": "export", "status": "finished"})
    with pytest.raises(jsonschema.ValidationError):
        validate("HandoffRequest", {"notebook_path": "a.ipynb"})
    with pytest.raises(jsonschema.ValidationError):  # a result must be a whole HandoffResult
        validate("HandoffEvent", {"kind": "result", "result": {"name": "x"}})


def test_replies_of_the_kernel_match_the_schema(tmp_path: Path) -> None:
    from labkit.notebook import protocol as p
    from labkit.notebook.handler import HandoffHandler

    class Spec:
        name = "m"
        task = "classification"
        example_inputs = ()
        model = None

    handler = HandoffHandler(registered=lambda: {"m": Spec()}, cwd=tmp_path)
    for rtype, definition in (
        ("hello", "HelloReply"),
        ("list_models", "ModelsReply"),
        ("list_bundles", "BundlesReply"),
    ):
        sent: list[dict[str, Any]] = []
        handler.handle(
            {
                "protocol": p.PROTOCOL_VERSION,
                "kind": "request",
                "id": "r",
                "type": rtype,
                "payload": {},
            },
            sent.append,
        )
        assert sent[0]["ok"], sent
        validate(definition, sent[0]["payload"])


def test_real_handoffs_match_the_schema(tmp_path: Path) -> None:
    """Three real handoffs through the runner (first, retrain, unchanged) and a written
    manifest.json validate; the extension's fixtures are made the same way."""
    payloads = _generator().real_payloads(tmp_path)
    validate("Manifest", payloads["manifest"])
    for label in ("first", "minor", "none"):
        event = payloads[f"event-{label}"]
        validate("HandoffEvent", event)
        assert event["result"]["change"] == label
        for progress in payloads[f"progress-{label}"]:
            validate("HandoffEvent", progress)
    assert payloads["event-minor"]["headline"] == (
        "1.1.0 — weights-only update from 1.0.0: drop-in compatible"
    )
    assert payloads["event-none"]["headline"] == "no new version: identical to 1.1.0"
    statuses = {
        (p["progress"]["stage"], p["progress"]["status"]) for p in payloads["progress-none"]
    }
    assert {(s, "skip") for s in ("optimize", "benchmark", "bundle")} <= statuses
    assert not {(s, "done") for s in ("optimize", "benchmark", "bundle")} & statuses
    variant = payloads["event-first"]["result"]["variants"][0]
    # the fields the extension's tables read are really written
    assert variant["parity"]["passed"] is True and variant["benchmark"]["p50_ms"] > 0
    reliable = payloads["event-first"]["result"]["baseline"]["reliable"]
    # the kernel's speed chart for that result: one bar per variant and series, its speed-ups
    figure = payloads["figure-first"]
    variants = payloads["event-first"]["result"]["variants"]
    if reliable:
        assert variant["speedup"]["p50"] > 0
        assert [t["y"] for t in figure["data"]] == [
            [v["speedup"][key] for v in variants] for key in ("p50", "throughput")
        ]
    else:  # eager was not measured consistently (a busy machine): no figures, no chart
        assert variant["speedup"] is None and figure is None
    validate(
        "HandoffReply",
        {
            **{k: payloads["event-first"][k] for k in ("result", "store", "headline")},
            "figure": figure,
        },
    )
    # a broken manifest is refused by the schema too
    broken = {**payloads["manifest"], "change": {"kind": "sideways", "from": None, "reason": ""}}
    with pytest.raises(jsonschema.ValidationError):
        validate("Manifest", broken)


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "extension" / "src" / "__tests__" / "fixtures").glob("*.json")),
    ids=lambda p: p.stem,
)
def test_committed_fixtures_match_the_schema(path: Path) -> None:
    payload = json.loads(path.read_text())
    if path.stem == "manifest":
        validate("Manifest", payload)
    if path.stem.startswith("figure-"):  # the speed chart of that event's result
        event = json.loads(path.with_name(f"event-{path.stem[7:]}.json").read_text())
        validate(
            "HandoffReply",
            {
                "result": event["result"],
                "store": event["store"],
                "headline": event["headline"],
                "figure": payload,
            },
        )
        fresh = _generator().speed_json(event["result"])
        assert payload["data"] == fresh["data"], "run scripts/gen_schema.py --fixtures"
        return
    for event in payload if isinstance(payload, list) else [payload]:
        if path.stem != "manifest":
            validate("HandoffEvent", event)


def test_the_side_panels_listing_matches_the_schema(tiny_store: Path, tmp_path: Path) -> None:
    import shutil

    from labkit.bundle import read_manifest
    from labkit.notebook import protocol as p
    from labkit.notebook.handler import HandoffHandler

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    broken = store / "broken" / "1.0.0"
    broken.mkdir(parents=True, exist_ok=True)
    sent: list[dict[str, Any]] = []
    HandoffHandler(registered=dict, cwd=tmp_path).handle(
        {
            "protocol": p.PROTOCOL_VERSION,
            "kind": "request",
            "id": "r",
            "type": "list_bundles",
            "payload": {"store": str(store)},
        },
        sent.append,
    )
    assert sent[0]["ok"], sent
    validate("BundlesReply", sent[0]["payload"])
    bundles = {b["name"]: b for b in sent[0]["payload"]["bundles"]}
    assert bundles["tiny"]["versions"] == ["1.0.0"] and bundles["tiny"]["parity_ok"] is True
    assert bundles["broken"]["problem"]
    tiny = read_manifest(store / "tiny" / "1.0.0")
    if tiny.baseline is not None and tiny.baseline.reliable:
        assert bundles["tiny"]["speedup"] > 0
    else:  # eager was not measured consistently (a busy machine): no speed-up to list
        assert bundles["tiny"]["speedup"] is None


def test_the_experiment_output_and_the_trial_request_match_the_schema(tmp_path: Path) -> None:
    """What the extension draws per-trial buttons from, and what a button sends back."""
    import labkit
    from labkit.notebook.experiment_view import trials_bundle
    from labkit.notebook.protocol import EXPERIMENT_MIME, TrialHandoffRequest

    exp = labkit.experiment(
        lambda x: {"model": None, "val_loss": x, "note": "text"},
        [{"x": 0.5}, {"x": float("nan")}],
        name="schema",
        metric="val_loss",
        store=tmp_path,
        widgets=False,
    )
    data = trials_bundle(exp)[EXPERIMENT_MIME]
    validate("ExperimentOutput", data)
    assert SCHEMA["x-constants"]["EXPERIMENT_MIME"] == EXPERIMENT_MIME
    request = TrialHandoffRequest(data["experiment"], data["run"], 1, store=data["store"])
    validate("TrialHandoffRequest", request.to_dict())
    assert TrialHandoffRequest.from_dict(request.to_dict()) == request
    with pytest.raises(jsonschema.ValidationError):
        validate("ExperimentOutput", {**data, "goal": "up"})
