"""Runs inside the notebook's kernel for ``handoff export notebook.ipynb``.

The models live in the kernel, so the handoff runs there, through the same runner as the
Handoff button; each event it reports is printed as one line, a marker then the event's JSON,
which ``handoff/sources.py`` reads back as the kernel prints it.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.errors import HandoffFailed
from labkit.request import HandoffEvent, HandoffRequest


def handoff_registered(request: dict[str, Any], marker: str) -> None:
    from labkit.pipeline.runner import run_request

    def say(event: HandoffEvent) -> None:
        print(marker + json.dumps(event.to_dict()), flush=True)

    try:
        run_request(HandoffRequest.from_dict(request), say, reuse_cell_handoffs=True)
    except HandoffFailed:
        pass  # already reported as an error event; the CLI raises it on its side
