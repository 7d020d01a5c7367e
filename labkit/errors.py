"""The one error tree of labkit.

Every error a user can see derives from :class:`LabkitError`. A message says what failed,
the value that was seen, and what to do about it; the CLI prints it as one line (``--debug``
shows the traceback) and the JupyterLab extension shows it in a dialog.

::

    LabkitError
    ├── RegistrationError      labkit.register() got something it cannot hand off
    ├── ExportError            torch.onnx.export failed (names the operator/module)
    │   └── SignatureError     the exported graph's shapes contradict its signature
    ├── ParityError            the fp32 ONNX graph disagrees with PyTorch
    ├── BundleError            a bundle on disk is not one we accept
    │   ├── IntegrityError     digests, sizes, links, unlisted/missing files
    │   └── FormatError        manifest schema, JSON, paths, versions
    ├── StoreError             the bundle store (naming, versions, concurrent writers)
    ├── InputError             predict() got arrays that do not match the signature
    ├── EngineError            an engine could not build or run a session (not the inputs)
    ├── HandoffRequestError    a handoff request (comm payload, CLI flags) is malformed
    ├── HandoffFailed          a handoff that ran elsewhere (a notebook's kernel) failed
    └── MissingDependencyError an optional dependency is missing (says what to install)

``rule`` on bundle errors names the rule of ``docs/bundle-format.md`` that was broken, so
tests and operators can tell refusals apart without parsing prose.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "EngineError",
    "ExportError",
    "FormatError",
    "HandoffFailed",
    "HandoffRequestError",
    "InputError",
    "IntegrityError",
    "LabkitError",
    "MissingDependencyError",
    "ParityError",
    "RegistrationError",
    "SignatureError",
    "StoreError",
]


def one_line(text: str) -> str:
    """``text`` with control characters (newlines, ESC, …) escaped, safe for one log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LabkitError(Exception):
    """Base of every error labkit raises on purpose."""


class RegistrationError(LabkitError, ValueError):
    """A model, its inputs or its options cannot be registered."""


class ExportError(LabkitError):
    """PyTorch → ONNX export failed."""


class SignatureError(ExportError):
    """The exported graph does not do what its signature (the manifest's) says."""


class ParityError(LabkitError):
    """The exported graph does not reproduce PyTorch within tolerance."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class BundleError(LabkitError):
    """A bundle is refused. ``rule`` names the rule of the bundle spec that failed."""

    def __init__(self, message: str, *, rule: str = "bundle") -> None:
        # One line, whatever a hostile bundle put into the names quoted in the message.
        super().__init__(f"[{rule}] {one_line(message)}")
        self.rule = rule


class IntegrityError(BundleError):
    """Content does not match what the manifest promises (digest, size, links, listing)."""


class FormatError(BundleError):
    """The manifest or a path in it is malformed."""


class StoreError(LabkitError):
    """The bundle store cannot do what was asked."""


class InputError(LabkitError, ValueError):
    """Arrays passed to ``predict`` do not match the model's signature.

    Raised by an engine's session too, for inputs the signature cannot rule out (a
    position table shorter than the sequence): then ``engine`` names the engine and
    ``detail`` is its own message, for the caller to say which input was at fault.
    """

    def __init__(self, message: str, *, engine: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.engine = engine
        self.detail = detail


class EngineError(LabkitError):
    """An engine (ONNX Runtime, OpenVINO, …) could not build a session for a graph or failed
    while running it, for a reason that is not the inputs'. Each engine turns its own error
    types into this one or :class:`InputError`, so no caller needs to know them."""


class HandoffRequestError(LabkitError, ValueError):
    """A handoff request is malformed: an unknown field, a wrong type, a value out of range."""


class HandoffFailed(LabkitError):
    """A handoff failed where it ran; ``type`` is the original error's class name (or a
    request-level kind such as ``ModelNotChosen``), ``stage`` the stage that failed."""

    def __init__(self, etype: str, message: str, stage: str | None = None) -> None:
        super().__init__(message)
        self.type = etype
        self.stage = stage


class MissingDependencyError(LabkitError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; it is needed for this step. "
            f"Install it with: pip install 'labkit[{extra}]'"
        )
        self.package = package
        self.extra = extra
