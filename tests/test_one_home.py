"""One fact, one home: nobody outside ``labkit/bundle`` reads a manifest as a raw dict, and
the rules of item 4 of issue 7 (name rule, change wording, default store, bundle listing,
result summary, serve defaults, strict JSON, tolerance judging) have no second copy."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from labkit.bundle.changes import WORDING

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [*ROOT.glob("labkit/**/*.py"), *ROOT.glob("handoff/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]
)
BUNDLE = ROOT / "labkit" / "bundle"

# Raw reads of a manifest: indexing a variable called manifest, or a key that only a
# manifest has, or parsing manifest.json with plain json.
_MANIFEST_ONLY = r"signature|fingerprint|provenance|golden|files|schema_version|manifest_sha256"
RAW_MANIFEST = re.compile(
    r"manifest\s*\[|manifest\.get\(|"
    rf"\[[\"']({_MANIFEST_ONLY})[\"']\]|\.get\([\"']({_MANIFEST_ONLY})[\"']|"
    r"json\.loads?\(.*manifest|[\"']manifest\.json[\"']"
)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _hits(pattern: re.Pattern[str] | str, *, outside: tuple[Path, ...]) -> list[str]:
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    found = []
    for py in SOURCES:
        if any(py == o or o in py.parents for o in outside):
            continue
        for i, line in enumerate(_text(py).splitlines(), 1):
            if rx.search(line):
                found.append(f"{_rel(py)}:{i}: {line.strip()}")
    return found


def test_the_raw_manifest_pattern_catches_what_it_should() -> None:
    # The readers as they were before the typed contract: the pattern must flag them.
    for bad in (
        'vb.manifest["variants"]',
        "m = self.manifest.get('labels')",
        'prov = m["provenance"]',
        'golden = m.get("golden") or {}',
        'json.loads((root / "manifest.json").read_text())',
        'sum(f["bytes"] for f in m["files"])',
    ):
        assert RAW_MANIFEST.search(bad), bad
    for fine in (
        "m.provenance.exporter.name",
        'bench["variants"][v.name]',
        "vb.manifest.golden.inputs",
        'r["default_variant"]',
    ):
        assert not RAW_MANIFEST.search(fine), fine


def test_no_raw_manifest_access_outside_the_bundle_layer() -> None:
    assert _hits(RAW_MANIFEST, outside=(BUNDLE,)) == []


def _only_in(literal: str, home: Path) -> None:
    where = [_rel(p) for p in SOURCES if literal in _text(p)]
    assert where == [_rel(home)], f"{literal!r} lives in {where}, expected only {_rel(home)}"


def test_bundle_name_rule_has_one_home() -> None:
    _only_in("[a-z0-9][a-z0-9._-]{0,63}", BUNDLE / "manifest.py")


@pytest.mark.parametrize("kind", sorted(WORDING))
def test_change_wording_has_one_home(kind: str) -> None:
    w = WORDING[kind]
    # a long string is split over source lines; its first words are enough to find a copy
    for text in {w.title, w.reason, w.verdict} - {WORDING["major"].reason}:
        _only_in(text[:22], BUNDLE / "changes.py")
    _only_in("not drop-in compatible", BUNDLE / "changes.py")


def test_strict_json_and_depth_scanner_have_one_home() -> None:
    _only_in("object_pairs_hook", BUNDLE / "_json.py")
    _only_in("np.maximum.accumulate", BUNDLE / "_json.py")
    defs = [h.split(":")[0] for h in _hits(r"^def _?\w*depth\b", outside=())]
    assert defs == ["labkit/bundle/_json.py", "labkit/serve/jsonguard.py"]
    assert "scan_depth(" in _text(ROOT / "labkit/serve/jsonguard.py")  # the HTTP adapter


def test_default_store_and_listing_have_one_home() -> None:
    _only_in("def default_store", BUNDLE / "store.py")
    _only_in('environ.get("LABKIT_STORE")', BUNDLE / "store.py")
    # handoff list and the side panel both list with labkit.bundle.listing
    for user in (ROOT / "handoff" / "commands.py", ROOT / "labkit/notebook/bundles.py"):
        assert "labkit.bundle.listing import" in _text(user), user
    # and neither walks the store reading manifests itself
    from handoff import commands

    panel = _text(ROOT / "labkit/notebook/bundles.py")
    for source in (inspect.getsource(commands.cmd_list), panel):
        assert ".manifest(" not in source and "read_manifest" not in source


def test_result_summary_and_tolerance_judging_have_one_home() -> None:
    _only_in("parity max rel err", ROOT / "labkit/result_text.py")
    _only_in("max |Δ| =", BUNDLE / "tolerance.py")
    _only_in("def metric_for_task", BUNDLE / "tolerance.py")
    assert not [p for p in SOURCES if "cosine_mean" in _text(p)]  # one name per metric


def test_serve_cli_reads_its_defaults_from_the_config() -> None:
    import argparse

    from labkit.serve.cli import add_serve_parser
    from labkit.serve.config import MiB, ServeConfig

    numeric_defaults = re.findall(r"default=(\d[\d.]*)", inspect.getsource(add_serve_parser))
    # only --port and Ray's --replicas/--max-queued-requests are not ServeConfig's
    assert numeric_defaults == ["8000", "1", "256"]
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "store"])
    d = ServeConfig()
    assert (
        args.max_batch_size,
        args.max_queue,
        args.max_inflight,
        args.workers,
        args.reload_interval,
        args.graceful_timeout,
    ) == (
        d.max_batch_size,
        d.max_queue,
        d.max_inflight,
        d.workers,
        d.reload_interval_s,
        d.graceful_timeout_s,
    )
    assert args.max_body_mb * MiB == d.max_body_bytes
