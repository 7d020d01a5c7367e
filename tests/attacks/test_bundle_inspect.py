"""``handoff inspect`` (and diff/verify output) never sends a manifest's control characters
to the terminal; ``--json`` stays valid JSON that round-trips the exact strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_attack_tools import reseal

from handoff.cli import main

CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
EVIL = f"{CLEAR}all good\r\n\x07\x9b31m\u202e"


def _poison(m: dict) -> None:  # type: ignore[type-arg]
    m["task"] = EVIL
    m["labels"] = [EVIL, "ok"]
    m["created"] = EVIL
    m["change"]["reason"] = EVIL
    m["signature"]["inputs"][0]["name"] = f"x{CLEAR}"
    m["variants"][0]["precision"] = EVIL
    m["provenance"]["exporter"]["name"] = EVIL


def test_inspect_escapes_control_characters(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(bundle)]) == 0
    pristine = capsys.readouterr().out
    reseal(bundle, _poison)
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert not any(not c.isprintable() for c in out.replace("\n", "")), repr(out)
    assert "\\x1b[2J\\x1b[H" in out  # shown, escaped, so an operator sees the attempt
    assert "\\r\\n\\x07\\x9b31m\\u202e" in out
    assert out.count("\n") == pristine.count("\n")  # no line forged by a newline


def test_inspect_json_stays_valid_and_exact(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reseal(bundle, _poison)
    assert main(["inspect", str(bundle), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out
    data = json.loads(out)
    assert data["task"] == EVIL and data["labels"][0] == EVIL


def test_refusal_quoting_a_hostile_name_is_one_line(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify's [signature] refusal quotes the manifest's input name: still one line."""
    reseal(bundle, _poison)
    assert main(["verify", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "[signature]" in err, repr(err)
