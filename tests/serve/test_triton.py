"""``handoff export-triton``: a Triton model repository that Triton's own config schema parses,
with every version of a model, batching only where the serving probe proves it, warm-up from
the golden inputs, labels and the tuned thread count."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile_helpers import onnx_model, reseal, with_model
from serve_helpers import Bundles

from labkit.bundle import Signature
from labkit.serve.cli import main
from labkit.serve.triton import TritonConfig, render_config

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path: Path) -> Any:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(bundle: Path, rel: str) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return next(f["sha256"] for f in manifest["files"] if f["path"] == rel)


def test_export_triton_repository(bundles: Bundles, tmp_path: Path) -> None:
    bundle = bundles.paths["mlp-1.0.0"]
    assert main(["export-triton", str(bundle), str(tmp_path / "repo")]) == 0
    folder = tmp_path / "repo" / "mlp"
    cfg = _parse(folder / "config.pbtxt")
    assert cfg.name == "mlp" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 32 and cfg.HasField("dynamic_batching")  # the probe passed
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("input_0", model_config_pb2.TYPE_FP32, [8])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.output] == [
        ("output", model_config_pb2.TYPE_FP32, [3])
    ]
    (group,) = cfg.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 1
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 128
    assert cfg.version_policy.HasField("all")
    assert json.loads(cfg.parameters["labkit_versions"].string_value) == {"1": "1.0.0"}
    assert _sha(folder / "1" / "model.onnx") == _listed(bundle, "models/fp32.onnx")
    # warm-up: one golden row, raw little-endian bytes, repeated by Triton up to the batch
    names = [w.name for w in cfg.model_warmup]
    assert names == ["golden", "golden-batch-32"]
    (warm,) = cfg.model_warmup[0].inputs.items()
    assert warm[0] == "input_0" and list(warm[1].dims) == [8]
    data = (folder / "warmup" / warm[1].input_data_file).read_bytes()
    from labkit.runtime import load

    golden = load(bundle, profile=None).golden_inputs()["input_0"]
    assert data == golden[0].astype("<f4").tobytes()
    assert "intra_op_thread_count" not in cfg.parameters  # no profile on this host


def test_two_versions_land_in_one_repository(bundles: Bundles, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    v1, v2 = bundles.paths["mlp-1.0.0"], bundles.paths["mlp-1.1.0"]
    assert main(["export-triton", str(v1), str(repo)]) == 0
    assert main(["export-triton", str(v2), str(repo)]) == 0  # appends; deletes nothing
    folder = repo / "mlp"
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == ["1", "2"]
    assert _sha(folder / "1" / "model.onnx") == _listed(v1, "models/fp32.onnx")
    assert _sha(folder / "2" / "model.onnx") == _listed(v2, "models/fp32.onnx")
    cfg = _parse(folder / "config.pbtxt")
    assert json.loads(cfg.parameters["labkit_versions"].string_value) == {
        "1": "1.0.0",
        "2": "1.1.0",
    }
    assert cfg.HasField("dynamic_batching")
    # again: nothing changes; the same version number for another bundle needs --force
    before = _sha(folder / "1" / "model.onnx")
    assert main(["export-triton", str(v1), str(repo)]) == 0
    assert _sha(folder / "1" / "model.onnx") == before
    assert main(["export-triton", str(v2), str(repo), "--triton-version", "1"]) == 1
    other = tmp_path / "other" / "mlp" / "1.0.0"  # another bundle that says 1.0.0
    shutil.copytree(v1, other)
    reseal(other, {}, labels=["a", "b", "c"])
    assert main(["export-triton", str(other), str(repo)]) == 1
    assert _sha(folder / "1" / "model.onnx") == before
    assert main(["export-triton", str(other), str(repo), "--force"]) == 0
    record = json.loads((folder / "1" / "labkit.json").read_text())
    assert (
        record["manifest_digest"]
        == json.loads((other / "manifest.json").read_text())["manifest_sha256"]
    )
    assert (folder / "2" / "model.onnx").is_file()  # the other version is untouched
    assert not [p for p in folder.iterdir() if p.name.startswith(".labkit")]  # no leftovers


def test_a_store_model_folder_exports_every_version(bundles: Bundles, tmp_path: Path) -> None:
    assert main(["export-triton", str(bundles.root / "mlp"), str(tmp_path)]) == 0
    cfg = _parse(tmp_path / "mlp" / "config.pbtxt")
    assert json.loads(cfg.parameters["labkit_versions"].string_value) == {
        "1": "1.0.0",
        "2": "1.1.0",
        "3": "1.2.0",
    }
    for n, key in (("1", "mlp-1.0.0"), ("3", "mlp-1.2.0")):
        record = json.loads((tmp_path / "mlp" / n / "labkit.json").read_text())
        assert record["batching_probe"]["ok"] and record["batching_probe"]["sizes"] == [32, 31]
        bundle = bundles.paths[key]
        assert _sha(tmp_path / "mlp" / n / "model.onnx") == _listed(bundle, "models/fp32.onnx")


def test_a_batch_mixing_model_gets_no_dynamic_batching(
    bundles: Bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "store" / "mlp" / "1.0.0"
    shutil.copytree(bundles.paths["mlp-1.0.0"], bundle)
    rows = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8)
    with_model(bundle, onnx_model("batch_mean"), rows)
    assert main(["export-triton", str(bundle), str(tmp_path / "repo"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["batching"]["on"] is False and "not independent" in doc["batching"]["reason"]
    cfg = _parse(tmp_path / "repo" / "mlp" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [-1, 8]  # full shape: Triton never concatenates
    # warm-up without batching: the whole golden set as one request
    assert list(cfg.model_warmup[0].inputs["input_0"].dims) == [3, 8]


def test_labels_and_two_inputs(bundles: Bundles, tmp_path: Path) -> None:
    bundle = tmp_path / "store" / "mlp" / "1.0.0"
    shutil.copytree(bundles.paths["mlp-1.0.0"], bundle)
    reseal(bundle, {}, labels=["cat", "dog", "eel"])
    assert main(["export-triton", str(bundle), str(tmp_path / "repo")]) == 0
    cfg = _parse(tmp_path / "repo" / "mlp" / "config.pbtxt")
    assert cfg.output[0].label_filename == "labels.txt"
    assert (tmp_path / "repo" / "mlp" / "labels.txt").read_text() == "cat\ndog\neel\n"
    assert main(["export-triton", str(bundles.paths["two"]), str(tmp_path / "repo")]) == 0
    cfg = _parse(tmp_path / "repo" / "two" / "config.pbtxt")
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("input_0", model_config_pb2.TYPE_INT64, [5]),
        ("input_1", model_config_pb2.TYPE_FP32, [1]),
    ]
    assert set(cfg.model_warmup[0].inputs) == {"input_0", "input_1"}


def test_non_batchable_signature_has_no_dynamic_batching() -> None:
    sig = Signature.from_dict(
        {
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": [1, "seq", 4]},
                {"name": "flag", "dtype": "bool", "shape": []},
            ],
            "outputs": [{"name": "y", "dtype": "float16", "shape": [1, 2]}],
        }
    )
    text = render_config(TritonConfig("fixed", sig, batching=False, versions={1: "1.0.0"}))
    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, -1, 4]
    assert cfg.input[1].data_type == model_config_pb2.TYPE_BOOL
    assert list(cfg.input[1].dims) == [1] and list(cfg.input[1].reshape.shape) == []
    assert cfg.output[0].data_type == model_config_pb2.TYPE_FP16


def test_tampered_or_missing_bundle_is_refused(
    bundles: Bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "mlp" / "1.0.0"
    shutil.copytree(bundles.paths["mlp-1.0.0"], copy)
    (copy / "report.md").write_text("edited")
    assert main(["export-triton", str(copy), str(tmp_path / "repo")]) == 1  # a check failed
    assert not (tmp_path / "repo" / "mlp").exists()
    capsys.readouterr()
    assert main(["export-triton", str(tmp_path / "nope"), str(tmp_path / "repo"), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["error"]["exit_code"] == 2


def test_the_tuned_thread_count_is_used(bundles: Bundles, tmp_path: Path) -> None:
    from labkit.runtime.tune import tune

    store = bundles.store_with(tmp_path / "store", "mlp-1.0.0")
    bundle = store / "mlp" / "1.0.0"
    doc = tune(bundle, budget_s=4, engine_names=["onnxruntime"])
    chosen = doc["chosen"]["candidate"]
    assert main(["export-triton", str(bundle), str(tmp_path / "repo")]) == 0
    cfg = _parse(tmp_path / "repo" / "mlp" / "config.pbtxt")
    if chosen["engine"] == "onnxruntime" and chosen["precision"] == "fp32" and chosen["threads"]:
        assert cfg.parameters["intra_op_thread_count"].string_value == str(chosen["threads"])
        assert cfg.instance_group[0].count == max(1, int(chosen.get("streams", 1)))
    else:  # the profile chose something Triton's onnxruntime backend cannot be told
        assert "intra_op_thread_count" not in cfg.parameters
