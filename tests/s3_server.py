"""A real S3-compatible HTTP server on loopback for the remote-store tests: moto's server
mode (``moto[server]``) on a port the OS picks. Clients reach it the way they reach any
S3-compatible service: ``AWS_ENDPOINT_URL`` plus credentials in the environment."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class S3:
    endpoint: str
    env: dict[str, str]

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="labkit",
            aws_secret_access_key="labkit-secret",
            region_name="us-east-1",
        )

    def bucket(self) -> str:
        """A fresh bucket: tests share the server, never a bucket."""
        name = f"labkit-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(o["Key"] for o in found)


@contextlib.contextmanager
def moto_s3() -> Iterator[S3]:
    server_mod = pytest.importorskip("moto.server", reason="needs moto[server] (labkit[dev])")
    pytest.importorskip("s3fs", reason="needs s3fs (labkit[remote])")
    # port 0: the OS picks a free port when the server binds (no window for another test)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_address[1]  # noqa: SLF001 - moto exposes no accessor
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "labkit",
        "AWS_SECRET_ACCESS_KEY": "labkit-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        yield S3(endpoint, env)
    finally:
        server.stop()


def use_s3(monkeypatch: pytest.MonkeyPatch, s3: S3) -> None:
    """Point this process's S3 clients at the server (fsspec caches filesystems by their
    arguments, not by the environment: drop cached ones)."""
    import s3fs

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
