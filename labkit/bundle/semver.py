"""Semantic versions as the store assigns them (MAJOR.MINOR.PATCH, no pre-release tags)."""

from __future__ import annotations

import re
from typing import NamedTuple

from labkit.errors import FormatError

_SEMVER = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: object) -> Version:
        if not isinstance(text, str) or not _SEMVER.fullmatch(text):
            raise FormatError(f"version {text!r} is not MAJOR.MINOR.PATCH", rule="schema")
        major, minor, patch = (int(p) for p in text.split("."))
        return cls(major, minor, patch)

    def bump(self, kind: str) -> Version:
        if kind == "major":
            return Version(self.major + 1, 0, 0)
        if kind == "minor":
            return Version(self.major, self.minor + 1, 0)
        if kind == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise ValueError(f"unknown bump {kind!r}")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def is_version(text: str) -> bool:
    return bool(_SEMVER.fullmatch(text))
