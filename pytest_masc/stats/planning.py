"""How many prompts x seeds per concept a release comparison needs, from one run's noise.

A release comparison (:func:`pytest_masc.stats.compare.compare_cases`) pairs the same cases in
both releases, so per-prompt effects cancel and a case delta with ``k`` seeds per side has

.. math::

    \\sigma_d^2 = \\frac{2 \\sigma_s^2}{k} + \\sigma_i^2,

with :math:`\\sigma_s` the seed-to-seed sd within a case and :math:`\\sigma_i` the prompt x
release interaction. One run measures :math:`\\sigma_s` and the prompt-to-prompt sd
:math:`\\sigma_p` (:func:`variance_components`) but not :math:`\\sigma_i`: :func:`plan` assumes
:math:`\\sigma_i^2 = \\text{interaction} \\cdot \\sigma_p^2` (default 0, a release shifts all
prompts of a concept alike). The size is the fewest cases whose paired t test at Holm's first
level :math:`\\alpha/m` calls a true drop ``regressed`` with the asked power
(:func:`~pytest_masc.stats.compare.detection_power`). numpy and the standard library only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .compare import METRICS, _check, _per_case, _read, _Table, cases_for_power, detection_power


@dataclass(frozen=True)
class VarianceComponents:
    """One metric's noise in one run: ``seed_sd`` within a case (pooled over cases with
    ``seed_df`` :math:`= \\sum_c (k_c - 1)` degrees of freedom) and ``prompt_sd`` between a concept's
    case means, less the seed part :math:`\\sigma_s^2\\, \\overline{1/k_c}` (floored at 0; NaN
    without two cases in a concept)."""

    metric: str
    seed_sd: float
    seed_df: int
    prompt_sd: float
    n_cases: int
    seeds: float


def _components(run: Mapping[str, Any], metrics: Sequence[str]) -> tuple[tuple[VarianceComponents, ...], int]:
    (side,), labels, concept_of_case, _ = _read([("run", run)], metrics)
    n_cases, n_concepts, found = len(concept_of_case), len(labels[0]), []
    for m, metric in enumerate(metrics):
        total, count = _per_case(side, n_cases, m)
        has, within_df = count > 0, float(np.sum(np.maximum(count - 1, 0)))
        if within_df == 0:
            raise ValueError(f"run: no case has two finite {metric} scores (seeds): the seed-to-seed variance needs them")
        mean = np.where(has, total / np.maximum(count, 1), np.nan)
        finite = np.isfinite(side.scores[:, m])
        seed_var = float(np.sum((side.scores[finite, m] - mean[side.case[finite]]) ** 2)) / within_df
        concept = concept_of_case[has]
        per_concept = np.bincount(concept, minlength=n_concepts)
        centre = np.bincount(concept, weights=mean[has], minlength=n_concepts) / np.maximum(per_concept, 1)
        between_df = float(np.sum(np.maximum(per_concept - 1, 0)))
        between = float(np.sum((mean[has] - centre[concept]) ** 2)) / between_df if between_df else math.nan
        prompt_var = max(0.0, between - seed_var * float(np.mean(1.0 / count[has]))) if between_df else math.nan
        found.append(VarianceComponents(metric, math.sqrt(seed_var), int(within_df), math.sqrt(prompt_var),
                                        int(has.sum()), float(np.mean(count[has]))))
    return tuple(found), n_concepts


def _chi2_quantile(q: float, df: float) -> float:
    """Wilson-Hilferty: :math:`\\chi^2_{\\nu, q} \\approx \\nu (1 - 2/9\\nu + z_q \\sqrt{2/9\\nu})^3`."""
    return df * max(1e-12, 1 - 2 / (9 * df) + NormalDist().inv_cdf(q) * math.sqrt(2 / (9 * df))) ** 3


def variance_components(run: Mapping[str, Any], *, metrics: Sequence[str] = METRICS) -> tuple[VarianceComponents, ...]:
    """Seed-to-seed and prompt-to-prompt sd of each metric in one run's case table."""
    return _components(run, metrics)[0]


@dataclass(frozen=True)
class PlanOption:
    """``prompts`` cases per concept at ``seeds`` seeds each (``images`` = prompts x seeds per concept
    and release); ``power``: predicted chance to call the true ``drop`` regressed (worst metric)."""

    seeds: int
    prompts: Optional[int]
    images: Optional[int]
    power: float
    feasible: bool


@dataclass(frozen=True)
class ReleasePlan(_Table):
    """Options by seeds per case, the recommended one (fewest images, then fewest seeds) and
    what they assume: ``level`` = ``alpha / rows``, ``assurance``, ``interaction`` (see :func:`plan`)."""

    options: tuple[PlanOption, ...]
    recommended: Optional[PlanOption]
    components: tuple[VarianceComponents, ...]
    drop: float
    max_drop: float
    level: float
    rows: int
    power: float
    assurance: Optional[float]
    interaction: float
    _table, _integers = "options", ("prompts", "images")


def plan(run: Mapping[str, Any], *, metrics: Sequence[str] = METRICS, max_drop: float = 0.02, power: float = 0.8,
         rows: Optional[int] = None, confidence: float = 0.95, drop: Optional[float] = None, max_seeds: int = 8,
         max_prompts: Optional[int] = None, assurance: Optional[float] = 0.8,
         interaction: float = 0.0) -> ReleasePlan:
    """Prompts x seeds per concept so that a true drop ``drop`` (default ``2 * max_drop``) of one
    row is called ``regressed`` with probability ``power``.

    Paired on the same prompts, prompt effects cancel: with ``k`` seeds per side a case delta has
    :math:`\\sigma_d^2 = 2\\sigma_s^2/k + \\sigma_i^2`. The prompt x release interaction
    :math:`\\sigma_i^2` is unknown from one run; assumed ``interaction`` x the measured prompt
    variance (default 0: a release shifts every prompt of a concept alike). Holm tests the row at
    ``level`` :math:`= \\alpha/m` at worst (``rows`` :math:`= m`, default the run's concepts x
    metrics), and ``regressed`` also needs the estimate beyond ``max_drop``, so the size is the
    fewest cases with :func:`detection_power` (``excess = drop - max_drop``) >= ``power`` for every
    metric. A true drop of exactly ``max_drop`` is called at most half the time at any size, hence
    the default of twice that. ``max_prompts`` marks larger options infeasible.

    One run estimates :math:`\\sigma_s^2` with ``seed_df`` degrees of freedom; the plan uses its
    one-sided ``assurance`` upper confidence limit :math:`\\hat\\sigma_s^2\\, \\nu / \\chi^2_{\\nu,
    1 - \\text{assurance}}` (Wilson-Hilferty quantile), so the size reaches ``power`` unless the run
    happened to understate the noise (chance ``1 - assurance``); ``None``: the estimate itself.
    """
    _check(max_drop, confidence, 1)
    for name, value, ok in (("power", power, 0 < power < 1), ("max_seeds", max_seeds, max_seeds >= 1),
                            ("rows", rows, rows is None or rows >= 1), ("interaction", interaction, interaction >= 0),
                            ("assurance", assurance, assurance is None or 0 < assurance < 1)):
        if not ok:
            raise ValueError(f"plan: {name} out of range, got {value!r}")
    components, n_concepts = _components(run, metrics)
    if interaction and any(math.isnan(c.prompt_sd) for c in components):
        raise ValueError("plan: interaction scales the prompt variance, and no concept of the run has two cases")
    rows = n_concepts * len(metrics) if rows is None else int(rows)
    drop = 2.0 * max_drop if drop is None else float(drop)
    if not drop > max_drop:
        raise ValueError(f"drop must exceed max_drop ({max_drop}), got {drop}")
    level, options = (1.0 - confidence) / rows, []
    seed_vars = [c.seed_sd ** 2 * (1.0 if assurance is None else c.seed_df / _chi2_quantile(1 - assurance, c.seed_df))
                 for c in components]
    for seeds in range(1, max_seeds + 1):
        sds = [math.sqrt(2 * v / seeds + (interaction * c.prompt_sd ** 2 if interaction else 0.0))
               for v, c in zip(seed_vars, components)]
        needed = [cases_for_power(drop, sd, level, drop - max_drop, power) for sd in sds]
        prompts = None if None in needed else max(needed)
        achieved = min(detection_power(prompts, drop, sd, level, drop - max_drop) for sd in sds) if prompts else 0.0
        feasible = prompts is not None and (max_prompts is None or prompts <= max_prompts)
        options.append(PlanOption(seeds, prompts, prompts * seeds if prompts else None, achieved, feasible))
    usable = [o for o in options if o.feasible]
    best = min(usable, key=lambda o: (o.images, o.seeds)) if usable else None
    return ReleasePlan(tuple(options), best, components, drop, max_drop, level, rows, power, assurance, interaction)


__all__ = ["PlanOption", "ReleasePlan", "VarianceComponents", "plan", "variance_components"]
