"""The registry of variant kinds. Adding one is a :class:`Recipe` subclass and one line::

    from labkit.pipeline import recipes

    class BF16Weights(recipes.Recipe):
        name, precision = "bf16-weights", "bf16"
        def applies(self, graph, options): return graph.has("MatMul")
        def build(self, ctx, dst): ...

    recipes.register(BF16Weights())

Recipes run in registration order; the portable ``fp32`` graph is first and required.
"""

from __future__ import annotations

from labkit.errors import LabkitError
from labkit.pipeline.options import HandoffOptions
from labkit.pipeline.recipes.base import Built, Context, Graph, Recipe
from labkit.pipeline.recipes.fp32 import FusedFP32, PortableFP32
from labkit.pipeline.recipes.int8 import DynamicInt8, QuantizeRecipe, StaticInt8
from labkit.runtime.engines import DEFAULT_ENGINE

__all__ = [
    "Built",
    "Context",
    "Graph",
    "Recipe",
    "get",
    "recipes",
    "register",
    "selected",
    "unregister",
]

_RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> None:
    """Add (or replace) a recipe, by its name, which becomes the variant's name."""
    from labkit.bundle.manifest import NAME_RE

    if not NAME_RE.fullmatch(recipe.name):
        raise LabkitError(f"recipe name {recipe.name!r} must match {NAME_RE.pattern}")
    if recipe.runs_on is not None and DEFAULT_ENGINE not in recipe.runs_on:
        # Variants are kept on their default-engine parity, and loaded there by default.
        raise LabkitError(
            f"recipe {recipe.name!r}: runs_on {list(recipe.runs_on)} must include "
            f"{DEFAULT_ENGINE!r} (or be None for any engine)"
        )
    _RECIPES[recipe.name] = recipe


def unregister(name: str) -> None:
    _RECIPES.pop(name, None)


def get(name: str) -> Recipe:
    if name not in _RECIPES:
        raise LabkitError(f"unknown recipe {name!r}; known: {', '.join(_RECIPES)}")
    return _RECIPES[name]


def recipes() -> list[Recipe]:
    """Every registered recipe, in registration order."""
    return list(_RECIPES.values())


def selected(options: HandoffOptions) -> list[Recipe]:
    """The recipes a handoff with ``options`` tries: every registered one, except that
    ``quantize=False`` leaves out the quantized ones and ``candidates`` replaces the
    registered int8 recipes with exactly those :class:`Quantize` options."""
    out = [r for r in _RECIPES.values() if not r.quantized]
    if not options.quantize:
        return out
    if options.candidates is not None:
        return out + [QuantizeRecipe(q) for q in options.candidates]
    return out + [r for r in _RECIPES.values() if r.quantized]


register(PortableFP32())
register(FusedFP32())
register(DynamicInt8())
register(StaticInt8())
