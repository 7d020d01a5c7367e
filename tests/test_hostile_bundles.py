"""One hostile bundle per rule of docs/bundle-format.md.

Each is refused by ``handoff verify`` (non-zero exit, message naming the rule) and by
``labkit.runtime.load`` before any ONNX Runtime session exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import labkit.runtime.model as runtime_model
from handoff.cli import main
from labkit.bundle import verify
from labkit.bundle.manifest import DIGEST_FIELD, self_digest
from labkit.errors import BundleError
from labkit.runtime import load


def rewrite_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the manifest and re-seal its self-digest, so only the rule under test fails."""
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    m[DIGEST_FIELD] = self_digest(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


@pytest.fixture()
def no_session(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Fail the test if a session is created; record attempts."""
    made: list[bytes] = []

    def forbidden(model_bytes: bytes, **_: Any) -> None:
        made.append(model_bytes)
        raise AssertionError("an ONNX Runtime session was created for a refused bundle")

    monkeypatch.setattr(runtime_model, "make_session", forbidden)
    return made


def assert_refused(
    bundle: Path, rule: str, capsys: pytest.CaptureFixture[str], no_session: list[bytes]
) -> None:
    with pytest.raises(BundleError) as info:
        load(bundle)
    assert info.value.rule == rule, str(info.value)
    assert no_session == []
    code = main(["verify", str(bundle)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"[{rule}]" in err
    assert "Traceback" not in err


def test_pristine_bundle_passes(bundle: Path, no_session: list[bytes]) -> None:
    vb = verify(bundle)
    assert vb.manifest.name == "tiny"
    assert {f.path for f in vb.manifest.files} >= {
        "models/fp32.onnx",
        "golden/inputs.npz",
        "golden/expected.npz",
        "report.md",
        "reports/parity.json",
        "reports/benchmark.json",
    }


def _listed(bundle: Path) -> list[str]:
    return [f["path"] for f in json.loads((bundle / "manifest.json").read_text())["files"]]


def test_flipped_byte_in_every_file_is_refused(
    bundle: Path, no_session: list[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    for rel in [*_listed(bundle), "manifest.json"]:
        path = bundle / rel
        data = bytearray(path.read_bytes())
        for offset in (0, len(data) // 2, len(data) - 2):
            flipped = bytearray(data)
            flipped[offset] ^= 0x01
            path.write_bytes(bytes(flipped))
            with pytest.raises(BundleError) as info:
                load(bundle)
            if rel != "manifest.json":
                assert info.value.rule == "digest", (rel, offset, str(info.value))
            else:
                # A flip inside a key name is caught by the schema check, which runs first.
                assert info.value.rule in {"json", "schema", "manifest-digest"}, str(info.value)
        path.write_bytes(bytes(data))
    assert no_session == []
    verify(bundle)  # restored: accepted again


def test_added_file_is_refused(bundle, capsys, no_session):
    (bundle / "reports" / "extra.json").write_text("{}")
    assert_refused(bundle, "listing", capsys, no_session)


def test_added_hidden_file_is_refused(bundle, capsys, no_session):
    (bundle / ".hidden").write_text("x")
    assert_refused(bundle, "listing", capsys, no_session)


def test_removed_file_is_refused(bundle, capsys, no_session):
    (bundle / "golden" / "expected.npz").unlink()
    assert_refused(bundle, "listing", capsys, no_session)


def test_renamed_file_is_refused(bundle, capsys, no_session):
    (bundle / "report.md").rename(bundle / "REPORT.md")
    assert_refused(bundle, "listing", capsys, no_session)


def test_symlink_to_a_copy_is_refused(bundle, capsys, no_session, tmp_path):
    target = bundle / "models" / "fp32.onnx"
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    assert_refused(bundle, "link", capsys, no_session)


def test_symlinked_directory_is_refused(bundle, capsys, no_session, tmp_path):
    (bundle / "source").mkdir(exist_ok=True)
    (bundle / "evil").symlink_to(tmp_path, target_is_directory=True)
    assert_refused(bundle, "link", capsys, no_session)


def test_hard_link_out_is_refused(bundle, capsys, no_session, tmp_path):
    target = bundle / "models" / "fp32.onnx"
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.link(outside, target)
    assert_refused(bundle, "link", capsys, no_session)


@pytest.mark.parametrize(
    "bad",
    [
        "../escape.onnx",
        "models/../../escape.onnx",
        "/etc/passwd",
        "models\\..\\x.onnx",
        "models//fp32.onnx",
        "./report.md",
        "C:/x.onnx",
        "models/%2e%2e/x",
        "report.md#x",
    ],
)
def test_bad_paths_are_refused(bundle, capsys, no_session, bad):
    def change(m: dict[str, Any]) -> None:
        m["files"][0]["path"] = bad

    rewrite_manifest(bundle, change)
    assert_refused(bundle, "path", capsys, no_session)


def test_duplicate_json_keys_are_refused(bundle, capsys, no_session):
    path = bundle / "manifest.json"
    text = path.read_text()
    path.write_text(
        text.replace('"default_variant": ', '"default_variant": "fp32",\n  "default_variant": ', 1)
    )
    assert_refused(bundle, "json", capsys, no_session)


def test_nan_in_manifest_is_refused(bundle, capsys, no_session):
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"schema_version": 1', '"schema_version": NaN'))
    assert_refused(bundle, "json", capsys, no_session)


def test_deep_nesting_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m.__setitem__("notes", json.loads("[" * 40 + "]" * 40)))
    assert_refused(bundle, "json", capsys, no_session)


def test_oversized_manifest_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m.__setitem__("notes", "x" * (1 << 20)))
    assert_refused(bundle, "manifest-size", capsys, no_session)


def test_edited_manifest_without_resealing_is_refused(bundle, capsys, no_session):
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"task": "classification"', '"task": "other"'))
    assert_refused(bundle, "manifest-digest", capsys, no_session)


def test_unsupported_schema_version_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m.__setitem__("schema_version", 2))
    assert_refused(bundle, "schema-version", capsys, no_session)


def test_missing_field_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m.pop("signature"))
    assert_refused(bundle, "schema", capsys, no_session)


def test_unknown_default_variant_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m.__setitem__("default_variant", "fp64"))
    assert_refused(bundle, "variants", capsys, no_session)


def test_variant_file_outside_models_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m["variants"][0].__setitem__("file", "report.md"))
    assert_refused(bundle, "variants", capsys, no_session)


def test_golden_file_not_listed_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m["golden"].__setitem__("inputs", "golden/other.npz"))
    assert_refused(bundle, "golden", capsys, no_session)


def test_lying_size_is_refused(bundle, capsys, no_session):
    rewrite_manifest(
        bundle, lambda m: m["files"][0].__setitem__("bytes", m["files"][0]["bytes"] + 1)
    )
    assert_refused(bundle, "digest", capsys, no_session)


def test_file_over_size_cap_is_refused(bundle, capsys, no_session, monkeypatch):
    import labkit.bundle.integrity as verify_mod

    monkeypatch.setattr(verify_mod, "MAX_FILE_BYTES", 100)
    assert_refused(bundle, "size", capsys, no_session)


def test_fifo_is_refused(bundle, capsys, no_session):
    os.mkfifo(bundle / "pipe")
    assert_refused(bundle, "link", capsys, no_session)


def test_bundle_root_symlink_is_refused(bundle, capsys, no_session, tmp_path):
    link = tmp_path / "link-to-bundle"
    link.symlink_to(bundle, target_is_directory=True)
    assert_refused(link, "link", capsys, no_session)


def test_file_swapped_after_verification_is_caught(bundle, no_session, monkeypatch):
    """The bytes a session gets are hashed as read: a swap after verify is refused."""
    vb = verify(bundle)
    (bundle / "models" / "fp32.onnx").write_bytes(b"swapped")
    with pytest.raises(BundleError) as info:
        vb.read("models/fp32.onnx")
    assert info.value.rule in {"digest", "link"}


def test_variant_digest_not_matching_its_file_is_refused(bundle, capsys, no_session):
    rewrite_manifest(bundle, lambda m: m["variants"][0].__setitem__("sha256", "0" * 64))
    assert_refused(bundle, "variants", capsys, no_session)
