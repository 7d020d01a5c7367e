"""What each kind of version change is called and means: the one wording table.

The store records ``reason`` in a new manifest, ``handoff diff`` prints ``verdict``, and the
notebook and CLI title a result with ``title``. (The extension's copy is generated from the
schema on branch ``runner``.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wording:
    title: str  # a short heading for a handoff result
    reason: str  # why the store chose this kind (``change.reason``; the store adds which
    # parts changed for a major)
    verdict: str  # what it means for callers (``handoff diff``)


#: kinds a manifest may record; "none" is a handoff that wrote nothing.
CHANGE_KINDS = ("first", "major", "minor", "patch")


def major_reason(what: str) -> str:
    """The reason recorded for a major change, naming ``what`` changed."""
    return f"{what} changed: not drop-in compatible"


WORDING = {
    "first": Wording(
        "first version", "first handoff of this model", "first version: nothing to compare with"
    ),
    "major": Wording(
        "breaking change (major)",
        major_reason("architecture or signature"),
        "not drop-in compatible: callers must be checked against the new signature",
    ),
    "minor": Wording(
        "weights-only update (minor): drop-in compatible",
        "weights-only update: drop-in compatible",
        "weights-only update: drop-in compatible",
    ),
    "patch": Wording(
        "metadata-only update (patch)",
        "metadata-only update (task, labels or tolerances)",
        "metadata-only update: drop-in compatible",
    ),
    "none": Wording(
        "nothing changed: no new version written",
        "identical architecture, signature, weights and metadata",
        "identical: same architecture, signature, weights and metadata",
    ),
}


def title(kind: str) -> str:
    """The heading for ``kind``; an unknown kind is shown as it is."""
    w = WORDING.get(kind)
    return w.title if w else kind
