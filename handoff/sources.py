"""Where ``handoff export`` finds models: ``file.py:function`` or a notebook.

A script runs as a script would (its folder first on ``sys.path``; ``__name__`` is not
``"__main__"``, so a training entry point guarded by it does not start) and the named
function returns a ModelSpec. A notebook is executed headless in a Jupyter kernel, and the
models it registered are handed off inside that kernel, where they live, by the same runner
as the Handoff button (``labkit.pipeline.runner``); its events come back as marker lines on
the last cell's stdout. The notebook file itself is not modified.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.errors import (
    HandoffFailed,
    HandoffRequestError,
    MissingDependencyError,
    NotFoundError,
    RegistrationError,
)
from labkit.request import HandoffEvent, HandoffRequest, ProgressEvent

_MARK = "LABKIT-HANDOFF "


def parse_script_target(source: str) -> tuple[Path, str]:
    path_text, sep, func = source.rpartition(":")
    if not sep or not path_text.endswith(".py") or not func.isidentifier():
        raise HandoffRequestError(
            f"SOURCE {source!r} must be 'path/to/file.py:function' (a function returning "
            "labkit.register(...)) or 'notebook.ipynb'"
        )
    path = Path(path_text)
    if not path.is_file():
        raise NotFoundError(f"script {path} does not exist")
    return path, func


def spec_from_script(source: str) -> tuple[Any, Path]:
    from labkit.registry import ModelSpec

    path, func = parse_script_target(source)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        namespace = runpy.run_path(str(path), run_name="__labkit_handoff__")
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    fn = namespace.get(func)
    if not callable(fn):
        found = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
        raise RegistrationError(
            f"{path} has no function {func!r}; it defines: "
            f"{', '.join(found[:12]) or 'no functions'}"
        )
    spec = fn()
    if not isinstance(spec, ModelSpec):
        raise RegistrationError(
            f"{path}:{func}() returned {type(spec).__name__}; it must "
            "return the ModelSpec from labkit.register(...)"
        )
    return spec, path


def _handoff_cell(request: HandoffRequest) -> str:
    return f"""
import json as _lk_json
from handoff.kernel_side import handoff_registered as _lk_handoff
_lk_handoff(_lk_json.loads({json.dumps(request.to_dict())!r}), {_MARK!r})
"""


class _KernelStderr:
    """The headless kernel process's own stderr (not its cells': those arrive as messages),
    relayed to ours while the notebook runs and dropped once the run has ended. ipykernel
    can print a traceback while it shuts down (``ZMQError: Socket operation on
    non-socket``) that is not the user's business and must not read as a failure."""

    def __init__(self) -> None:
        self._read, self.write_fd = os.pipe()
        self._relaying = True
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with os.fdopen(self._read, "rb") as pipe:
            while chunk := pipe.read1(1 << 16):
                if self._relaying:
                    sys.stderr.write(chunk.decode(errors="replace"))
                    sys.stderr.flush()

    def stop(self) -> None:
        """The run has ended: nothing the kernel prints from now on is relayed."""
        self._relaying = False

    def close(self) -> None:
        self.stop()
        os.close(self.write_fd)  # the kernel is gone; with our copy closed the pump ends
        self._thread.join(timeout=1.0)


class _EventTap:
    """Turns the handoff cell's marker lines into events as the kernel prints them, so the
    CLI shows each stage while it runs (and times it), not after the notebook has ended."""

    def __init__(self, on_event: Callable[[HandoffEvent], None]) -> None:
        self._on_event = on_event
        self._partial = ""

    def feed(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(_MARK):
                self._on_event(HandoffEvent.from_dict(json.loads(line[len(_MARK) :])))


def run_notebook(
    notebook: Path,
    request: HandoffRequest,
    on_event: Callable[[HandoffEvent], None],
    timeout: int = 1800,
) -> list[Any]:
    """Execute ``notebook`` headless, then hand off what it registered with ``request``.

    The kernel gets ``$LABKIT_STORE`` set to the request's store, so the notebook's own
    ``labkit.handoff(...)`` cells write there too; models those cells already handed off
    are not run through the pipeline again (see ``labkit.pipeline.runner``).
    Returns the results (dicts); an error event raises :class:`HandoffFailed`.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise MissingDependencyError("nbclient", "notebook") from None
    if not notebook.is_file():
        raise NotFoundError(f"notebook {notebook} does not exist")
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # nbformat raises several types for bad files  # noqa: BLE001
        raise RegistrationError(f"cannot read notebook {notebook}: {exc}") from None
    nb.cells.append(nbformat.v4.new_code_cell(_handoff_cell(request)))
    cells = len(nb.cells)
    results: list[dict[str, Any]] = []
    errors: list[HandoffEvent] = []

    def dispatch(event: HandoffEvent) -> None:
        if event.kind == "result" and event.result is not None:
            results.append(event.result)
        elif event.kind == "error":
            errors.append(event)
        on_event(event)

    tap = _EventTap(dispatch)

    class Client(NotebookClient):  # type: ignore[misc]
        async def _async_cleanup_kernel(self) -> None:
            relay.stop()  # before the kernel is shut down: its shutdown noise stays out
            await super()._async_cleanup_kernel()

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            content = msg.get("content", {})
            if (
                cell_index == cells - 1
                and msg.get("msg_type") == "stream"
                and content.get("name") == "stdout"
            ):
                tap.feed(content.get("text", ""))
            return super().process_message(msg, cell, cell_index)

    client = Client(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.resolve().parent)}},
    )
    client.on_cell_execute = lambda cell, cell_index: on_event(  # type: ignore[assignment]
        HandoffEvent.of_progress(
            ProgressEvent("notebook", "info", f"running cell {cell_index + 1}/{cells}")
        )
    )
    env = dict(os.environ)
    if request.store:
        env["LABKIT_STORE"] = request.store
    relay = _KernelStderr()
    try:
        client.execute(env=env, stderr=relay.write_fd)
    except CellExecutionError as exc:
        raise RegistrationError(
            f"notebook {notebook} failed while running: {_last_line(str(exc))}"
        ) from None
    finally:
        relay.close()
    tap.feed("\n")
    if errors and errors[0].error is not None:
        err = errors[0].error
        raise HandoffFailed(err.type, err.message, err.stage)
    return results


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "unknown error"
