"""Which variant a bundle loads by default, decided so that it is stable and explained.

The same model handed off twice once got ``fp32`` as its default and ``int8-dynamic`` the
next time, with no reason shown: two variants within the benchmark's noise of each other
swapped places. The rule (:data:`RULE`) keeps an *incumbent* unless a challenger beats it by
more than the noise measured in this very benchmark:

- a variant's **score** is the geometric mean of its batch-1 and batch-N speed-ups over eager
  (both as recorded in the variant's ``benchmark.speedup``), so it does not win on one while
  losing badly on the other;
- the **incumbent** is the previous version's default when this version has a variant of
  that name (``Store.plan`` knows the previous version), else the exact ``fp32`` variant;
- the **noise** is how far the challenger's per-round score ratio to the incumbent moved
  around its median (half the range, relative), both measured in the same rounds;
- the best challenger replaces the incumbent only when its score exceeds the incumbent's by
  more than the **margin** (the noise, and at least :data:`MIN_MARGIN`), or when it was
  faster by more than :data:`MIN_MARGIN` in every round (at least :data:`EVERY_ROUND_MIN`):
  on a busy machine rounds spread widely, but a side that wins every round is not noise;
- without reliable numbers (no benchmark, or an inconsistent eager baseline) the incumbent
  stays.

:func:`decide` works on numbers alone (unit-tested); :func:`choose` reads them from a
benchmark report. The result is the manifest's ``default_rule`` (``labkit.bundle.speed``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from labkit.bundle.parts import Variant
from labkit.bundle.speed import DefaultRule

#: A challenger faster than the incumbent by more than MIN_MARGIN in every one of at least
#: this many rounds wins whatever the spread: noise does not make one side win every round
#: (by chance, 1 in 2**rounds).
EVERY_ROUND_MIN = 3
#: The smallest margin a challenger must win by, for quiet runs whose few rounds happen to
#: agree (measured noise came out at 4–19% on this 2-core machine at load ≈ 1, 10–50% at
#: load 7–10; docs/performance.md, "Honest numbers"): a default faster by less is not
#: worth a change of arithmetic under a user's feet.
MIN_MARGIN = 0.05

RULE = (
    "score = geometric mean of a variant's batch-1 and batch-N speed-ups over PyTorch eager; "
    "the incumbent (the previous version's default if this version has it, else fp32) stays "
    "the default unless the best other variant's score beats it by more than the margin "
    f"(the measured noise, at least {MIN_MARGIN:.0%}) or it was faster by more than "
    f"{MIN_MARGIN:.0%} in each of {EVERY_ROUND_MIN} or more rounds; without reliable numbers "
    "the incumbent stays"
)


def score(speedup: Mapping[str, Any]) -> float:
    return math.sqrt(float(speedup["p50"]) * float(speedup["throughput"]))


def _ratios(challenger: Sequence[float], incumbent: Sequence[float]) -> list[float]:
    return [c / i for c, i in zip(challenger, incumbent) if i > 0]


def noise(challenger: Sequence[float], incumbent: Sequence[float]) -> float:
    """Half the range of the per-round score ratio challenger/incumbent, over its median."""
    ratios = _ratios(challenger, incumbent)
    if len(ratios) < 2:
        return 0.0
    return (max(ratios) - min(ratios)) / (2 * statistics.median(ratios))


def decide(
    names: Sequence[str],
    *,
    exact: str,
    scores: Mapping[str, float],
    rounds: Mapping[str, Sequence[float]],
    reliable: bool,
    previous: str | None,
    previous_version: str | None,
    unmeasured: str = "the speed-ups are not reliable",
) -> DefaultRule:
    """The default among ``names`` and why.

    ``scores``: each variant's score; ``rounds``: its per-round scores (same rounds for
    all); ``exact``: the exact variant, the incumbent when the previous default is absent;
    ``unmeasured``: why, when ``reliable`` is false.
    """
    incumbent = previous if previous is not None and previous in names else exact
    since = f" (the default of {previous_version})" if previous == incumbent else ""

    def rule(chosen: str, reason: str, **numbers: Any) -> DefaultRule:
        return DefaultRule(
            rule=RULE,
            chosen=chosen,
            incumbent=incumbent,
            previous=previous,
            previous_version=previous_version,
            reliable=reliable,
            reason=reason,
            scores=dict(numbers.get("scores", {})),
            noise=numbers.get("noise"),
            margin=numbers.get("margin"),
        )

    if not reliable or incumbent not in scores:
        why = unmeasured if not reliable else f"{incumbent} has no speed-up to compare"
        return rule(incumbent, f"kept {incumbent}{since}: {why}")
    others = [n for n in names if n != incumbent and n in scores]
    if not others:
        return rule(incumbent, f"{incumbent} is the only variant", scores=scores)
    best = max(others, key=lambda n: scores[n])
    measured = noise(rounds.get(best, ()), rounds.get(incumbent, ()))
    margin = max(MIN_MARGIN, measured)
    gain = scores[best] / scores[incumbent]
    numbers = {"scores": scores, "noise": round(measured, 4), "margin": round(margin, 4)}
    compared = (
        f"{best} scored {scores[best]:.2f} vs {incumbent}'s {scores[incumbent]:.2f} "
        f"({gain:.3f}×; margin {margin:.1%}, noise {measured:.1%})"
    )
    if gain > 1 + margin:
        return rule(best, f"{best} replaced {incumbent}{since}: {compared}", **numbers)
    ratios = _ratios(rounds.get(best, ()), rounds.get(incumbent, ()))
    if len(ratios) >= EVERY_ROUND_MIN and min(ratios) > 1 + MIN_MARGIN:
        return rule(
            best,
            f"{best} replaced {incumbent}{since}: faster by more than {MIN_MARGIN:.0%} in each "
            f"of {len(ratios)} rounds (worst round {min(ratios):.3f}×); {compared}",
            **numbers,
        )
    if gain <= 1:
        return rule(incumbent, f"kept {incumbent}{since}, the fastest: {compared}", **numbers)
    return rule(incumbent, f"kept {incumbent}{since}: {compared}, inside the margin", **numbers)


def choose(
    variants: Sequence[Variant],
    bench: Mapping[str, Any] | None,
    *,
    reliable: bool,
    previous: str | None,
    previous_version: str | None,
) -> DefaultRule:
    """:func:`decide` on a benchmark report (``labkit.pipeline.benchmark.benchmark``)."""
    names = [v.name for v in variants]
    exact = next((v.name for v in variants if v.precision == "fp32"), names[0])
    scores: dict[str, float] = {}
    rounds: dict[str, list[float]] = {}
    if bench and reliable:
        for v in variants:
            sp = (bench.get("variants") or {}).get(v.name, {}).get("speedup")
            if sp:
                scores[v.name] = round(score(sp), 4)
        eager = (bench.get("rounds") or {}).get(bench.get("baseline", ""), {})
        for name in scores:
            mine = (bench.get("rounds") or {}).get(name, {})
            rounds[name] = [
                math.sqrt((e_p50 / p50) * (thr / e_thr))
                for e_p50, p50, thr, e_thr in zip(
                    eager.get("p50_ms", []),
                    mine.get("p50_ms", []),
                    mine.get("throughput_per_s", []),
                    eager.get("throughput_per_s", []),
                )
            ]
    return decide(
        names,
        exact=exact,
        scores=scores,
        rounds=rounds,
        reliable=reliable and bool(bench),
        previous=previous,
        previous_version=previous_version,
        unmeasured="not benchmarked" if not bench else "the speed-ups are not reliable",
    )
