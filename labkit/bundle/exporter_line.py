"""The manifest's ``provenance.exporter`` as one line, for every place that shows it.

The handoff's export stage, ``report.md`` and ``handoff inspect`` all say which exporter made
the graph and, when the dynamo exporter failed and the TorchScript one was used instead,
that it fell back and why: plainly, in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "dynamo exporter failed: "


def exporter_line(entry: Mapping[str, Any]) -> str:
    text = f"exported with the {entry['name']} exporter, opset {entry['opset']}"
    reason = entry.get("fallback_reason")
    if reason:
        reason = str(reason)
        reason = reason[len(PREFIX):] if reason.startswith(PREFIX) else reason
        text += f"; FELL BACK from the dynamo exporter, which failed: {reason}"
    return text
