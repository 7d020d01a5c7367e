"""The runtime and ``handoff verify`` work where importing torch, onnx or openvino fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "onnx", "onnxscript", "openvino"}:
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
    )


def test_blocker_really_blocks() -> None:
    proc = _run("import torch")
    assert proc.returncode != 0 and "blocked for this test" in proc.stderr


def test_load_predict_self_test_without_torch(bundle: Path) -> None:
    golden = bundle / "golden" / "inputs.npz"
    proc = _run(f"""
        import json, numpy as np
        import labkit.runtime as rt
        m = rt.load({str(bundle)!r})
        x = np.load({str(golden)!r}, allow_pickle=False)["input_0"]
        out = m.predict(x)
        by_name = m.predict({{"input_0": x}})
        st = m.self_test()
        print(json.dumps({{"shape": list(out["output"].shape),
                          "same": bool(np.array_equal(out["output"], by_name["output"])),
                          "ok": st.ok, "variant": m.variant,
                          "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules,
                          "openvino": "openvino" in sys.modules}}))
    """)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["shape"][1] == 5 and res["same"] and res["ok"]
    assert res["torch"] is False and res["onnx"] is False and res["openvino"] is False


def test_openvino_engine_without_openvino_says_what_to_install(bundle: Path) -> None:
    proc = _run(f"""
        import labkit.runtime as rt
        from labkit.errors import MissingDependencyError
        try:
            rt.load({str(bundle)!r}, variant="fp32", engine="openvino")
        except MissingDependencyError as exc:
            print(exc)
        else:
            raise SystemExit("loaded without openvino")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'labkit[openvino]'" in proc.stdout


def test_handoff_verify_without_torch(bundle: Path) -> None:
    proc = _run(f"""
        from handoff.cli import main
        code = main(["verify", {str(bundle)!r}])
        assert "torch" not in sys.modules and "onnx" not in sys.modules
        raise SystemExit(code)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "integrity OK" in proc.stdout
    assert "self-test fp32" in proc.stdout and "FAILED" not in proc.stdout


def test_inspect_diff_list_bench_without_torch(bundle: Path) -> None:
    proc = _run(f"""
        from handoff.cli import main
        for argv in (["inspect", {str(bundle)!r}], ["diff", {str(bundle)!r}, {str(bundle)!r}],
                     ["list", {str(bundle.parent.parent)!r}],
                     ["bench", {str(bundle)!r}, "--rounds", "1", "--batch", "4"]):
            assert main(argv) == 0, argv
        assert "torch" not in sys.modules
    """)
    assert proc.returncode == 0, proc.stderr
    assert "identical" in proc.stdout
    assert "tiny" in proc.stdout
