"""CLI errors are one clear line; --debug shows the traceback; export failures name the op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def handoff(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("handoff: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture()
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "helper_mod.py").write_text("WIDTH = 4\n")
    (tmp_path / "models.py").write_text(
        textwrap.dedent("""
        import torch, labkit
        from helper_mod import WIDTH          # the script's folder is on sys.path

        def good():
            torch.manual_seed(0)
            return labkit.register(torch.nn.Linear(WIDTH, 2), torch.randn(2, WIDTH), name="good")

        def not_a_spec():
            return torch.nn.Linear(4, 2)

        def broken():
            raise RuntimeError("the data file is missing")

        @torch.library.custom_op("labkit_test::mystery", mutates_args=())
        def mystery(x: torch.Tensor) -> torch.Tensor:
            return x.clone() * 2

        @mystery.register_fake
        def _(x):
            return torch.empty_like(x)

        class Mystery(torch.nn.Module):
            def forward(self, x):
                return mystery(x)

        def unexportable():
            return labkit.register(Mystery(), torch.randn(2, 4), name="mystery")

        if __name__ == "__main__":
            raise SystemExit("scripts are not run as __main__ by handoff export")
    """)
    )
    return tmp_path


def test_script_target_with_sibling_import_works(scripts: Path) -> None:
    proc = handoff(
        "export",
        f"{scripts}/models.py:good",
        "--store",
        str(scripts / "s"),
        "--no-benchmark",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["name"] == "good" and out["version"] == "1.0.0"
    manifest = json.loads((Path(out["path"]) / "manifest.json").read_text())
    src = manifest["provenance"]["source"]
    assert src["copy"] == "source/models.py"
    assert src["path"] == "models.py"  # outside the working directory: the name only
    assert str(scripts) not in json.dumps(manifest)  # no home, no folder layout
    assert (Path(out["path"]) / "source" / "models.py").read_text() == (
        scripts / "models.py"
    ).read_text()


@pytest.mark.parametrize(
    "target, expected, code",
    [
        ("models.py:nope", "has no function 'nope'", 1),
        ("models.py:not_a_spec", "returned Linear", 1),
        ("models.py:broken", "RuntimeError: the data file is missing", 1),
        ("missing.py:good", "does not exist", 2),
        ("models.py", "must be 'path/to/file.py:function'", 2),
        ("missing.ipynb", "does not exist", 2),
    ],
)
def test_bad_sources_give_one_line(scripts: Path, target: str, expected: str, code: int) -> None:
    proc = handoff("export", f"{scripts}/{target}", "--store", str(scripts / "s"))
    assert expected in _one_error_line(proc)
    assert proc.returncode == code  # 1 the script failed, 2 usage or not found


def test_export_failure_names_the_operator_and_writes_nothing(scripts: Path) -> None:
    proc = handoff("export", f"{scripts}/models.py:unexportable", "--store", str(scripts / "s"))
    line = _one_error_line(proc)
    assert "could not export 'mystery'" in line
    assert "labkit_test" in proc.stderr and "mystery" in proc.stderr
    assert "[2/6] export    FAILED" in proc.stderr
    assert not (scripts / "s" / "mystery").exists()


def test_debug_shows_traceback(scripts: Path) -> None:
    proc = handoff("--debug", "export", f"{scripts}/models.py:broken")
    assert "Traceback" in proc.stderr


def test_verify_of_a_non_bundle(tmp_path: Path) -> None:
    assert "has no manifest.json" in _one_error_line(handoff("verify", str(tmp_path)))
    assert "does not exist" in _one_error_line(handoff("verify", str(tmp_path / "x")))


def test_bad_calibration_file(scripts: Path) -> None:
    bad = scripts / "calib.npz"
    import numpy as np

    np.savez(bad, wrong=np.zeros((4, 4), np.float32), other=np.zeros((4, 4), np.float32))
    proc = handoff(
        "export",
        f"{scripts}/models.py:good",
        "--store",
        str(scripts / "s"),
        "--calibration",
        str(bad),
        "--no-benchmark",
    )
    line = _one_error_line(proc)
    assert "has arrays ['other', 'wrong']" in line and "input_0" in line
    assert not (scripts / "s" / "good").exists()
    np.savez(bad, input_0=np.zeros((4, 3), np.float32))
    line = _one_error_line(
        handoff(
            "export",
            f"{scripts}/models.py:good",
            "--calibration",
            str(bad),
            "--store",
            str(scripts / "s"),
        )
    )
    assert "float32[4, 3]" in line and "float32[N, 4]" in line
    missing = handoff(
        "export", f"{scripts}/models.py:good", "--calibration", str(scripts / "nope.npz")
    )
    assert "no such file" in _one_error_line(missing)


def test_budget_flags_are_checked_and_recorded(scripts: Path) -> None:
    bad = handoff("export", f"{scripts}/models.py:good", "--min-top1", "1.5")
    assert "--min-top1 1.5 must be between 0 and 1" in _one_error_line(bad)
    proc = handoff(
        "export",
        f"{scripts}/models.py:good",
        "--store",
        str(scripts / "s"),
        "--no-benchmark",
        "--min-top1",
        "0.95",
        "--min-cosine",
        "0.9",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((Path(json.loads(proc.stdout)["path"]) / "manifest.json").read_text())
    budget = manifest["provenance"]["options"]["budget"]
    assert budget["min_top1_agreement"] == 0.95 and budget["min_cosine"] == 0.9
