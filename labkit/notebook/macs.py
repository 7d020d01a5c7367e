"""Mult-adds per layer call, from the layer's hyper-parameters and the shapes it saw.

A mult-add is one multiplication and one addition (FLOPs ≈ 2 × mult-adds for these layers).
Each formula counts what dominates — the products of weights and activations — and leaves
bias adds and elementwise gate arithmetic out, as torchinfo and MATLAB's analyzer do.
Layers counted here are *leaves* for the count: their sub-modules (the out_proj of
``nn.MultiheadAttention``) are not called through ``forward`` and are already included.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["counts", "functional_mult_adds", "mult_adds"]


def _numel(t: Any) -> int:
    return int(t.numel()) if hasattr(t, "numel") else 0


def _first_tensor(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for item in x:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _is_hf_conv1d(module: Any) -> bool:
    # transformers' Conv1D (GPT-2): a Linear with a transposed weight (nx, nf). Recognised by
    # shape, not by import, so counting works without transformers installed.
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and getattr(module, "weight", None) is not None
        and module.weight.dim() == 2
    )


def _attention(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    names = ("query", "key", "value")
    q, k, v = (args[i] if len(args) > i else kwargs.get(n) for i, n in enumerate(names))
    if q is None:
        return 0
    k = q if k is None else k
    v = k if v is None else v
    batch_first = getattr(module, "batch_first", False)
    if q.dim() == 2:  # unbatched (L, E)
        n, tgt, src = 1, q.shape[0], k.shape[0]
    elif batch_first:
        n, tgt, src = q.shape[0], q.shape[1], k.shape[1]
    else:
        n, tgt, src = q.shape[1], q.shape[0], k.shape[0]
    e, kdim, vdim = module.embed_dim, module.kdim, module.vdim
    projections = tgt * e * e + src * kdim * e + src * vdim * e
    scores_and_mix = 2 * tgt * src * e  # QKᵀ and softmax(…)·V, over all heads together
    out_proj = tgt * e * e
    return int(n * (projections + scores_and_mix + out_proj))


def _recurrent(module: Any, args: tuple[Any, ...]) -> int:
    x = args[0] if args else None
    if x is None or not hasattr(x, "dim"):  # a PackedSequence: data is (sum of lengths, C)
        data = getattr(x, "data", None)
        if data is None:
            return 0
        batch_steps = int(data.shape[0])
    elif x.dim() == 2:  # unbatched (T, C)
        batch_steps = int(x.shape[0])
    else:
        batch_steps = int(x.shape[0] * x.shape[1])
    gates = {"LSTM": 4, "GRU": 3}.get(type(module).__name__, 1)
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    recur = proj or hidden  # what feeds back into the gates
    dirs = 2 if module.bidirectional else 1
    per_step = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else recur * dirs
        per_step += dirs * (gates * (width * hidden + recur * hidden) + hidden * proj)
    return batch_steps * per_step


def counts(module: Any) -> bool:
    """Whether :func:`mult_adds` has a formula for ``module`` (its insides are not counted)."""
    import torch

    return isinstance(
        module,
        (
            torch.nn.Linear,
            torch.nn.modules.conv._ConvNd,
            torch.nn.MultiheadAttention,
            torch.nn.RNNBase,
        ),
    ) or _is_hf_conv1d(module)


def functional_mult_adds(func: Any, args: tuple[Any, ...], out: Any) -> int:
    """Mult-adds of a matrix product called as a function, outside any counted layer
    (attention written with ``q @ k.transpose(-2, -1)`` or ``scaled_dot_product_attention``)."""
    import torch
    import torch.nn.functional as F

    y = _first_tensor(out)
    if y is None:
        return 0
    if func in (
        torch.matmul,
        torch.Tensor.matmul,
        torch.Tensor.__matmul__,
        torch.bmm,
        torch.Tensor.bmm,
        torch.mm,
        torch.Tensor.mm,
    ):
        return int(args[0].shape[-1]) * _numel(y)
    if func in (torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm):
        return int(args[1].shape[-1]) * _numel(y)
    if func is F.linear:
        return int(args[1].shape[-1]) * _numel(y)
    if func is F.scaled_dot_product_attention:
        q, k, v = args[:3]
        tgt, src, e, ev = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
        return int(q.numel() // (tgt * e) * tgt * src * (e + ev))  # QKᵀ, then ·V
    return 0


def mult_adds(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int | None:
    """Mult-adds of one call, or None for a layer this module does not count."""
    import torch

    y = _first_tensor(out)
    if isinstance(module, torch.nn.Linear):
        return module.in_features * _numel(y)
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        if module.transposed:  # every input element scatters into a kernel-sized window
            x = _first_tensor(args)
            return (
                (module.out_channels // module.groups) * math.prod(module.kernel_size) * _numel(x)
            )
        per_out = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return per_out * _numel(y)
    if _is_hf_conv1d(module):
        return int(module.weight.shape[0]) * _numel(y)
    if isinstance(module, torch.nn.MultiheadAttention):
        return _attention(module, args, kwargs)
    if isinstance(module, torch.nn.RNNBase):
        return _recurrent(module, args)
    return None
