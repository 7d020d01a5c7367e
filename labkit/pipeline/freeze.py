"""Stage 1, freeze: eval mode, no grad, a determinism check, and the reference outputs.

Everything later is compared with what PyTorch computes here, on three kinds of input: the
user's examples, the user's real data (``parity_inputs``), and seeded generated batches at
several batch sizes. Generated inputs follow the examples' dtype and value range, so token
ids stay valid ids and images stay in the range the model saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labkit.errors import RegistrationError
from labkit.registry import ModelSpec

Batch = dict[str, np.ndarray]


@dataclass
class InputSet:
    label: str  # "example", "real[0]", "generated b=3"
    kind: str  # example | real | generated
    inputs: Batch
    outputs: Batch = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


@dataclass
class Reference:
    spec: ModelSpec
    sets: list[InputSet]
    parameters: int
    flops_per_sample: int | None
    deterministic_max_abs: float

    def real(self) -> list[InputSet]:
        return [s for s in self.sets if s.kind in ("example", "real")]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


def run_torch(model: torch.nn.Module, spec: ModelSpec, inputs: Batch) -> Batch:
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in spec.input_names]
    with torch.inference_mode():
        outs = spec.outputs_of(model, args)
    return {n: _to_numpy(o) for n, o in zip(spec.output_names, outs)}


def _generate(example: torch.Tensor, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    if example.dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    if not example.dtype.is_floating_point:
        low, high = int(example.min()), int(example.max())
        return torch.randint(low, high + 1, shape, generator=gen, dtype=example.dtype)
    x = example.double()
    mean = float(x.mean())
    std = float(x.std()) if x.numel() > 1 else 1.0
    std = std if std > 0 else 1.0
    lo, hi = float(x.min()), float(x.max())
    t = torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean
    if lo >= 0:  # keep non-negative data (pixels, counts) non-negative
        t = t.clamp(min=lo, max=max(hi, lo + std))
    return t.to(example.dtype)


def _declared_dims(spec: ModelSpec) -> dict[str, int]:
    """Declared dynamic (non-batch) input dims → a different size to try them at."""
    sizes: dict[str, int] = {}
    for name, ex in zip(spec.input_names, spec.example_inputs):
        for axis, dim in spec.dynamic_axes.get(name, {}).items():
            if axis != 0 and axis < ex.dim() and ex.shape[axis] > 1:
                sizes.setdefault(dim, max(1, int(ex.shape[axis]) // 2))
    return sizes


def generated_sets(spec: ModelSpec, batch_sizes: tuple[int, ...], seed: int) -> list[InputSet]:
    """Seeded batches at each batch size, plus one with every declared dynamic dim changed."""
    gen = torch.Generator().manual_seed(seed)
    dims = _declared_dims(spec)
    plans: list[tuple[int, dict[str, int]]] = [(b, {}) for b in batch_sizes]
    plans += [(2, dims)] if dims else []
    sets = []
    for b, resized in plans:
        batch = {}
        for name, ex in zip(spec.input_names, spec.example_inputs):
            shape = list(ex.shape)
            if shape:
                shape[0] = b
            for axis, dim in spec.dynamic_axes.get(name, {}).items():
                if dim in resized and axis < len(shape):
                    shape[axis] = resized[dim]
            batch[name] = _to_numpy(_generate(ex, shape, gen))
        label = f"generated b={b}" + "".join(f" {d}={n}" for d, n in resized.items())
        sets.append(InputSet(label, "generated", batch))
    return sets


def _flops(model: torch.nn.Module, spec: ModelSpec) -> int | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    args = spec.example_inputs
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        spec.outputs_of(model, args)
    batch = int(args[0].shape[0]) if args and args[0].dim() else 1
    return int(counter.get_total_flops()) // max(batch, 1)


def freeze(
    spec: ModelSpec, *, batch_sizes: tuple[int, ...] = (1, 3, 16), seed: int = 0
) -> Reference:
    # Eval mode for the reference; run() puts the researcher's flags back afterwards.
    model = spec.model.eval()
    sets = [
        InputSet(
            "example",
            "example",
            {n: _to_numpy(t) for n, t in zip(spec.input_names, spec.example_inputs)},
        )
    ]
    for i, batch in enumerate(spec.parity_inputs):
        sets.append(
            InputSet(
                f"real[{i}]", "real", {n: _to_numpy(t) for n, t in zip(spec.input_names, batch)}
            )
        )
    sets += generated_sets(spec, batch_sizes, seed)
    first = run_torch(model, spec, sets[0].inputs)
    again = run_torch(model, spec, sets[0].inputs)
    drift = max(
        float(np.max(np.abs(first[n].astype(np.float64) - again[n]))) if first[n].size else 0.0
        for n in spec.output_names
    )
    if drift > 0:
        raise RegistrationError(
            f"the model is not deterministic in eval mode: two runs on the same input differ "
            f"by up to {drift:.3g}. Remove randomness from forward() (e.g. F.dropout with "
            "training=True, torch.rand) before handing it off"
        )
    for s in sets:
        try:
            s.outputs = run_torch(model, spec, s.inputs)
        except Exception as exc:  # the user's forward can raise anything
            raise RegistrationError(
                f"the model fails on parity input {s.label} (shapes "
                f"{ {k: list(v.shape) for k, v in s.inputs.items()} }): {exc}"
            ) from exc
    params = sum(p.numel() for p in model.parameters())
    return Reference(spec, sets, params, _flops(model, spec), drift)


def golden_set(ref: Reference, max_rows: int = 64, min_real_rows: int = 16) -> InputSet:
    """Inputs joined into one batch, with PyTorch's outputs, to ship in the bundle.

    Real data (examples and ``parity_inputs``) only when there are at least
    ``min_real_rows`` of it, else generated rows too, so a service can re-check the model on
    its own CPU with enough rows for the task metric to mean something.
    """
    base = ref.sets[0]
    pool = ref.real() if sum(s.batch_size for s in ref.real()) >= min_real_rows else ref.sets
    chosen = [
        s
        for s in pool
        if all(s.inputs[n].shape[1:] == base.inputs[n].shape[1:] for n in base.inputs)
    ]
    inputs = {n: np.concatenate([s.inputs[n] for s in chosen])[:max_rows] for n in base.inputs}
    return InputSet("golden", "golden", inputs, run_torch(ref.spec.model, ref.spec, inputs))


def describe(ref: Reference) -> dict[str, Any]:
    return {
        "parameters": ref.parameters,
        "flops_per_sample": ref.flops_per_sample,
        "input_sets": [{"label": s.label, "kind": s.kind, "batch": s.batch_size} for s in ref.sets],
    }
