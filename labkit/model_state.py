"""The researcher's module stays theirs: whatever labkit does with it is put back.

A handoff, a summary, an experiment's latency run and a quick export all need the model in
eval mode and without autograd. :func:`preserved` records what the researcher had — every
submodule's training flag, every parameter's ``requires_grad``, the device, dtype and
in-place version of every parameter and buffer — and restores it when the block ends, on
every path: success, a failed stage, an interrupt. Buffers (BatchNorm's running statistics,
counters) are small, so their values are kept too and written back if anything changed
them; parameters are too big to copy, so a parameter changed in place (a ``forward`` that
writes to its own weights) is reported rather than silently kept.

No torch import here: everything goes through the module's own methods, so this sits at the
registry's level and the pipeline and the notebook layer both use it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelState", "preserved"]


@dataclass(frozen=True)
class _Tensor:
    owner: Any  # the submodule holding it
    key: str  # its name in the owner's _parameters / _buffers
    name: str  # full dotted name, for messages
    tensor: Any  # the very object: restored into, and put back if it was replaced
    device: Any
    dtype: Any
    version: int
    requires_grad: bool
    copy: Any = None  # buffers only

    @property
    def slots(self) -> dict[str, Any]:
        return self.owner._buffers if self.copy is not None else self.owner._parameters


@dataclass(frozen=True)
class ModelState:
    """A snapshot of what :func:`preserved` puts back (see the module docstring)."""

    training: tuple[tuple[Any, bool], ...]
    tensors: tuple[_Tensor, ...]

    @classmethod
    def of(cls, model: Any) -> ModelState:
        training = tuple((m, bool(m.training)) for m in model.modules())
        tensors: list[_Tensor] = []
        seen: set[int] = set()
        for prefix, module in model.named_modules(remove_duplicate=False):
            for key, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    name = f"{prefix}.{key}" if prefix else key
                    tensors.append(
                        _Tensor(
                            module,
                            key,
                            name,
                            p,
                            p.device,
                            p.dtype,
                            p._version,
                            bool(p.requires_grad),
                        )
                    )
            for key, b in module._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    name = f"{prefix}.{key}" if prefix else key
                    tensors.append(
                        _Tensor(
                            module,
                            key,
                            name,
                            b,
                            b.device,
                            b.dtype,
                            b._version,
                            False,
                            b.detach().clone(),
                        )
                    )
        return cls(training, tuple(tensors))

    def restore(self) -> list[str]:
        """Put everything back; the names of parameters changed in place (not restorable)."""
        for module, flag in self.training:
            if module.training != flag:
                module.train(flag)
        changed: list[str] = []
        for t in self.tensors:
            obj = t.tensor
            slots = t.slots
            if slots.get(t.key) is not obj:  # .to()/.double() may have replaced the object
                slots[t.key] = obj
            if obj.device != t.device or obj.dtype != t.dtype:
                obj.data = obj.data.to(device=t.device, dtype=t.dtype)
            if t.copy is not None:
                if obj._version != t.version:
                    obj.data = t.copy
            else:
                if obj.requires_grad != t.requires_grad:
                    obj.requires_grad_(t.requires_grad)
                if obj._version != t.version:
                    changed.append(t.name)
        return changed


@contextlib.contextmanager
def preserved(model: Any) -> Iterator[ModelState]:
    """Run the block, then restore ``model`` exactly as it was (see the module docstring)."""
    state = ModelState.of(model)
    try:
        yield state
    finally:
        changed = state.restore()
        if changed:
            warnings.warn(
                f"{type(model).__name__}.forward changed parameter(s) in place while labkit "
                f"ran it: {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}. A "
                "forward that writes to its own weights cannot be exported faithfully",
                RuntimeWarning,
                stacklevel=3,
            )
