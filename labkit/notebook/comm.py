"""Registers the ``labkit.handoff`` comm target in an IPython kernel.

Thin glue: each comm opened by the JupyterLab extension gets a :class:`HandoffHandler`, and
every message on it is answered through ``comm.send``. The pipeline runs on the kernel's main
thread; ipykernel's IOPub thread flushes each ``comm.send`` right away, so progress reaches
the page while the run is still going.
"""

from __future__ import annotations

from typing import Any

from labkit.notebook.handler import HandoffHandler
from labkit.notebook.protocol import TARGET

__all__ = ["register_target", "registered_target"]

_state: dict[str, Any] = {"manager": None}


def _on_open(comm: Any, open_msg: dict[str, Any]) -> None:
    handler = HandoffHandler()

    def on_msg(msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data")
        handler.handle(data, comm.send)

    comm.on_msg(on_msg)


def register_target() -> bool:
    """Register the comm target on this kernel's comm manager (idempotent)."""
    from comm import get_comm_manager

    manager = get_comm_manager()
    if manager is None:
        return False
    if _state["manager"] is manager and TARGET in getattr(manager, "targets", {}):
        return True
    manager.register_target(TARGET, _on_open)
    _state["manager"] = manager
    return True


def registered_target() -> str | None:
    manager = _state["manager"]
    if manager is not None and TARGET in getattr(manager, "targets", {}):
        return TARGET
    return None
