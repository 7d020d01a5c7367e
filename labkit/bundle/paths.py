"""The [path] rule: manifest paths are plain relative POSIX paths, checked strictly.

Path-traversal fixes that strip or normalise strings keep getting bypassed (``\\..\\``,
``%2e``, ``#``, drive letters), so we accept a small alphabet and nothing else.
"""

from __future__ import annotations

import re

from labkit.errors import FormatError

_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_COMPONENTS = 8
MAX_LENGTH = 512


def check_path(path: object) -> str:
    """Return ``path`` if it is an acceptable bundle path, else raise FormatError [path]."""
    if not isinstance(path, str) or not path:
        raise FormatError(f"path must be a non-empty string, got {path!r}", rule="path")
    if len(path) > MAX_LENGTH:
        raise FormatError(
            f"path is longer than {MAX_LENGTH} characters: {path[:60]!r}…", rule="path"
        )
    if path.startswith("/"):
        raise FormatError(f"absolute path {path!r}: paths must be relative", rule="path")
    parts = path.split("/")
    if len(parts) > MAX_COMPONENTS:
        raise FormatError(f"path {path!r} has more than {MAX_COMPONENTS} components", rule="path")
    for part in parts:
        if part in ("", ".", ".."):
            raise FormatError(f"path {path!r} has an empty, '.' or '..' component", rule="path")
        if not _COMPONENT.fullmatch(part):
            raise FormatError(
                f"path {path!r}: component {part!r} may only use letters, digits, '.', '_' "
                "and '-', and must not start with '.' or '-'",
                rule="path",
            )
    return path
