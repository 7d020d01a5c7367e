"""The Bundles panel's reads through the kernel: a bundle's report (from the verified bundle)
and the diff against the version before it, in the same words as ``handoff diff``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from bundle_factory import small_manifest

from labkit.bundle import Fingerprint, write_bundle
from labkit.notebook import protocol as p
from labkit.notebook.handler import HandoffHandler


def _store(tmp_path: Path) -> Path:
    """digits 1.0.0 and 1.1.0 (new weights), each with its own report.md."""
    root = tmp_path / "store"
    for version, weights in (("1.0.0", "sha256:w1"), ("1.1.0", "sha256:w2")):
        m, files = small_manifest("digits", speedup=2.0)
        m = dataclasses.replace(
            m, fingerprint=Fingerprint("sha256:a", weights, "sha256:s", "sha256:m")
        )
        files["report.md"] = f"# digits {version}\n\n| variant | parity |\n|---|---|\n".encode()
        write_bundle(root, "digits", version, files, m)
    return root


def ask(tmp_path: Path, rtype: str, payload: dict[str, Any]) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    handler = HandoffHandler(registered=dict, cwd=tmp_path)
    message = {"protocol": p.PROTOCOL_VERSION, "kind": "request", "id": "r1", "type": rtype}
    handler.handle(json.loads(json.dumps({**message, "payload": payload})), sent.append)
    assert len(sent) == 1
    return json.loads(json.dumps(sent[0]))


def test_report_of_the_latest_or_a_chosen_version(tmp_path: Path) -> None:
    root = _store(tmp_path)
    latest = ask(tmp_path, "bundle_report", {"store": str(root), "name": "digits"})
    assert latest["ok"] is True
    assert latest["payload"]["version"] == "1.1.0"
    assert latest["payload"]["markdown"].startswith("# digits 1.1.0\n")
    assert latest["payload"]["path"] == str(root / "digits" / "1.1.0")
    older = ask(
        tmp_path, "bundle_report", {"store": str(root), "name": "digits", "version": "1.0.0"}
    )
    assert older["payload"]["markdown"].startswith("# digits 1.0.0\n")


def test_a_report_changed_after_the_handoff_is_refused(tmp_path: Path) -> None:
    root = _store(tmp_path)
    report = root / "digits" / "1.1.0" / "report.md"
    report.write_bytes(report.read_bytes().replace(b"parity", b"PARITY"))
    reply = ask(tmp_path, "bundle_report", {"store": str(root), "name": "digits"})
    assert reply["ok"] is False
    assert reply["error"]["type"] == "IntegrityError"
    assert "report.md" in reply["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "etype", "says"),
    [
        ({"name": "../digits"}, "InputError", "is not a bundle name"),
        ({"name": "digits", "version": "../../1.0.0"}, "InputError", "is not a version"),
        ({"name": "digits", "version": "9.0.0"}, "StoreError", "it has: 1.0.0, 1.1.0"),
        ({"name": "nope"}, "StoreError", "no bundle named 'nope'"),
    ],
)
def test_names_and_versions_the_store_could_not_hold_are_refused(
    tmp_path: Path, payload: dict[str, Any], etype: str, says: str
) -> None:
    root = _store(tmp_path)
    for rtype in ("bundle_report", "bundle_diff"):
        reply = ask(tmp_path, rtype, {"store": str(root), **payload})
        assert reply["ok"] is False, rtype
        assert reply["error"]["type"] == etype
        assert says in reply["error"]["message"]


def test_diff_against_the_previous_version_says_what_handoff_diff_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from handoff.cli import main

    root = _store(tmp_path)
    reply = ask(tmp_path, "bundle_diff", {"store": str(root), "name": "digits"})
    assert reply["ok"] is True
    got = reply["payload"]
    assert (got["from_version"], got["to_version"]) == ("1.0.0", "1.1.0")
    assert got["diff"]["change"] == "minor"
    assert got["diff"]["weights_changed"] is True
    assert got["diff"]["architecture_changed"] is False
    assert got["diff"]["outputs"]["compared"] is True
    assert got["lines"][0] == (
        "digits 1.0.0 → digits 1.1.0: minor — weights-only update: drop-in compatible"
    )
    # the CLI prints the same lines, from the same function
    assert main(["diff", str(root / "digits" / "1.0.0"), str(root / "digits" / "1.1.0")]) == 0
    assert capsys.readouterr().out.splitlines() == got["lines"]


def test_the_first_version_has_nothing_to_diff_against(tmp_path: Path) -> None:
    root = _store(tmp_path)
    reply = ask(tmp_path, "bundle_diff", {"store": str(root), "name": "digits", "version": "1.0.0"})
    assert reply["ok"] is False
    assert "oldest version" in reply["error"]["message"]
    both = ask(
        tmp_path,
        "bundle_diff",
        {"store": str(root), "name": "digits", "version": "1.0.0", "against": "1.1.0"},
    )
    assert both["ok"] is True and both["payload"]["diff"]["downgrade"] is True
