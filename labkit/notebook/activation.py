"""Connect labkit to the IPython it runs in, on first use — never on import.

:func:`activate` registers, once per shell:

- IPython display formatters for :class:`labkit.pipeline.HandoffResult`, by name
  (``for_type_by_name``), so the pipeline never imports the notebook layer and registering
  does not import the pipeline: HTML (:func:`labkit.notebook.render.render_result_html`),
  plain text (``HandoffResult.summary``) and the two outputs a cell shows (the table, then
  the speed chart);
- in a Jupyter kernel, the ``labkit.handoff`` comm target the JupyterLab extension talks to.

It is called by ``labkit``'s public names on first access in a kernel (``labkit.register``,
``labkit.handoff`` …) and by the extension (``labkit.notebook._autoregister()``, evaluated
silently) before it opens its comm. Outside IPython it does nothing.
"""

from __future__ import annotations

from typing import Any

from labkit.notebook.env import in_kernel, ipython

__all__ = ["activate", "register_formatters"]

RESULT = ("labkit.pipeline.result", "HandoffResult")
_done: dict[int, bool] = {}


def _html(result: Any) -> str:
    from labkit.notebook.render import render_result_html

    return render_result_html(result.to_dict())


def _text(result: Any, printer: Any, cycle: bool) -> None:
    printer.text(result.summary())


def _display(result: Any) -> None:
    from IPython.display import display

    from labkit.notebook.render import render_result_outputs

    for output in render_result_outputs(result.to_dict()):
        display(output, raw=True)  # type: ignore[no-untyped-call]


def register_formatters(shell: Any) -> None:
    """Register the HandoffResult renderings on ``shell``'s display formatter."""
    formatter = shell.display_formatter
    formatter.formatters["text/html"].for_type_by_name(*RESULT, _html)
    formatter.formatters["text/plain"].for_type_by_name(*RESULT, _text)
    formatter.ipython_display_formatter.for_type_by_name(*RESULT, _display)


def activate() -> bool:
    """Register the formatters (in IPython) and the comm target (in a kernel); True when the
    comm target is registered. Idempotent; never raises (labkit must work without it)."""
    try:
        shell = ipython()
        if shell is None:
            return False
        if not _done.get(id(shell)):
            register_formatters(shell)
            _done[id(shell)] = True
        if not in_kernel():
            return False
        from labkit.notebook.comm import register_target

        return register_target()
    except Exception:  # noqa: BLE001 - the integration must never break the user's code
        return False
