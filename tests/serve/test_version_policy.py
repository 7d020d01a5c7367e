"""What a server loads (--versions all | aliases | latest:N) and how a request's version is
resolved (a version, an alias, latest, or none: the followed alias), in-process on small
real bundles."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from labkit.bundle import Store, write_bundle
from labkit.bundle import aliases as al
from labkit.serve.errors import NotFound, ServeError
from labkit.serve.following import VersionPolicy
from labkit.serve.repository import ModelRepository

pytest.importorskip("onnx")
from bundle_factory import small_manifest  # noqa: E402 - needs onnx


def _store(root: Path, versions: tuple[str, ...], failing: tuple[str, ...] = ()) -> Store:
    for v in versions:
        manifest, files = small_manifest("mlp")
        if v in failing:  # digests right, golden outputs this host does not reproduce
            buf = io.BytesIO()
            np.savez(buf, y=np.arange(6, dtype=np.float32).reshape(3, 2) + 1)
            files["golden/expected.npz"] = buf.getvalue()
        write_bundle(root, "mlp", v, files, manifest)
    return Store(root)


def repo(root: Path, **kw: object) -> ModelRepository:
    r = ModelRepository(root, threads=1, tuning=False, **kw)  # type: ignore[arg-type]
    r.refresh()
    return r


def test_unversioned_requests_follow_the_alias_else_the_latest(tmp_path: Path) -> None:
    store = _store(tmp_path, ("1.0.0", "1.1.0", "1.2.0"))
    r = repo(tmp_path)
    assert r.get("mlp").version == "1.2.0"  # no alias yet: the latest, as before
    al.promote(store.files, "mlp", "prod", "1.0.0")
    al.promote(store.files, "mlp", "staging", "1.1.0")
    r.refresh()
    assert r.get("mlp").version == "1.0.0"
    assert r.get("mlp", "prod").version == "1.0.0"
    assert r.get("mlp", "staging").version == "1.1.0"
    assert r.get("mlp", "latest").version == "1.2.0"
    assert r.get("mlp", "1.1.0").version == "1.1.0"
    with pytest.raises(NotFound, match="no alias 'canary'"):
        r.get("mlp", "canary")
    other = repo(tmp_path, follow="staging")  # --alias staging
    assert other.get("mlp").version == "1.1.0"
    with pytest.raises(Exception, match="not allowed"):
        ModelRepository(tmp_path, follow="Prod")


def test_a_refused_target_is_held_on_the_previous_one(tmp_path: Path) -> None:
    store = _store(tmp_path, ("1.0.0", "1.1.0"), failing=("1.1.0",))
    events: list[tuple[str, str, str, bool]] = []
    al.promote(store.files, "mlp", "prod", "1.0.0")
    r = repo(tmp_path, on_alias=lambda *e: events.append(e))
    assert events == [("mlp", "prod", "1.0.0", True)]
    al.promote(store.files, "mlp", "prod", "1.1.0")
    r.refresh()
    r.refresh()  # held once: logged and counted once per move, not per scan
    assert r.get("mlp").version == "1.0.0"
    assert events[1:] == [("mlp", "prod", "1.1.0", False)]
    assert ("mlp", "1.1.0") in r.refused()
    # with nothing earlier to fall back to, the alias does not answer (503), never the latest
    only = tmp_path / "only"
    bad = _store(only, ("1.0.0", "2.0.0"), failing=("2.0.0",))
    al.promote(bad.files, "mlp", "prod", "2.0.0")
    r2 = repo(only)
    with pytest.raises(ServeError, match="not being served here") as err:
        r2.get("mlp")
    assert err.value.status == 503
    assert r2.get("mlp", "1.0.0").version == "1.0.0"


def test_version_policies_bound_what_is_loaded(tmp_path: Path) -> None:
    store = _store(tmp_path, ("1.0.0", "1.1.0", "1.2.0", "2.0.0"), failing=("1.2.0",))
    assert repo(tmp_path).versions("mlp") == ["1.0.0", "1.1.0", "2.0.0"]  # all (1.2.0 refused)
    assert repo(tmp_path, versions="latest:1").versions("mlp") == ["2.0.0"]
    al.promote(store.files, "mlp", "prod", "1.0.0")
    assert repo(tmp_path, versions="latest:1").versions("mlp") == ["1.0.0", "2.0.0"]
    assert repo(tmp_path, versions="aliases").versions("mlp") == ["1.0.0"]
    # prod → 1.2.0, which this host refuses: the policy also loads what prod falls back to
    al.promote(store.files, "mlp", "prod", "1.1.0")
    al.promote(store.files, "mlp", "prod", "1.2.0")
    r = repo(tmp_path, versions="aliases")
    assert r.versions("mlp") == ["1.1.0"] and r.get("mlp").version == "1.1.0"
    # a new version beyond latest:N replaces the oldest; the alias target stays
    r = repo(tmp_path, versions="latest:1")
    assert r.versions("mlp") == ["1.1.0", "2.0.0"]
    manifest, files = small_manifest("mlp")
    write_bundle(tmp_path, "mlp", "2.1.0", files, manifest)
    events = r.refresh()
    assert r.versions("mlp") == ["1.1.0", "2.1.0"]
    assert ("mlp", "2.0.0", True, "removed") in events


@pytest.mark.parametrize("bad", ["latest", "latest:0", "latest:-1", "some", "latest:x"])
def test_a_bad_policy_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="use all, aliases or latest:N"):
        VersionPolicy.parse(bad)
