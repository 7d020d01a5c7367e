"""One forward pass with hooks on every module: the nested layer table of ``labkit.summary``.

Each module gets a row in call order (a pre-hook reserves it, so a parent precedes its
children): input and output shapes, parameters (trainable and frozen, its own and below),
mult-adds and activation memory. A module called several times (a shared block) keeps one
row with its calls summed. A container's mult-adds are the sum of what ran inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.notebook.macs import counts, functional_mult_adds, mult_adds

__all__ = ["LayerRow", "trace_layers"]


@dataclass
class LayerRow:
    name: str
    kind: str
    depth: int
    input_shape: str = ""
    output_shape: str = ""
    parameters: int = 0  # own and below
    trainable: int = 0
    mult_adds: int = 0  # this call and every call below it
    flops: int = 0
    activation_bytes: int = 0  # output tensors of this module
    calls: int = 0
    counted: bool = False  # mult-adds from a formula (not only summed from children)


def _shapes(x: Any) -> str:
    import torch

    if isinstance(x, torch.Tensor):
        return str(list(x.shape))
    if isinstance(x, (tuple, list)):
        inner = [_shapes(i) for i in x]
        inner = [i for i in inner if i]
        return inner[0] if len(inner) == 1 else "(" + ", ".join(inner) + ")" if inner else ""
    if isinstance(x, dict):
        parts = [f"{k}: {_shapes(v)}" for k, v in x.items() if _shapes(v)]
        return "{" + ", ".join(parts) + "}" if parts else ""
    shape = getattr(x, "shape", None)  # ModelOutput-like objects hold tensors as attributes
    if shape is not None:
        return str(list(shape))
    if hasattr(x, "to_tuple"):
        return _shapes(x.to_tuple())
    return ""


def _nbytes(x: Any) -> int:
    import torch

    if isinstance(x, torch.Tensor):
        return int(x.numel() * x.element_size())
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(i) for i in x)
    if isinstance(x, dict):
        return sum(_nbytes(i) for i in x.values())
    if hasattr(x, "to_tuple"):
        return _nbytes(x.to_tuple())
    return 0


def _elementwise(out: Any) -> int:
    import torch

    return int(out.numel()) if isinstance(out, torch.Tensor) else 0


def _fill_uncalled(rows: dict[str, LayerRow], model: Any) -> list[LayerRow]:
    """Rows for containers that are never called themselves (``nn.ModuleList``), summed from
    their children, each placed before its first child."""
    modules = dict(model.named_modules())
    out: list[LayerRow] = []
    made: dict[str, LayerRow] = {}
    for row in rows.values():
        parts = row.name.split(".")
        for i in range(1, len(parts)):
            anc = ".".join(parts[:i])
            if anc in rows or anc in made or anc not in modules:
                continue
            params = list(modules[anc].parameters())
            made[anc] = LayerRow(
                anc,
                type(modules[anc]).__name__,
                i,
                parameters=sum(int(p.numel()) for p in params),
                trainable=sum(int(p.numel()) for p in params if p.requires_grad),
            )
            out.append(made[anc])
        out.append(row)
    for anc, row in sorted(made.items(), key=lambda kv: -kv[1].depth):
        below = [r for r in out if r.depth == row.depth + 1 and r.name.startswith(anc + ".")]
        row.mult_adds = sum(r.mult_adds for r in below)
        row.flops = sum(r.flops for r in below)
        row.activation_bytes = sum(r.activation_bytes for r in below)
    return out


def trace_layers(
    model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[LayerRow], LayerRow]:
    """Run ``model(*args, **kwargs)`` once (no grad): a row per submodule, and the model's."""
    import torch
    from torch.overrides import TorchFunctionMode

    rows: dict[str, LayerRow] = {}
    stack: list[str] = []
    inside_counted: list[str] = []  # a counted layer's internals are already in its formula
    handles = []

    def pre(name: str) -> Any:
        def hook(mod: Any, a: tuple[Any, ...], kw: dict[str, Any]) -> None:
            if name not in rows:
                own = list(mod.parameters())
                rows[name] = LayerRow(
                    name,
                    type(mod).__name__,
                    name.count(".") + 1 if name else 0,
                    parameters=sum(int(p.numel()) for p in own),
                    trainable=sum(int(p.numel()) for p in own if p.requires_grad),
                )
            stack.append(name)
            if counts(mod):
                inside_counted.append(name)

        return hook

    def post(name: str) -> Any:
        def hook(mod: Any, a: tuple[Any, ...], kw: dict[str, Any], out: Any) -> None:
            stack.pop()
            if counts(mod):
                inside_counted.pop()
            row = rows[name]
            row.calls += 1
            row.input_shape = _shapes((a, kw) if kw else a)
            row.output_shape = _shapes(out)
            row.activation_bytes += _nbytes(out)
            if inside_counted:
                return  # inside a counted layer: its formula covers this
            macs = mult_adds(mod, a, kw, out)
            leaf = not any(True for _ in mod.children())
            if macs is not None:
                row.counted = True
                add_macs, add_flops = macs, 2 * macs
            elif leaf:
                add_macs, add_flops = 0, _elementwise(out)  # ~one op per output element
            else:
                return  # a container: filled in from its children below
            for owner in [*stack, name]:
                rows[owner].mult_adds += add_macs
                rows[owner].flops += add_flops

        return hook

    class Functional(TorchFunctionMode):
        """Matrix products called as functions, outside any counted layer."""

        def __torch_function__(self, func: Any, types: Any, a: Any = (), kw: Any = None) -> Any:
            out = func(*a, **(kw or {}))
            if not inside_counted and stack:
                macs = functional_mult_adds(func, a, out)
                for owner in stack:
                    rows[owner].mult_adds += macs
                    rows[owner].flops += 2 * macs
            return out

    try:
        for name, mod in model.named_modules():
            handles.append(mod.register_forward_pre_hook(pre(name), with_kwargs=True))
            handles.append(mod.register_forward_hook(post(name), with_kwargs=True))
        with torch.no_grad(), Functional():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    root = rows.pop("")
    return _fill_uncalled(rows, model), root
