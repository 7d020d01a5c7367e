"""Stage progress on stderr: :class:`labkit.stage_text.StagePrinter` (its one home, shared
with ``labkit.handoff`` outside a notebook)."""

from labkit.stage_text import StagePrinter

__all__ = ["StagePrinter"]
