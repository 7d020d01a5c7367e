"""Issue 16 case 7: a handoff's ``source`` may only be the researcher's notebook or script.

The attack: the kernel comm takes a ``source`` path from the page and the handoff copied
that file into the bundle: a ``source`` naming the system's shadow password file landed as
``source/shadow``, mode 0644 (the original was 0640), in a bundle that may be signed and
shipped. Now a source must be a ``.py``/``.ipynb`` regular file of at most
``MAX_SOURCE_BYTES`` whose real path lies under the kernel's working directory; the copy
keeps its own mode (never more than 0644); provenance names it relative to the project.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

import labkit.request as request_mod
from labkit.notebook import protocol as p
from labkit.notebook.handler import HandoffHandler
from labkit.pipeline.assemble import source_entry as _source_entry
from labkit.request import HandoffRequest

SHADOW = b"root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n"


class NeverRun:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, spec: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise AssertionError("the pipeline ran for a refused source")


@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    """A project folder (the kernel's working directory) and secrets beside it."""
    project = tmp_path / "project"
    project.mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    shadow = etc / "shadow"
    shadow.write_bytes(SHADOW)
    shadow.chmod(0o640)
    secret_py = etc / "secret.py"
    secret_py.write_text("KEY = 'not for the bundle'\n")
    return {"project": project, "shadow": shadow, "secret_py": secret_py}


def _handoff(handler: HandoffHandler, source: str) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    payload = {"source": source, "model": "m", "store": "store"}
    handler.handle(
        {
            "protocol": p.PROTOCOL_VERSION,
            "kind": "request",
            "id": "r",
            "type": "handoff",
            "payload": payload,
        },
        sent.append,
    )
    return sent[-1]


def test_the_attack_is_real_any_readable_file_is_copied_by_the_copy_step(
    layout: dict[str, Path],
) -> None:
    # the comm's payload accepts any path string, and the copy step reads whatever it is given
    assert HandoffRequest.from_dict({"source": str(layout["shadow"])}).source
    entry, files, modes = _source_entry(layout["shadow"])
    assert files == {"source/shadow": SHADOW}
    # ... which is why the request's source is checked before the pipeline ever runs


@pytest.mark.parametrize(
    "make_source",
    [
        lambda lay: str(lay["shadow"]),  # absolute, not a notebook or script
        lambda lay: "../etc/shadow",
        lambda lay: str(lay["secret_py"]),  # a script, but outside the project
        lambda lay: "../etc/secret.py",
        lambda lay: _link(lay, "notes.py", lay["secret_py"]),  # a link out of the project
        lambda lay: _fifo(lay, "analysis.ipynb"),  # would block a plain read
        lambda lay: _big(lay, "huge.py"),
    ],
    ids=["shadow", "dotdot", "script-outside", "dotdot-script", "link-out", "fifo", "huge"],
)
def test_the_comm_refuses_every_other_source_before_running(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch, make_source: Any
) -> None:
    monkeypatch.setattr(request_mod, "MAX_SOURCE_BYTES", 1024)
    run = NeverRun()
    handler = HandoffHandler(run=run, registered=lambda: {"m": object()}, cwd=layout["project"])
    reply = _handoff(handler, make_source(layout))
    assert reply["ok"] is False and run.calls == []
    message = reply["error"]["message"]
    assert "source" in message and ".ipynb" in message, message
    assert not (layout["project"] / "store").exists()


def _link(lay: dict[str, Path], name: str, target: Path) -> str:
    (lay["project"] / name).symlink_to(target)
    return name


def _fifo(lay: dict[str, Path], name: str) -> str:
    os.mkfifo(lay["project"] / name)
    return name


def _big(lay: dict[str, Path], name: str) -> str:
    (lay["project"] / name).write_bytes(b"#" * 2048)
    return name


def test_a_real_handoff_copies_the_notebook_with_its_own_mode(layout: dict[str, Path]) -> None:
    torch = pytest.importorskip("torch")
    import labkit
    from labkit.bundle import verify

    project = layout["project"]
    nb = project / "sub" / "analysis.ipynb"
    nb.parent.mkdir()
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    nb.chmod(0o640)
    torch.manual_seed(0)
    spec = labkit.register(torch.nn.Linear(4, 2).eval(), torch.randn(2, 4), name="m")
    handler = HandoffHandler(registered=lambda: {"m": spec}, cwd=project)
    sent: list[dict[str, Any]] = []
    handler.handle(
        {
            "protocol": p.PROTOCOL_VERSION,
            "kind": "request",
            "id": "r",
            "type": "handoff",
            "payload": {
                "source": "sub/analysis.ipynb",
                "model": "m",
                "store": "store",
                "options": {"quantize": False, "benchmark": False},
            },
        },
        sent.append,
    )
    reply = sent[-1]
    assert reply["ok"], reply
    bundle = Path(reply["payload"]["result"]["path"])
    copy = bundle / "source" / "analysis.ipynb"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640  # its own mode, not 0644
    source = verify(bundle).manifest.provenance.source
    assert source is not None and source.path == "analysis.ipynb"  # no folder, no home
    assert str(layout["project"]) not in (bundle / "manifest.json").read_text()
