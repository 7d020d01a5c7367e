"""Cases 2, 6, 8 and the profile parts of 11 of the third hostile review: host profiles are
written by whoever can write beside a store, and were trusted without bounds.

2. streams 2000 → load() took 67 s and 2,003 threads; threads 500 → 502 threads; 8 threads ×
   64 streams on 2 cores cut a server's throughput to a fifth.
6. A malformed profile (chosen null, threads "abc", 10**12, a deeply nested list, an unknown
   engine, ORT with bf16) raised KeyError/ValueError/TypeError/RecursionError in load():
   the version went offline; ``serve --trusted-key`` exited with nothing to serve.
8. One bad profile made ``handoff inspect`` and ``handoff list`` exit 1 for the whole store.
11. Profiles were written 0600 (a server running as another user silently ran untuned);
   ``threads: -4`` was accepted; the docs named a ``golden`` field the file calls
   ``golden_checks``.
Now a profile is a typed part of the contract (``labkit.bundle.profile``): anything wrong is
"ignored: reason" in one line, never an exception, never a version offline.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from bundle_factory import wide_bundle
from profile_tools import plant, profile_doc

import labkit.runtime as rt
from labkit.bundle.profile import (
    MAX_PROFILE_DEPTH,
    STREAMS_PER_CORE,
    HostProfile,
)
from labkit.runtime import profile
from labkit.runtime.engines import Candidate
from labkit.runtime.machine import physical_cores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return wide_bundle(tmp_path / "store", 1, name="tiny-id")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _served_untuned(m: rt.Model, path: Path) -> str:
    """The model runs, untuned, and says in one line why the profile was ignored."""
    note = m.tuning["note"]
    assert m.tuning["profile"] is None
    assert note and "\n" not in note and f"tuning profile {path} ignored: " in note
    assert m.candidate.variant == m.manifest.default_variant and m.streams == 1
    assert 1 <= (m.candidate.threads or 0) <= physical_cores()
    assert m.self_test().ok
    return str(note)


def test_a_profiles_streams_become_sessions(bundle: Path) -> None:
    """The attack is real: what a profile chooses is what load() builds (two streams, two
    sessions), so 2,000 streams would have been 2,000 sessions."""
    path = plant(bundle, profile_doc(bundle, streams=2, threads=1))
    m = rt.load(bundle)
    assert m.tuning == {"profile": str(path), "note": None}
    assert m.streams == 2 and m._sessions.qsize() == 2


@pytest.mark.parametrize(
    ("chosen", "why"),
    [
        ({"streams": 2000}, "2000 streams × 1 threads > 2 × this host's {cores} cores"),
        ({"streams": 10000}, "10000 streams × 1 threads > 2 × this host's {cores} cores"),
        ({"threads": 500}, "500 threads > this host's {cores} cores"),
        ({"threads": 8, "streams": 64}, "threads > this host's {cores} cores"),
        ({"threads": 1, "streams": 10**6}, "1000000 must be between 1 and 65536"),
    ],
)
def test_huge_streams_or_threads_are_ignored(
    bundle: Path, chosen: dict[str, int], why: str
) -> None:
    path = plant(bundle, profile_doc(bundle, **chosen))
    before = _os_threads()
    m = rt.load(bundle)
    note = _served_untuned(m, path)
    assert why.format(cores=physical_cores()) in note
    # Bounded: at most one session's threads were added, whatever the profile asked for.
    assert _os_threads() - before <= physical_cores() + 4


def test_streams_times_threads_is_bounded_by_a_multiple_of_cores(bundle: Path) -> None:
    cores = physical_cores()
    fits = plant(bundle, profile_doc(bundle, threads=1, streams=STREAMS_PER_CORE * cores))
    assert rt.load(bundle).tuning["profile"] == str(fits)
    plant(bundle, profile_doc(bundle, threads=1, streams=STREAMS_PER_CORE * cores + 1))
    assert "streams" in _served_untuned(rt.load(bundle), fits)


def _deep(doc: dict[str, Any], depth: int) -> str:
    text = json.dumps(doc)
    return text[:-1] + ', "runners_up": ' + "[" * depth + "]" * depth + "}"


def _malformed(bundle: Path) -> dict[str, Any]:
    def edit(**changes: Any) -> dict[str, Any]:
        return {**profile_doc(bundle), **changes}

    def chosen(**cand: Any) -> dict[str, Any]:
        return profile_doc(bundle, **cand)

    good = json.dumps(profile_doc(bundle))
    return {
        "chosen null": edit(chosen=None),
        "threads abc": chosen(threads="abc"),
        "threads 10**12": chosen(threads=10**12),
        "threads -4": chosen(threads=-4),
        "threads 0": chosen(threads=0),
        "threads null": chosen(threads=None),
        "threads true": chosen(threads=True),
        "streams 0": chosen(streams=0),
        "deeply nested list": _deep(profile_doc(bundle), 100_000),
        "unknown engine": chosen(engine="tensorrt"),
        "ORT with bf16": chosen(precision="bf16"),
        "no such variant": chosen(variant="nope"),
        "unknown field": edit(evil=1),
        "duplicate key": good[:-1] + ', "objective": "throughput"}',
        "not JSON": "{chosen: ",
        "not UTF-8": b"\xff\xfe{}",
        "a list": "[]",
        "NaN": good.replace('"budget_s": 1.0', '"budget_s": NaN'),
        "old version": edit(profile_version=0),
        "too big": good[:-1] + ', "method": "' + "x" * (1 << 20) + '"}',
        "5000-digit integer": good.replace('"budget_s": 1.0', '"budget_s": ' + "9" * 5000),
        "1e999": good.replace('"budget_s": 1.0', '"budget_s": 1e999'),
    }


def test_the_naive_reader_broke_on_these(bundle: Path) -> None:
    """The attack is real: the way profiles were read (json.loads, Candidate.from_dict on
    the chosen candidate) raises on them, which took the version offline."""
    cases = _malformed(bundle)
    with pytest.raises(RecursionError):
        json.loads(cases["deeply nested list"])
    with pytest.raises(ValueError):
        Candidate.from_dict(cases["threads abc"]["chosen"]["candidate"])
    with pytest.raises(TypeError):
        cases["chosen null"]["chosen"]["candidate"]  # noqa: B018


MALFORMED = [
    "chosen null",
    "threads abc",
    "threads 10**12",
    "threads -4",
    "threads 0",
    "threads null",
    "threads true",
    "streams 0",
    "deeply nested list",
    "unknown engine",
    "ORT with bf16",
    "no such variant",
    "unknown field",
    "duplicate key",
    "not JSON",
    "not UTF-8",
    "a list",
    "NaN",
    "old version",
    "too big",
    "5000-digit integer",
    "1e999",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_profile_is_ignored_with_a_note(bundle: Path, case: str) -> None:
    content = _malformed(bundle)[case]
    path = plant(bundle, content)
    _served_untuned(rt.load(bundle), path)
    # An explicit profile path is judged the same way: a note, not an exception.
    _served_untuned(rt.load(bundle, profile=path), path)


def test_malformed_cases_are_all_listed(bundle: Path) -> None:
    assert sorted(_malformed(bundle)) == sorted(MALFORMED)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_profile_that_is_not_a_regular_file_is_ignored_without_blocking(
    bundle: Path, kind: str
) -> None:
    path = profile.profile_path(bundle, rt.verify(bundle).manifest)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading without O_NONBLOCK would block forever
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")  # endless bytes
    assert "not a regular file" in _served_untuned(rt.load(bundle), path)


def test_a_symlinked_profile_is_read(bundle: Path) -> None:
    """Profile directories mounted from a ConfigMap hold symlinks to the real files."""
    path = profile.profile_path(bundle, rt.verify(bundle).manifest)
    real = plant(bundle, profile_doc(bundle), where=path.parent / "..data" / "real.json")
    path.symlink_to(real)
    assert rt.load(bundle).tuning == {"profile": str(path), "note": None}


def test_the_reader_caps_depth_before_parsing() -> None:
    from labkit.errors import FormatError

    with pytest.raises(FormatError, match=r"\[profile\] .*deeper than"):
        HostProfile.from_json(b"[" * (MAX_PROFILE_DEPTH + 1) + b"]" * (MAX_PROFILE_DEPTH + 1))


def test_a_server_keeps_the_version_online(bundle: Path) -> None:
    pytest.importorskip("starlette")
    from labkit.serve.repository import ModelRepository

    for case in ("chosen null", "deeply nested list", "ORT with bf16", "threads 10**12"):
        plant(bundle, _malformed(bundle)[case])
        repo = ModelRepository(bundle.parent.parent)
        events = repo.refresh()
        assert [(n, ok) for n, _, ok, _ in events] == [("tiny-id", True)], case
        assert repo.get("tiny-id").model.tuning["profile"] is None


def test_a_server_with_trusted_keys_keeps_the_version_online(bundle: Path, tmp_path: Path) -> None:
    """``serve --trusted-key`` exited 3 with nothing to serve when a profile was malformed."""
    pytest.importorskip("starlette")
    pytest.importorskip("model_signing")
    from signing_helpers import make_keys

    from labkit.runtime.signing import sign_bundle
    from labkit.serve.repository import ModelRepository

    keys = make_keys(tmp_path / "keys", "ops")
    sign_bundle(bundle, keys.private)
    plant(bundle, _malformed(bundle)["threads abc"])
    repo = ModelRepository(bundle.parent.parent, trusted_keys=[str(keys.public)])
    repo.refresh()
    assert repo.served() == [("tiny-id", "1.0.0")]


def test_inspect_and_list_say_ignored_and_keep_going(bundle: Path, tmp_path: Path) -> None:
    from signing_helpers import handoff

    store = bundle.parent.parent
    other = wide_bundle(store, 1, name="other")
    good = plant(other, profile_doc(other))
    plant(bundle, _malformed(bundle)["chosen null"])
    for argv in (["inspect", str(bundle)], ["list", str(store)], ["list", str(store), "--json"]):
        proc = handoff(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "ignored: [profile]" in proc.stdout
    listing = json.loads(handoff("list", str(store), "--json").stdout)
    tuning = {r["name"]: r["tuning"] for r in listing}
    assert "ignored: [profile] profile field 'chosen'" in tuning["tiny-id"]
    assert tuning["other"].startswith("v0/onnxruntime-fp32@1t") and str(good) in tuning["other"]


def test_profiles_are_written_world_readable_whatever_the_umask(
    bundle: Path, tmp_path: Path
) -> None:
    doc = profile_doc(bundle)
    old = os.umask(0o077)
    try:
        path = profile.write(tmp_path / "p" / "q" / "profile.json", doc)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == profile.PROFILE_MODE == 0o644
    for folder in (tmp_path / "p", tmp_path / "p" / "q"):
        assert folder.stat().st_mode & 0o777 == 0o755
    assert HostProfile.from_json(path.read_bytes()).to_dict() == doc


def test_the_writer_refuses_what_the_reader_would(bundle: Path, tmp_path: Path) -> None:
    from labkit.errors import FormatError

    with pytest.raises(FormatError, match=r"threads"):
        profile.write(tmp_path / "bad.json", profile_doc(bundle, threads=-4))
    assert not (tmp_path / "bad.json").exists()


def test_the_docs_name_exactly_the_fields_the_reader_knows() -> None:
    from labkit.bundle import profile as contract

    text = (REPO / "docs" / "bundle-format.md").read_text()
    section = text.split("## Host profiles", 1)[1].split("\n## ", 1)[0]
    documented: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    assert documented == set(contract._KEYS)
