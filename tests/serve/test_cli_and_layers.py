"""The serve CLI's parsers, and the layering rule: labkit.serve never imports torch or onnx."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import REPO, Bundles

from labkit.serve.cli import add_export_triton_parser, add_serve_parser, config_from_args


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_serve_parser(sub)
    add_export_triton_parser(sub)
    return parser.parse_args(list(argv))


def test_serve_defaults_are_safe() -> None:
    args = _parse("serve", "/srv/store")
    assert args.host == "127.0.0.1" and args.port == 8000 and not args.ray
    config = config_from_args(args)
    assert config.max_body_bytes == 64 << 20 and config.max_json_depth == 100
    assert config.token is None and config.max_batch_size == 32


def test_hostile_client_limits_come_from_flags() -> None:
    config = config_from_args(
        _parse(
            "serve",
            "s",
            "--max-connections",
            "900",
            "--header-timeout",
            "2.5",
            "--max-header-kb",
            "16",
            "--keepalive-timeout",
            "3",
            "--body-timeout",
            "7",
            "--max-body-mb",
            "8",
            "--max-body-budget-mb",
            "32",
        )
    )
    assert (
        config.max_connections,
        config.header_timeout_s,
        config.max_header_bytes,
        config.keepalive_timeout_s,
        config.body_timeout_s,
        config.max_body_bytes,
        config.max_body_budget_bytes,
    ) == (900, 2.5, 16 * 1024, 3.0, 7.0, 8 << 20, 32 << 20)
    with pytest.raises(ValueError, match="max_body_budget_bytes"):
        config_from_args(_parse("serve", "s", "--max-body-budget-mb", "1"))


def test_token_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_SERVE_TOKEN", "from-the-environment")
    assert config_from_args(_parse("serve", "s")).token == "from-the-environment"
    (tmp_path / "tok").write_text("from-a-file-123\n")
    args = _parse("serve", "s", "--token-file", str(tmp_path / "tok"))
    assert config_from_args(args).token == "from-a-file-123"
    with pytest.raises(ValueError, match="at least 8"):
        config_from_args(_parse("serve", "s", "--token", "short"))


def test_serve_refuses_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse("serve", str(tmp_path / "nope"))
    assert args.func(args) == 2
    assert "not a directory" in capsys.readouterr().err


def test_serve_refuses_a_store_with_nothing_valid(tmp_path: Path) -> None:
    (tmp_path / "mlp" / "1.0.0").mkdir(parents=True)
    (tmp_path / "mlp" / "1.0.0" / "manifest.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit.serve",
            "serve",
            str(tmp_path),
            "--port",
            "0",
            "--require-models",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "nothing to serve" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_never_imports_torch_or_onnx(bundles: Bundles) -> None:
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import labkit.serve.server, labkit.serve.cli, labkit.serve.triton
from labkit.serve import create_app
from starlette.testclient import TestClient
with TestClient(create_app({str(bundles.paths["mlp-1.0.0"])!r})) as c:
    r = c.post('/v2/models/mlp/infer', json={{'inputs': [{{'name': 'input_0', 'shape': [1, 8],
               'datatype': 'FP32', 'data': [0.5] * 8}}]}})
    assert r.status_code == 200, r.text
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]
print('ok')
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_public_surface() -> None:
    import labkit.serve

    assert sorted(labkit.serve.__all__) == [
        "ServeConfig",
        "create_app",
        "deployment",
        "export_triton",
        "serve",
    ]


def test_a_busy_grpc_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "handoff", "serve", str(tmp_path), "--grpc-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"handoff serve: cannot listen for gRPC on 127.0.0.1:{port}: Address already in use; "
        "choose another --grpc-port"
    )
