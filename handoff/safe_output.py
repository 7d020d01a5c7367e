"""Terminal safety for commands that print what a bundle says.

A manifest is written by whoever made the bundle: its name, task, labels, provenance or a
tensor name may hold ``\x1b[2J`` (clear the screen), a carriage return or newline that
forges a line (a fake "self-test OK"), or a right-to-left override. The text output of the
commands that print manifest strings runs with stdout wrapped: every ``print`` there is one
line, so each write is escaped whole (control characters, newlines included, shown as
``\x1b``, ``\n``) and only the newline ``print`` itself ends it with passes through. One
wrapper around the command rather than an escape at each ``print``: a line added later is
covered too. ``--json`` output is not wrapped: it is ASCII JSON, control characters escaped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from labkit.errors import one_line

# handoff commands whose output quotes manifest strings
MANIFEST_COMMANDS = frozenset({"inspect", "diff", "verify", "list", "promote", "rollback", "push"})


def escape_text(text: str) -> str:
    """``text`` with every control character escaped, except a bare ``"\n"`` (the end of
    a ``print``)."""
    return text if text == "\n" else one_line(text)


class _EscapingStream(io.TextIOBase):
    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(escape_text(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")


@contextlib.contextmanager
def escaped_stdout() -> Iterator[None]:
    """Within the block, ``print`` to stdout cannot send control characters."""
    inner = sys.stdout
    sys.stdout = _EscapingStream(inner)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = inner


def guard_terminal(args: argparse.Namespace) -> Callable[[argparse.Namespace], Any]:
    """``args.func``, run inside :func:`escaped_stdout` when the command prints manifest
    text (not for ``--json``)."""
    func: Callable[[argparse.Namespace], Any] = args.func
    if getattr(args, "json", False) or getattr(args, "command", None) not in MANIFEST_COMMANDS:
        return func

    def guarded(a: argparse.Namespace) -> Any:
        with escaped_stdout():
            return func(a)

    return guarded
