"""A store on a real S3-compatible HTTP server (moto, on loopback): push, list, load, verify,
promote and rollback work; an interrupted push never shows as a version; nothing from the
remote is used before it is verified on the local copy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from s3_server import S3, moto_s3, use_s3
from test_aliases import make_store

import labkit.runtime
from labkit.errors import IntegrityError, StoreError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


@pytest.fixture()
def remote(s3: S3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An empty store URL in a fresh bucket; this test's cache in tmp_path."""
    use_s3(monkeypatch, s3)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    return f"s3://{s3.bucket()}/models"


@pytest.fixture()
def local(tmp_path: Path) -> Path:
    make_store(tmp_path / "local", "1.0.0", "1.1.0", failing=("1.1.0",))
    return tmp_path / "local"


def handoff(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )


def test_push_list_load_verify_on_s3(remote: str, local: Path, s3: S3, tmp_path: Path) -> None:
    env = {"LABKIT_CACHE": str(tmp_path / "cli-cache")}
    pushed = handoff("push", str(local / "mlp" / "1.0.0"), remote, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == f"{remote}/mlp/1.0.0: published"
    again = handoff("push", str(local / "mlp" / "1.0.0"), remote, "--json", env=env)
    assert '"published": false' in again.stdout  # same manifest: nothing rewritten
    bucket = remote.split("/")[2]
    assert s3.keys(bucket) == [
        "models/mlp/1.0.0/golden/expected.npz",
        "models/mlp/1.0.0/golden/inputs.npz",
        "models/mlp/1.0.0/manifest.json",
        "models/mlp/1.0.0/models/fp32.onnx",
    ]

    listed = handoff("list", remote, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["mlp", "1.0.0"]
    assert "not pulled to this host yet" in listed.stdout

    verified = handoff("verify", f"{remote}/mlp/1.0.0", env=env)
    assert verified.returncode == 0, verified.stderr
    assert "mlp 1.0.0: integrity OK" in verified.stdout

    model = labkit.runtime.load(f"{remote}/mlp/1.0.0")
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    assert np.array_equal(model.predict(x)["y"], x)
    store_cache = model.path.parent.parent
    assert model.path == tmp_path / "cache" / "stores" / store_cache.name / "mlp" / "1.0.0"
    assert store_cache.name.startswith(f"{bucket}_models-")
    assert model.self_test().ok
    # the same URL through file:// and a plain path load the local store's copy
    assert labkit.runtime.load(f"file://{local}/mlp/1.0.0").path == local / "mlp" / "1.0.0"


def test_an_interrupted_push_never_shows_as_a_version(
    remote: str, local: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labkit.runtime.remote import RemoteStore
    from labkit.runtime.transfer import push

    store = RemoteStore(remote)
    real = store.fs.pipe_file
    sent: list[str] = []

    def flaky(path, data, *a, **kw):  # type: ignore[no-untyped-def]
        if len(sent) == 2:
            raise ConnectionResetError("network gone after 2 objects")
        sent.append(path)
        return real(path, data, *a, **kw)

    monkeypatch.setattr(store.fs, "pipe_file", flaky)
    with pytest.raises(ConnectionResetError):
        push(local / "mlp" / "1.0.0", store)
    monkeypatch.setattr(store.fs, "pipe_file", real)
    bucket = remote.split("/")[2]
    assert len(s3.keys(bucket, "models/mlp/1.0.0/")) == 2  # the objects are there...
    assert store.versions("mlp") == [] and store.names() == []  # ...but no version
    with pytest.raises(StoreError, match="no version 1.0.0"):
        labkit.runtime.load(f"{remote}/mlp/1.0.0")
    listed = handoff("list", remote, env={})
    assert "no bundles in" in listed.stdout
    # the next push completes it; leftovers of another bundle's upload are not kept
    s3.client().put_object(Bucket=bucket, Key="models/mlp/1.0.0/models/stray.onnx", Body=b"x")
    url, committed = push(local / "mlp" / "1.0.0", store)
    assert committed and store.versions("mlp") == ["1.0.0"]
    assert "models/mlp/1.0.0/models/stray.onnx" not in s3.keys(bucket)
    assert labkit.runtime.load(url).self_test().ok


@pytest.mark.slow
def test_a_killed_push_process_never_shows_as_a_version(
    remote: str, s3: S3, tmp_path: Path
) -> None:
    """SIGKILL mid-upload: no handler runs, no cleanup; readers still see no version."""
    from bundle_factory import small_manifest

    from labkit.bundle import write_bundle
    from labkit.runtime.remote import RemoteStore

    manifest, files = small_manifest("big")
    # a few MiB per object, so the upload is still running when the first object lands
    files["source/blob.bin"] = os.urandom(24 << 20)
    files["source/blob2.bin"] = os.urandom(24 << 20)
    bundle = write_bundle(tmp_path / "big-store", "big", "1.0.0", files, manifest)
    proc = subprocess.Popen(
        [sys.executable, "-m", "handoff", "push", str(bundle), remote],
        env={**os.environ, **s3.env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bucket = remote.split("/")[2]
    try:
        while not s3.keys(bucket, "models/big/1.0.0/") and proc.poll() is None:
            pass
        proc.kill()
    finally:
        proc.wait(60)
    keys = s3.keys(bucket, "models/big/1.0.0/")
    assert keys and "models/big/1.0.0/manifest.json" not in keys, keys
    assert RemoteStore(remote).versions("big") == []


def test_the_remote_is_never_trusted(remote: str, local: Path, s3: S3, tmp_path: Path) -> None:
    from labkit.runtime.remote import RemoteStore
    from labkit.runtime.transfer import push

    store = RemoteStore(remote)
    push(local / "mlp" / "1.0.0", store)
    bucket = remote.split("/")[2]
    key = "models/mlp/1.0.0/models/fp32.onnx"
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.client().put_object(Bucket=bucket, Key=key, Body=body[:-1] + b"\x01")
    s3.client().put_object(Bucket=bucket, Key="models/mlp/1.0.0/extra.py", Body=b"import os")
    with pytest.raises(IntegrityError, match=r"\[digest\]"):
        labkit.runtime.load(f"{remote}/mlp/1.0.0")
    cache = tmp_path / "cache" / "stores"
    assert not list(cache.glob("*/mlp/1.0.0"))  # nothing half-pulled was published
    assert not [p for p in cache.glob("*/.staging/*")]
    # a longer object than listed is cut off at its listed size, not downloaded whole
    s3.client().put_object(Bucket=bucket, Key=key, Body=body + b"\0" * (8 << 20))
    with pytest.raises(IntegrityError, match="longer than listed"):
        labkit.runtime.load(f"{remote}/mlp/1.0.0")
    # restored: it loads, and the unlisted object was never downloaded
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)
    model = labkit.runtime.load(f"{remote}/mlp/1.0.0")
    assert not (model.path / "extra.py").exists()
    # a version that exists remotely is never overwritten by another bundle
    from dataclasses import replace

    from bundle_factory import small_manifest

    from labkit.bundle import write_bundle

    manifest, files = small_manifest("mlp")
    other = write_bundle(tmp_path / "other", "mlp", "1.0.0", files, replace(manifest, task="x"))
    with pytest.raises(StoreError, match="exists with another manifest"):
        push(other, store)


def test_promote_and_rollback_on_s3(remote: str, local: Path, s3: S3, tmp_path: Path) -> None:
    env = {"LABKIT_CACHE": str(tmp_path / "cli-cache")}
    from labkit.runtime.remote import RemoteStore
    from labkit.runtime.transfer import push

    make_store(local, "1.2.0")
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        push(local / "mlp" / v, RemoteStore(remote))
    for v in ("1.0.0", "1.2.0"):
        proc = handoff("promote", f"{remote}/mlp/{v}", env=env)
        assert proc.returncode == 0, proc.stderr
    refused = handoff("promote", f"{remote}/mlp/1.1.0", env=env)  # self-test fails here
    assert refused.returncode == 1 and "does not verify on this host" in refused.stderr
    bucket = remote.split("/")[2]
    assert s3.keys(bucket, "models/mlp/.aliases/") == [
        "models/mlp/.aliases/prod/000000000001.json",
        "models/mlp/.aliases/prod/000000000002.json",
    ]
    back = handoff("rollback", f"{remote}/mlp", env=env)
    assert back.returncode == 0, back.stderr
    assert "prod → 1.0.0 (was 1.2.0), generation 3" in back.stdout
    listed = handoff("list", remote, env=env).stdout
    assert "alias prod → 1.0.0 (generation 3; rollback goes to" not in listed
    assert "alias prod → 1.0.0 (generation 3)" in listed

    prod = RemoteStore(remote).alias("mlp", "prod")
    assert prod is not None and [e.version for e in prod.history] == ["1.0.0", "1.2.0", "1.0.0"]


def test_concurrent_alias_writes_on_s3_are_exclusive(remote: str, local: Path) -> None:
    from labkit.bundle import aliases as al
    from labkit.runtime.remote import RemoteStore
    from labkit.runtime.transfer import push

    store = RemoteStore(remote)
    push(local / "mlp" / "1.0.0", store)
    seen = store.alias("mlp", "prod")
    al.move(store.files, "mlp", "prod", "1.0.0", action="promote", expect=seen)
    with pytest.raises(al.AliasConflict):  # If-None-Match: * refused the second writer
        al.move(store.files, "mlp", "prod", "1.0.0", action="promote", expect=seen)


def test_a_missing_driver_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules[sys.argv[1]] = None\n"
        "from handoff.cli import main; raise SystemExit(main(['list', 's3://bucket/store']))"
    )
    for blocked, package in (("fsspec", "fsspec"), ("s3fs", "s3fs")):
        proc = subprocess.run(
            [sys.executable, "-c", code, blocked],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode != 0
        assert proc.stderr.strip() == (
            f"handoff: error: {package} is not installed; it is needed for this step. "
            "Install it with: pip install 'labkit[remote]'"
        )


def test_serve_without_the_driver_and_export_to_a_bucket_say_what_to_do(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from handoff.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    serve = subprocess.run(
        [sys.executable, "-c", code, "serve", "s3://bucket/store"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert serve.returncode == 2
    assert serve.stderr.strip().endswith("Install it with: pip install 'labkit[remote]'")
    export = subprocess.run(
        [sys.executable, "-m", "handoff", "export", "model.py:build", "--store", "s3://b/s"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert export.returncode == 1
    assert "then publish with 'handoff push STORE/NAME/VERSION s3://b/s'" in export.stderr
    assert not list(tmp_path.iterdir())  # no ./s3:/b/s store written by mistake
