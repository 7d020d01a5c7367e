"""``handoff export-triton``: a Triton model repository that Triton's own config schema parses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from serve_helpers import Bundles

from labkit.bundle import Signature
from labkit.serve.cli import main
from labkit.serve.triton import render_config

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path: Path):  # type: ignore[no-untyped-def]
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_triton_repository(bundles: Bundles, tmp_path: Path) -> None:
    bundle = bundles.paths["mlp-1.0.0"]
    assert main(["export-triton", str(bundle), str(tmp_path / "repo")]) == 0
    cfg = _parse(tmp_path / "repo" / "mlp" / "config.pbtxt")
    assert cfg.name == "mlp" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 32
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("input_0", model_config_pb2.TYPE_FP32, [8])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.output] == [
        ("output", model_config_pb2.TYPE_FP32, [3])
    ]
    (group,) = cfg.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 1
    assert cfg.HasField("dynamic_batching")
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 128
    assert cfg.parameters["labkit_version"].string_value == "1.0.0"
    model = tmp_path / "repo" / "mlp" / "1" / "model.onnx"
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert hashlib.sha256(model.read_bytes()).hexdigest() == listed["models/fp32.onnx"]
    # refuses to overwrite without --force, then replaces with it
    assert main(["export-triton", str(bundle), str(tmp_path / "repo")]) == 2
    assert (
        main(
            [
                "export-triton",
                str(bundle),
                str(tmp_path / "repo"),
                "--force",
                "--instances",
                "2",
                "--max-batch-size",
                "8",
            ]
        )
        == 0
    )
    cfg = _parse(tmp_path / "repo" / "mlp" / "config.pbtxt")
    assert cfg.instance_group[0].count == 2 and cfg.max_batch_size == 8


def test_two_inputs_int64(bundles: Bundles, tmp_path: Path) -> None:
    assert main(["export-triton", str(bundles.paths["two"]), str(tmp_path)]) == 0
    cfg = _parse(tmp_path / "two" / "config.pbtxt")
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("input_0", model_config_pb2.TYPE_INT64, [5]),
        ("input_1", model_config_pb2.TYPE_FP32, [1]),
    ]


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
    cfg = text_format.Parse(render_config("fixed", "1.0.0", sig), model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, -1, 4]
    assert cfg.input[1].data_type == model_config_pb2.TYPE_BOOL
    assert list(cfg.input[1].dims) == [1] and list(cfg.input[1].reshape.shape) == []
    assert cfg.output[0].data_type == model_config_pb2.TYPE_FP16


def test_tampered_bundle_is_refused(bundles: Bundles, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "mlp" / "1.0.0"
    shutil.copytree(bundles.paths["mlp-1.0.0"], copy)
    (copy / "report.md").write_text("edited")
    assert main(["export-triton", str(copy), str(tmp_path / "repo")]) == 2
    assert not (tmp_path / "repo" / "mlp").exists()
