"""Checking ``dynamic_axes`` at registration, where a mistake is cheap to fix.

Axis 0 of every input and output is the batch. Beyond it, ``dynamic_axes`` names the axes
whose size may change (``{'input_ids': {1: 'sequence'}}``). A declaration must name an input
or output that exists and an axis it has (negative axes count from the end), and one name
means one size. Then the model is run once with each declared input dimension changed, to
see which output axes follow it: an output that ``dynamic_axes`` does not mention gets those
axes declared for it (with a note); an output it mentions must declare them itself, and may
not declare a fixed axis dynamic. The exported graph is checked again after export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labkit.errors import RegistrationError

BATCH = "batch"  # the name of axis 0 of every input and output, on export too
Shapes = Mapping[str, Sequence[int]]
Axes = dict[str, dict[int, str]]


def _shape_text(shape: Sequence[int]) -> str:
    return str(list(shape))


def normalize(dynamic_axes: Any, inputs: Shapes, outputs: Shapes) -> Axes:
    """Type, names and ranges checked; negative axes turned into positive ones."""
    if dynamic_axes is None:
        return {}
    names = [*inputs, *outputs]
    if not isinstance(dynamic_axes, Mapping):
        raise RegistrationError(
            f"dynamic_axes must map an input or output name to {{axis: 'dim_name'}}, e.g. "
            f"{{{names[0]!r}: {{1: 'sequence'}}}}; got {type(dynamic_axes).__name__}"
        )
    out: Axes = {}
    for key, axes in dynamic_axes.items():
        if key not in inputs and key not in outputs:
            raise RegistrationError(
                f"dynamic_axes names {key!r}, but the inputs are "
                f"{list(inputs)} and the outputs {list(outputs)}"
            )
        shape = inputs[key] if key in inputs else outputs[key]
        rank = len(shape)
        if not isinstance(axes, Mapping) or not all(
            isinstance(a, int) and not isinstance(a, bool) and isinstance(d, str) and d
            for a, d in axes.items()
        ):
            raise RegistrationError(
                f"dynamic_axes[{key!r}] must map axis numbers to dimension "
                f"names, e.g. {{1: 'sequence'}}; got {axes!r}"
            )
        fixed: dict[int, str] = {}
        for axis, dim in axes.items():
            if rank == 0:
                raise RegistrationError(
                    f"dynamic_axes[{key!r}] declares axis {axis}, but "
                    f"{key!r} is a scalar (shape []): it has no axes"
                )
            if not -rank <= axis < rank:
                raise RegistrationError(
                    f"dynamic_axes[{key!r}] declares axis {axis}, but {key!r} has rank {rank} "
                    f"(shape {_shape_text(shape)}): use an axis in 0..{rank - 1} (or "
                    f"{-rank}..-1 counting from the end)"
                )
            a = axis % rank
            if a != 0 and dim == BATCH:
                raise RegistrationError(
                    f"dynamic_axes[{key!r}] names axis {a} {BATCH!r}, the name of axis 0 of "
                    f"every input and output: give it its own name, e.g. {{{a}: 'sequence'}}"
                )
            if fixed.get(a, dim) != dim:
                raise RegistrationError(
                    f"dynamic_axes[{key!r}] names axis {a} twice ({fixed[a]!r} and {dim!r}, "
                    f"negative axes count from the end): keep one"
                )
            fixed[a] = dim
        out[key] = fixed
    _one_name_one_size(out, inputs)
    return out


def _one_name_one_size(axes: Axes, inputs: Shapes) -> None:
    seen: dict[str, tuple[str, int, int]] = {}
    for key, dims in axes.items():
        if key not in inputs:
            continue
        for axis, dim in dims.items():
            size = int(inputs[key][axis])
            first = seen.setdefault(dim, (key, axis, size))
            if first[2] != size:
                raise RegistrationError(
                    f"dynamic_axes names {dim!r} on {first[0]!r} axis {first[1]} (size "
                    f"{first[2]}) and on {key!r} axis {axis} (size {size}); one name means one "
                    "size: give the example inputs equal sizes there, or use two names"
                )


def input_dims(axes: Axes, inputs: Shapes) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """Declared non-batch input dimensions: name → (example size, [(input, axis), …])."""
    dims: dict[str, tuple[int, list[tuple[str, int]]]] = {}
    for key, declared in axes.items():
        if key not in inputs:
            continue
        for axis, dim in declared.items():
            if axis == 0:
                continue
            size, where = dims.setdefault(dim, (int(inputs[key][axis]), []))
            where.append((key, axis))
    return dims


def other_size(size: int) -> int:
    """A second size to try a dimension at: smaller when it can be, to stay within limits."""
    return size - 1 if size > 2 else size + 1


def check_batch(inputs: Shapes, outputs: Shapes, run_resized: Callable[[str, int], Shapes]) -> None:
    """Every output has one row per input row: axis 0 follows the batch.

    A bundle's golden files and the server's batching both rely on it; an output that does
    not (a parameter, a loss) is refused with the way to leave it out.
    """
    sizes = {int(s[0]) for s in inputs.values() if len(s)}
    if len(sizes) != 1:
        return  # scalar-only inputs, or inputs that disagree: the model decides (freeze)
    size = sizes.pop()
    new = other_size(size)
    shapes = run_resized(BATCH, new)
    for out, shape in outputs.items():
        got = shapes.get(out)
        if (
            len(shape)
            and got is not None
            and len(got)
            and (int(shape[0]), int(got[0])) == (size, new)
        ):
            continue
        keep = [o for o in outputs if o != out]
        after = list(got) if got is not None else "missing"
        raise RegistrationError(
            f"output {out!r} has no batch axis: shape {list(shape)} with a batch of {size}, "
            f"{after} with {new}; labkit hands off outputs with one row per input row. Leave "
            f"it out with outputs={keep or ['...']}, or return it per row"
        )


def propagate(
    axes: Axes, inputs: Shapes, outputs: Shapes, run_resized: Callable[[str, int], Shapes]
) -> tuple[Axes, list[str]]:
    """Declare output axes that follow an input dimension; refuse contradictions.

    ``run_resized(dim, new_size)`` runs the model with ``dim`` changed and returns the output
    shapes. Returns the completed axes and one note per axis declared on the user's behalf.
    """
    axes = {k: dict(v) for k, v in axes.items()}
    notes: list[str] = []
    stated = {k for k in axes if k in outputs}
    for dim, (size, where) in input_dims(axes, inputs).items():
        new = other_size(size)
        first_input, first_axis = where[0]
        try:
            shapes = run_resized(dim, new)
        except Exception as raised:  # the user's forward can raise anything  # noqa: BLE001
            exc = (
                raised.__cause__
                if isinstance(raised, RegistrationError) and raised.__cause__ is not None
                else raised
            )
            raise RegistrationError(
                f"dynamic_axes declares {first_input!r} axis {first_axis} as {dim!r}, but the "
                f"model fails when it is {new} instead of {size}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Remove {dim!r} from "
                "dynamic_axes if the model needs exactly that size"
            ) from raised
        for out, shape in outputs.items():
            got = shapes.get(out)
            if got is None or len(got) != len(shape):
                raise RegistrationError(
                    f"output {out!r} changes form when {dim!r} is {new} instead of {size} "
                    f"(shape {_shape_text(shape)} → {got}); the graph needs a fixed output "
                    f"structure: remove {dim!r} from dynamic_axes"
                )
            declared = axes.get(out, {})
            for axis in range(1, len(shape)):
                before, after = int(shape[axis]), int(got[axis])
                follows = before == size and after == new
                name = declared.get(axis)
                if follows and name is None:
                    if out in stated:
                        raise RegistrationError(
                            f"output {out!r} axis {axis} follows {dim!r} ({size} → {new} when "
                            f"{first_input!r} axis {first_axis} changes), but dynamic_axes"
                            f"[{out!r}] does not declare it: add {axis}: {dim!r} to "
                            f"dynamic_axes[{out!r}]"
                        )
                    axes.setdefault(out, {})[axis] = dim
                    notes.append(
                        f"output {out!r} axis {axis} follows {first_input!r} axis "
                        f"{first_axis}: declared dynamic as {dim!r}"
                    )
                elif before != after and name is None:
                    raise RegistrationError(
                        f"output {out!r} axis {axis} changes with {dim!r} ({before} → {after} "
                        f"when {dim!r} goes {size} → {new}), but is not declared dynamic: add "
                        f"{out!r}: {{{axis}: '<name>'}} to dynamic_axes"
                    )
                elif name == dim and not follows:
                    raise RegistrationError(
                        f"dynamic_axes declares output {out!r} axis {axis} as {dim!r}, but it "
                        f"is {before} → {after} when {dim!r} goes {size} → {new}: remove it"
                        + _which_follows(shape, got, size, new)
                    )
    return axes, notes


def _which_follows(before: Sequence[int], after: Sequence[int], size: int, new: int) -> str:
    axes = [a for a in range(1, len(before)) if before[a] == size and after[a] == new]
    return f" (axis {axes[0]} is the one that follows it)" if axes else ""
