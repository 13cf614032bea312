"""Agreement statistics and their bootstrap intervals: Krippendorff's alpha, alpha against human ratings, identity AUC.

Shapes and conventions used throughout:

* a *unit* is one rated item (one generated image); ``n`` is the number of units;
* reliability data are ``raters x units`` arrays with NaN for a missing value;
* human ratings are one group ``(n,)`` or ``groups x units`` ``(G, n)`` on ``0..scale_max``;
* bootstrap confidence intervals resample *units* with replacement (all arrays of one call
  along their last axis, together) and report the percentile interval.

Interval alpha has a closed form that needs only per-unit sums, so the bootstrap of
:func:`human_alpha`, :func:`human_vs_human_alpha` and :func:`identity_auc` is computed from
resampling *counts* (a ``(B, n)`` matrix) with matrix products instead of a Python loop.
For units ``u`` with ``m_u >= 2`` values ("pairable"), ``N = sum m_u`` values in all:

.. math::

    D_o = \\frac{1}{N} \\sum_u \\frac{\\sum_{i \\ne j \\in u} (v_i - v_j)^2}{m_u - 1}
        = \\frac{1}{N} \\sum_u \\frac{2 (m_u S2_u - S1_u^2)}{m_u - 1},
    \\qquad
    D_e = \\frac{2}{N - 1} \\Big(S2 - \\frac{S1^2}{N}\\Big),
    \\qquad
    \\alpha = 1 - D_o / D_e,

where ``S1_u, S2_u`` are the sum and the sum of squares of unit ``u``'s values and
``S1, S2`` those of all pairable values. With two raters a unit contributes
``2 (a - b)^2`` to the numerator, so ``D_o = mean((a - b)^2)`` over pairable units and
``D_e`` is twice the sample variance (``ddof=1``) of the ``2n`` pooled values.

The weighted sums live in :mod:`pytest_masc.stats.weighted`, the resampling in
:mod:`pytest_masc.stats.resample`. Only numpy is imported at module level; ``krippendorff``
is imported on first use.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from .resample import check_bootstrap, percentile_interval, resample_chunks, weighted_interval
from .weighted import AUCTerms, HumanAlphaTerms, interval_alpha_from_sums, unit_terms

LEVELS = ("nominal", "ordinal", "interval", "ratio")

# --------------------------------------------------------------------------- Krippendorff


def krippendorff_alpha(data: Any, level: str = "interval") -> float:
    """Krippendorff's alpha of a ``raters x units`` array (NaN = missing value).

    A thin, validated wrapper over ``krippendorff.alpha(reliability_data=...,
    level_of_measurement=level)``. On Krippendorff's worked example (4 coders x 12 units,
    see the tests) it gives nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.

    Args:
        data: array-like ``(raters, units)`` of numbers; NaN (or None) marks a missing value.
        level: ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``.

    Returns:
        alpha in ``(-inf, 1]``; NaN when no unit has two values or all pairable values
        are equal (the expected disagreement is zero, so alpha is undefined).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"data must be a 2-D raters x units array, got shape {values.shape}")
    counts = np.isfinite(values).sum(axis=0)
    pairable = values[:, counts >= 2]
    finite = pairable[np.isfinite(pairable)]
    if finite.size < 2 or np.all(finite == finite[0]):
        return math.nan
    import krippendorff

    return float(krippendorff.alpha(reliability_data=values, level_of_measurement=level))


def interval_alpha(data: Any) -> float:
    """Interval alpha of a ``raters x units`` array by the closed form (no ``krippendorff``).

    Equal to ``krippendorff_alpha(data, "interval")``; fast on large arrays.
    """
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"data must be a 2-D raters x units array, got shape {values.shape}")
    total = unit_terms(values).sum(axis=0)
    return float(interval_alpha_from_sums(total[0], total[1], total[2], total[3]))


# --------------------------------------------------------------------------- human alpha


def _as_groups(ratings: Any, n_units: int, scale_max: float, name: str = "ratings") -> np.ndarray:
    groups = np.asarray(ratings, dtype=np.float64)
    if groups.ndim == 1:
        groups = groups[None, :]
    if groups.ndim != 2:
        raise ValueError(f"{name} must be 1-D (units) or 2-D (groups x units), got shape {groups.shape}")
    if groups.shape[1] != n_units:
        raise ValueError(f"{name} rate {groups.shape[1]} units but there are {n_units}")
    if not scale_max > 0:
        raise ValueError(f"scale_max must be positive, got {scale_max}")
    finite = groups[np.isfinite(groups)]
    if finite.size and (finite.min() < 0 or finite.max() > scale_max):
        raise ValueError(
            f"{name} must lie in [0, {scale_max}] (NaN for unrated), got values in "
            f"[{finite.min():g}, {finite.max():g}]"
        )
    return groups / float(scale_max)


def _as_rater_groups(ratings: Any, scale_max: float) -> np.ndarray:
    """``(G, n)`` ratings of ``G >= 2`` rater groups, divided by ``scale_max``."""
    groups = np.asarray(ratings, dtype=np.float64)
    if groups.ndim != 2 or groups.shape[0] < 2:
        raise ValueError(f"ratings must be a groups x units array with at least 2 groups, got shape {groups.shape}")
    return _as_groups(groups, groups.shape[1], scale_max)


def _as_metric(metric: Any) -> np.ndarray:
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"metric must be a 1-D array of one value per unit, got shape {values.shape}")
    return values


def normalize_minmax(metric: Any) -> np.ndarray:
    """``(x - min) / (max - min)`` over the finite values of a 1-D metric (NaN stays NaN;
    all NaN when the metric is constant or has no finite value)."""
    values = _as_metric(metric)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.max() == finite.min():
        return np.full_like(values, np.nan)
    return (values - finite.min()) / (finite.max() - finite.min())


def human_alpha(metric: Any, ratings: Any, scale_max: float = 4) -> float:
    """Agreement of a continuous metric with human ratings (the MaSC paper's protocol).

    The metric is min-max normalised over all units (``(x - min) / (max - min)``), the ratings
    are divided by ``scale_max``; for each rater group, the two-rater interval alpha of
    (normalised metric, group) is computed over the units both rated; the result is the mean
    over the groups whose alpha is defined.

    Args:
        metric: ``(n,)`` metric values; NaN marks a unit the metric could not score.
        ratings: ``(n,)`` for one group or ``(G, n)`` for ``G`` groups, values in
            ``[0, scale_max]``, NaN where a group did not rate the unit.
        scale_max: top of the rating scale (DreamBench++: 4).

    Returns:
        Mean interval alpha over groups; NaN when no group has two pairable units with
        some spread, or when the metric is constant.
    """
    x = _as_metric(metric)
    groups = _as_groups(ratings, len(x), scale_max)
    return float(HumanAlphaTerms(x, groups).evaluate(np.ones((1, len(x))))[0])


def human_vs_human_alpha(ratings: Any, scale_max: float = 4) -> float:
    """Interval alpha between rater groups (the human ceiling), ratings divided by ``scale_max``.

    Args:
        ratings: ``(G, n)`` with ``G >= 2`` groups, NaN where a group did not rate a unit.
            Two groups give the two-rater alpha; more groups give the multi-rater alpha
            (as DreamBench++'s ``kd_alpha`` computes over all groups).
        scale_max: top of the rating scale.

    Returns:
        Interval alpha over the units at least two groups rated; NaN when undefined.
    """
    return interval_alpha(_as_rater_groups(ratings, scale_max))


# --------------------------------------------------------------------------- identity AUC


def _as_identity(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    label = np.asarray(same)
    if s.ndim != 1 or label.shape != s.shape:
        raise ValueError(f"scores and same must be 1-D of equal length, got {s.shape} and {label.shape}")
    if label.dtype != bool:
        if not np.isin(label, (0, 1)).all():
            raise ValueError("same must be boolean (True for a same-subject pair)")
        label = label.astype(bool)
    return s, label


def identity_auc(scores: Any, same: Any) -> float:
    """P(same-subject score > cross-subject score), ties counted half (ROC AUC).

    Args:
        scores: ``(n,)`` similarity of each pair; NaN pairs are left out.
        same: ``(n,)`` bool, True for a same-subject pair.

    Returns:
        ``(#{s_i > c_j} + 0.5 #{s_i = c_j}) / (n_same n_cross)`` over same ``i`` and cross
        ``j`` -- equal to ``sklearn.metrics.roc_auc_score(same, scores)``; NaN when a class
        is empty.
    """
    s, label = _as_identity(scores, same)
    return float(AUCTerms(s, label).evaluate(np.ones((1, len(s))))[0])


# --------------------------------------------------------------------------- bootstrap


def _n_units(arrays: Sequence[np.ndarray]) -> int:
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    sizes = {np.shape(a)[-1] if np.ndim(a) else None for a in arrays}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"all arrays must have the same number of units on their last axis, got {sorted(map(str, sizes))}"
        )
    return sizes.pop()


def bootstrap_statistics(
    statistic_fn: Callable[..., float],
    *arrays: Any,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The statistic on each of ``n_resamples`` unit resamples: ``(n_resamples,)`` float64.

    Every array is indexed along its last axis (units) with the same resample indices.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    n = _n_units(arrays)
    stats = []
    for chunk in resample_chunks(n, int(n_resamples), seed):
        for idx in chunk:
            stats.append(float(statistic_fn(*(a[..., idx] for a in arrays))))
    return np.asarray(stats, dtype=np.float64)


def bootstrap_ci(
    statistic_fn: Callable[..., float],
    *arrays: Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic_fn(*arrays)``, resampling units.

    Each resample draws ``n`` unit indices with replacement (``numpy.random.default_rng(seed)``)
    and indexes every array along its last axis with them, so a ``(n,)`` metric and a
    ``(G, n)`` rating matrix are resampled together. Resamples where the statistic is NaN
    (e.g. no spread) are left out of the percentiles.

    Args:
        statistic_fn: called as ``statistic_fn(*resampled_arrays)``, returns a float.
        *arrays: arrays with the units on the last axis.
        n_resamples: number of bootstrap resamples ``B``.
        confidence: coverage of the interval, e.g. 0.95 for the 2.5 and 97.5 percentiles.
        seed: the same seed gives the same interval.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when no resample gives a finite statistic.

    This generic form calls ``statistic_fn`` once per resample; :func:`human_alpha_ci`,
    :func:`human_vs_human_alpha_ci` and :func:`identity_auc_ci` compute the same interval
    (same resamples) vectorised.
    """
    check_bootstrap(n_resamples, confidence)
    stats = bootstrap_statistics(statistic_fn, *arrays, n_resamples=n_resamples, seed=seed)
    return percentile_interval(stats, confidence)


def human_alpha_ci(
    metric: Any,
    ratings: Any,
    scale_max: float = 4,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI of :func:`human_alpha`, vectorised; equals
    ``bootstrap_ci(lambda m, r: human_alpha(m, r, scale_max), metric, ratings, ...)``.

    The min-max normalisation is redone on every resample, as in the point estimate.
    """
    x = _as_metric(metric)
    terms = HumanAlphaTerms(x, _as_groups(ratings, len(x), scale_max))
    return weighted_interval(terms.evaluate, len(x), n_resamples, confidence, seed, width=3)


def human_vs_human_alpha_ci(
    ratings: Any,
    scale_max: float = 4,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI of :func:`human_vs_human_alpha`, vectorised (same resamples as
    :func:`bootstrap_ci`)."""
    groups = _as_rater_groups(ratings, scale_max)
    terms = unit_terms(groups)

    def evaluate(weights: np.ndarray) -> np.ndarray:
        sums = weights @ terms
        return interval_alpha_from_sums(sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3])

    return weighted_interval(evaluate, groups.shape[1], n_resamples, confidence, seed, width=3)


def identity_auc_ci(
    scores: Any,
    same: Any,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI of :func:`identity_auc` resampling pairs, vectorised (same resamples
    as :func:`bootstrap_ci`)."""
    s, label = _as_identity(scores, same)
    return weighted_interval(AUCTerms(s, label).evaluate, len(s), n_resamples, confidence, seed, width=6)


# --------------------------------------------------------------------------- formatting


def format_estimate(value: float, low: float = math.nan, high: float = math.nan, digits: int = 2) -> str:
    """``"0.47 [0.44, 0.50]"``; ``"n/a"`` for a NaN value, no bracket when the CI is NaN.
    A value that rounds to zero prints without a sign (``"0.00"``, not ``"-0.00"``)."""

    def number(x: float) -> str:
        text = f"{x:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text

    if value is None or not math.isfinite(value):
        return "n/a"
    text = number(value)
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{number(low)}, {number(high)}]"
    return text


__all__ = [
    "LEVELS",
    "bootstrap_ci",
    "bootstrap_statistics",
    "format_estimate",
    "human_alpha",
    "human_alpha_ci",
    "human_vs_human_alpha",
    "human_vs_human_alpha_ci",
    "identity_auc",
    "identity_auc_ci",
    "interval_alpha",
    "krippendorff_alpha",
    "normalize_minmax",
]
