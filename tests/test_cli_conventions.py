"""Issue 15 item 7, CLI conventions: one exit-code table (0 ok, 1 a check failed, 2 usage or
not found, 3 the environment), ``--json`` on every command that prints a result, errors as
JSON under ``--json``, ``inspect --json`` with signature and tuning status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_factory import small_manifest

from handoff.cli import main
from labkit.bundle.writer import write_bundle
from labkit.errors import (
    BundleNotFoundError,
    HandoffRequestError,
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    exit_code,
)


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    manifest, files = small_manifest("tiny")
    return write_bundle(tmp_path / "store", "tiny", "1.0.0", files, manifest)


def _json_error(out: str) -> dict[str, object]:
    doc = json.loads(out)
    assert doc["ok"] is False, doc
    error = doc["error"]
    assert isinstance(error, dict)
    return error


def test_the_exit_code_table() -> None:
    assert exit_code(BundleNotFoundError("x", rule="listing")) == 2
    assert exit_code(NotFoundError("no such key")) == 2
    assert exit_code(FileNotFoundError(2, "gone")) == 2
    assert exit_code(HandoffRequestError("--min-top1 2 must be between 0 and 1")) == 2
    assert exit_code(IntegrityError("digest", rule="digest")) == 1
    assert exit_code(RuntimeError("the user's script failed")) == 1
    assert exit_code(MissingDependencyError("model-signing", "sign")) == 3
    assert exit_code(PermissionError(13, "denied")) == 3


def test_verify_of_a_missing_path_is_not_found_not_a_failed_check(
    tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path / "nothere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nothere"), "--json"]) == 2
    captured = capsys.readouterr()
    error = _json_error(captured.out)
    assert error["type"] == "BundleNotFoundError" and error["rule"] == "listing"
    assert error["exit_code"] == 2
    assert captured.err.startswith("handoff: error: [listing] no bundle at")
    # a bundle that is there but broken is a failed check
    (bundle / "golden" / "expected.npz").write_bytes(b"tampered")
    assert main(["verify", str(bundle), "--json"]) == 1
    assert _json_error(capsys.readouterr().out)["rule"] == "digest"


def test_usage_errors_are_json_under_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify", "--json"])  # BUNDLE missing
    assert info.value.code == 2
    captured = capsys.readouterr()
    error = _json_error(captured.out)
    assert error["exit_code"] == 2 and "BUNDLE" in str(error["message"])
    assert "usage:" in captured.err


def test_inspect_json_carries_signature_and_tuning_status(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(bundle), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "tiny" and doc["version"] == "1.0.0"  # the manifest's own fields
    assert doc["signing"]["signed"] is False and doc["signing"]["checked"] is False
    assert doc["tuning"]["status"] == "none" and doc["tuning"]["profile"] is None
    # a profile that cannot be read is shown as ignored, with the reason
    profile_dir = bundle.parent.parent / ".tuning" / "tiny" / "1.0.0"
    profile_dir.mkdir(parents=True)
    from labkit.runtime.profile import host_key

    (profile_dir / f"{host_key()}.json").write_text("{not json")
    assert main(["inspect", str(bundle), "--json"]) == 0
    tuning = json.loads(capsys.readouterr().out)["tuning"]
    assert tuning["status"] == "ignored" and tuning["note"]


def test_sign_prints_json(tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("model_signing")
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "attacks"))
    from signing_helpers import make_keys

    keys = make_keys(tmp_path / "keys", "alice")
    assert main(["sign", str(bundle), "--key", str(keys.private), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["replaced"] is False and len(doc["key_fingerprint"]) == 64
    assert main(["inspect", str(bundle), "--json"]) == 0
    signing = json.loads(capsys.readouterr().out)["signing"]
    assert signing["signed"] is True and signing["key_fingerprint"] == doc["key_fingerprint"]
    assert main(["sign", str(bundle), "--key", str(tmp_path / "no.pem"), "--json"]) == 2
    assert "no such file" in str(_json_error(capsys.readouterr().out)["message"])


def test_list_of_a_missing_store_is_json_under_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", str(tmp_path / "none"), "--json"]) == 2
    assert "no store at" in str(_json_error(capsys.readouterr().out)["message"])
