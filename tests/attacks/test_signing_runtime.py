"""The signature check lives in the torch-free runtime and model_signing is optional: the
runtime imports and loads unsigned bundles without it, and asking for trusted keys without
it says what to install. The handoff signs too: ``sign_key=``, ``$LABKIT_SIGN_KEY``,
``handoff export --sign-key``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from signing_helpers import REPO, KeyPair, built_store, copy_bundle, handoff, make_keys

import labkit.runtime as rt
from labkit.errors import BundleError, LabkitError
from labkit.runtime.signing import SIGNATURE_NAME, sign_bundle

pytest.importorskip("model_signing")

BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "onnx", "model_signing", "sigstore",
                                      "sigstore_models"}:
                raise ImportError(f"blocked for this test: {name}")
            return None
    sys.meta_path.insert(0, _Block())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"), "alice")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_store(tmp_path_factory)


def test_runtime_without_model_signing(store: Path, keys: KeyPair, tmp_path: Path) -> None:
    bundle = copy_bundle(store, "1.0.0", tmp_path / "s")
    sign_bundle(bundle, keys.private)  # signed, but this host cannot check signatures
    proc = _run(f"""
        import json
        import labkit.runtime as rt
        from labkit.errors import MissingDependencyError
        m = rt.load({str(bundle)!r})          # no trusted keys: as today
        ok = m.self_test().ok
        try:
            rt.load({str(bundle)!r}, trusted_keys=[{str(keys.public)!r}])
            refused = None
        except MissingDependencyError as exc:
            refused = str(exc)
        print(json.dumps({{"ok": ok, "refused": refused,
                          "blocked": [n for n in ("torch", "onnx", "model_signing")
                                      if n in sys.modules]}}))
    """)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["ok"] is True and res["blocked"] == []
    assert "pip install 'labkit[sign]'" in res["refused"]
    proc = _run(f"""
        from handoff.cli import main
        raise SystemExit(main(["verify", {str(bundle)!r}, "--trusted-key",
                               {str(keys.public)!r}]))
    """)
    assert proc.returncode == 3  # the environment: a missing extra
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("handoff: error:")]
    assert len(errors) == 1 and "pip install 'labkit[sign]'" in errors[0], proc.stderr


def _spec(seed: int) -> object:
    import torch

    import labkit

    torch.manual_seed(seed)
    return labkit.register(
        torch.nn.Sequential(torch.nn.Linear(4, 3)).eval(),
        (torch.randn(2, 4),),
        name="signed-handoff",
    )


def test_handoff_signs_with_sign_key_and_env(
    keys: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labkit.pipeline import HandoffOptions, run

    opts = HandoffOptions(quantize=False, benchmark=False)
    events: list[str] = []
    import labkit

    first = labkit.handoff(
        _spec(0),
        store=tmp_path,
        options=opts,
        sign_key=keys.private,
        progress=lambda e: events.append(e.message),
    )
    assert first.signed_by and first.to_dict()["signed_by"] == first.signed_by
    assert any("signed with key" in m for m in events)
    rt.load(first.path, trusted_keys=[keys.public])

    monkeypatch.setenv("LABKIT_SIGN_KEY", str(keys.private))  # what the button inherits
    second = run(_spec(1), store=tmp_path, options=opts)
    assert second.version == "1.1.0" and second.signed_by == first.signed_by
    rt.load(second.path, trusted_keys=[keys.public])

    third = run(_spec(2), store=tmp_path, options=opts, sign_key="")  # "" opts out
    assert third.signed_by is None and not (third.path / SIGNATURE_NAME).exists()
    with pytest.raises(BundleError, match="not signed"):
        rt.load(third.path, trusted_keys=[keys.public])

    monkeypatch.setenv("LABKIT_SIGN_KEY", str(tmp_path / "nope.pem"))
    with pytest.raises(LabkitError, match=r"\$LABKIT_SIGN_KEY .*no such file"):
        run(_spec(3), store=tmp_path, options=opts)
    assert (tmp_path / "signed-handoff").is_dir()
    assert sorted(p.name for p in (tmp_path / "signed-handoff").iterdir()) == [
        "1.0.0",
        "1.1.0",
        "1.2.0",
    ]  # the bad key stopped the handoff before it wrote


def test_export_sign_key_flag(keys: KeyPair, tmp_path: Path) -> None:
    script = tmp_path / "m.py"
    script.write_text(
        textwrap.dedent("""
        import torch, labkit
        def build():
            torch.manual_seed(0)
            return labkit.register(torch.nn.Linear(4, 2).eval(), torch.randn(2, 4), name="flag")
    """)
    )
    proc = handoff(
        "export",
        f"{script}:build",
        "--store",
        str(tmp_path / "s"),
        "--no-quantize",
        "--no-benchmark",
        "--sign-key",
        str(keys.private),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["signed_by"]
    rt.load(result["path"], trusted_keys=[keys.public])
    proc = handoff(
        "export",
        f"{script}:build",
        "--store",
        str(tmp_path / "s"),
        "--sign-key",
        str(tmp_path / "missing.pem"),
    )
    assert proc.returncode == 2 and "--sign-key" in proc.stderr and "no such file" in proc.stderr


def test_notebook_export_signs_with_a_relative_key(keys: KeyPair, tmp_path: Path) -> None:
    """The kernel runs in the notebook's folder: a key path relative to the shell must still
    be found there (the CLI resolves it), and the bundle it writes is signed."""
    nbformat = pytest.importorskip("nbformat")
    folder, shell = tmp_path / "notebooks", tmp_path / "shell"
    folder.mkdir()
    shell.mkdir()
    (shell / "signing.pem").write_bytes(keys.private.read_bytes())
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(s)
        for s in (
            "import torch, labkit",
            "labkit.register(torch.nn.Linear(3, 2), torch.randn(2, 3), name='nb-signed')",
        )
    ]
    nbformat.write(nb, str(folder / "n.ipynb"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "handoff",
            "export",
            str(folder / "n.ipynb"),
            "--store",
            "store",
            "--no-benchmark",
            "--no-quantize",
            "--json",
            "--sign-key",
            "signing.pem",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=shell,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert Path(result["path"]) == shell / "store" / "nb-signed" / "1.0.0"
    assert result["signed_by"] == hashlib.sha256(keys.public.read_bytes()).hexdigest()
    rt.load(result["path"], trusted_keys=[keys.public])
