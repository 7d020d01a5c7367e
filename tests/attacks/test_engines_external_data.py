"""Every engine refuses external data before it parses the model, OpenVINO included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bundle_attack_tools import SECRET, cwd, embedded_w, external_w, leak_model

from labkit.errors import BundleError
from labkit.runtime import engines
from labkit.runtime.engines import Candidate


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_engine_refuses_external_data(engine: str, tmp_path: Path) -> None:
    if engine not in engines.versions():
        pytest.skip(f"{engine} is not installed")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    with cwd(tmp_path), pytest.raises(BundleError) as info:
        engines.make_session(leak_model(external_w()), Candidate("fp32", engine))
    assert info.value.rule == "external-data"
    # The same graph with its weight embedded runs, so the refusal is about the reference.
    session = engines.make_session(leak_model(embedded_w()), Candidate("fp32", engine))
    x = np.zeros((1, 16), np.uint8)
    assert session.run(None, {"x": x})[0].tolist() == [list(range(16))]
