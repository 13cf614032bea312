"""Agreement statistics: Krippendorff's alpha against human ratings, identity AUC, bootstrap CIs.

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

Only numpy is imported at module level; ``krippendorff`` is imported on first use.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np

LEVELS = ("nominal", "ordinal", "interval", "ratio")

#: Resample-count matrices are built in chunks of at most this many elements.
_CHUNK_ELEMENTS = 4_000_000


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


def _interval_alpha_from_sums(n_values, within, s1, s2):
    """Interval alpha from sums over pairable units (any shape; NaN where undefined).

    ``n_values``: number of pairable values ``N``; ``within``: ``sum_u 2 (m_u S2_u - S1_u^2)
    / (m_u - 1)``; ``s1``, ``s2``: sum and sum of squares of the pairable values.
    """
    n_values = np.asarray(n_values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = within / n_values
        expected = 2.0 * (s2 - s1 * s1 / n_values) / (n_values - 1.0)
        alpha = 1.0 - observed / expected
    # Round-off can leave a tiny positive expected disagreement for constant data.
    scale = np.maximum(np.abs(s2) / np.maximum(n_values, 1.0), 1e-300)
    undefined = (n_values < 2) | ~(expected > 1e-12 * scale)
    return np.where(undefined, np.nan, alpha)


def _unit_terms(values: np.ndarray) -> np.ndarray:
    """Per-unit closed-form terms of a ``(raters, n)`` array: ``(n, 4)`` columns
    ``[m_u, within_u, S1_u, S2_u]``, zero for units with fewer than two values."""
    finite = np.isfinite(values)
    m = finite.sum(axis=0).astype(np.float64)
    v = np.where(finite, values, 0.0)
    s1 = v.sum(axis=0)
    s2 = (v * v).sum(axis=0)
    pairable = m >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        within = np.where(pairable, 2.0 * (m * s2 - s1 * s1) / (m - 1.0), 0.0)
    within = np.maximum(within, 0.0)  # round-off on equal values
    terms = np.stack([m, within, s1, s2], axis=1)
    terms[~pairable] = 0.0
    return terms


def interval_alpha(data: Any) -> float:
    """Interval alpha of a ``raters x units`` array by the closed form (no ``krippendorff``).

    Equal to ``krippendorff_alpha(data, "interval")``; fast on large arrays.
    """
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"data must be a 2-D raters x units array, got shape {values.shape}")
    total = _unit_terms(values).sum(axis=0)
    return float(_interval_alpha_from_sums(total[0], total[1], total[2], total[3]))


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


def _as_metric(metric: Any) -> np.ndarray:
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"metric must be a 1-D array of one value per unit, got shape {values.shape}")
    return values


class _HumanAlphaTerms:
    """Per-unit sums for the weighted (bootstrap) form of :func:`human_alpha`.

    With ``x`` the raw metric, ``lo``/``hi`` its min/max over the (resampled) units and
    ``y`` a group's ratings divided by ``scale_max``, the normalised metric is
    ``x' = (x - lo) / r`` with ``r = hi - lo``. Over the units a group and the metric both
    rated (weights ``w``), the two-rater sums expand to weighted sums of
    ``1, x, x^2, y, y^2, x y``, so each resample needs one matrix product.
    """

    def __init__(self, metric: np.ndarray, groups: np.ndarray):
        self.metric = metric
        finite_x = np.isfinite(metric)
        self.lo_source = np.where(finite_x, metric, np.inf)
        self.hi_source = np.where(finite_x, metric, -np.inf)
        columns = []
        for y in groups:
            both = finite_x & np.isfinite(y)
            x0 = np.where(both, metric, 0.0)
            y0 = np.where(both, y, 0.0)
            columns.append(np.stack([both.astype(np.float64), x0, x0 * x0, y0, y0 * y0, x0 * y0], axis=1))
        self.columns = np.concatenate(columns, axis=1) if columns else np.zeros((len(metric), 0))
        self.n_groups = len(groups)

    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        """Human alpha for each row of ``weights`` ``(B, n)`` (unit multiplicities)."""
        present = weights > 0
        lo = np.where(present, self.lo_source, np.inf).min(axis=1)
        hi = np.where(present, self.hi_source, -np.inf).max(axis=1)
        r = hi - lo
        sums = weights @ self.columns  # (B, 6 G)
        alphas = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for g in range(self.n_groups):
                n, sx, sxx, sy, syy, sxy = (sums[:, 6 * g + k] for k in range(6))
                # normalised metric sums
                sxn = (sx - lo * n) / r
                sxxn = (sxx - 2 * lo * sx + lo * lo * n) / (r * r)
                sxyn = (sxy - lo * sy) / r
                within = 2.0 * (sxxn - 2.0 * sxyn + syy)
                alpha = _interval_alpha_from_sums(2.0 * n, within, sxn + sy, sxxn + syy)
                alpha = np.where((r > 0) & np.isfinite(r), alpha, np.nan)
                alphas.append(alpha)
        stacked = np.stack(alphas, axis=0)
        finite = np.isfinite(stacked)
        with np.errstate(invalid="ignore"):
            return np.where(finite.any(axis=0), np.where(finite, stacked, 0.0).sum(0) / finite.sum(0), np.nan)


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
    return float(_HumanAlphaTerms(x, groups).evaluate(np.ones((1, len(x))))[0])


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
    groups = np.asarray(ratings, dtype=np.float64)
    if groups.ndim != 2 or groups.shape[0] < 2:
        raise ValueError(f"ratings must be a groups x units array with at least 2 groups, got shape {groups.shape}")
    values = _as_groups(groups, groups.shape[1], scale_max)
    return interval_alpha(values)


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


class _AUCTerms:
    """Weighted Mann-Whitney AUC with ties counted half, for resample-count matrices.

    Units are sorted by score once; for a same-subject unit ``i`` the weighted number of
    cross-subject units below it and tied with it come from a cumulative sum over the
    sorted cross weights, taken at the borders of ``i``'s tie group.
    """

    def __init__(self, scores: np.ndarray, same: np.ndarray):
        keep = np.isfinite(scores)
        self.keep = keep
        order = np.argsort(np.where(keep, scores, np.inf), kind="stable")
        self.order = order[: int(keep.sum())]
        sorted_scores = scores[self.order]
        starts = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]] if len(sorted_scores) else np.zeros(0, bool)
        group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        last = np.r_[first[1:], len(sorted_scores)]
        self.first = first[group]  # per sorted unit: index where its tie group starts
        self.last = last[group]  # ... and ends (exclusive)
        self.same_sorted = same[self.order]

    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        w = weights[:, self.order]
        w_same = np.where(self.same_sorted, w, 0.0)
        w_cross = w - w_same
        cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w_cross, axis=1)], axis=1)
        below = cum[:, self.first]
        tied = cum[:, self.last] - below
        wins = (w_same * (below + 0.5 * tied)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = wins / (w_same.sum(axis=1) * w_cross.sum(axis=1))
        return np.where(np.isfinite(auc), auc, np.nan)


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
    return float(_AUCTerms(s, label).evaluate(np.ones((1, len(s))))[0])


# --------------------------------------------------------------------------- bootstrap


def _resample_chunks(n_units: int, n_resamples: int, seed: int, width: int = 1) -> Iterator[np.ndarray]:
    """Resample index chunks ``(b, n_units)``: all chunks together are ``n_resamples`` rows,
    drawn from ``numpy.random.default_rng(seed)`` in order (so chunking never changes them)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, n_units * width))
    done = 0
    while done < n_resamples:
        size = min(per_chunk, n_resamples - done)
        yield rng.integers(0, n_units, size=(size, n_units))
        done += size


def _counts(indices: np.ndarray, n_units: int) -> np.ndarray:
    """Multiplicity of each unit in each resample: ``(b, n)`` float64 from ``(b, n)`` indices."""
    b = len(indices)
    offsets = (np.arange(b) * n_units)[:, None]
    return np.bincount((indices + offsets).ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.float64)


def _check_bootstrap(n_resamples: int, confidence: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


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
    for chunk in _resample_chunks(n, int(n_resamples), seed):
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
    _check_bootstrap(n_resamples, confidence)
    stats = bootstrap_statistics(statistic_fn, *arrays, n_resamples=n_resamples, seed=seed)
    return _percentile_interval(stats, confidence)


def _weighted_bootstrap(evaluate: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int, seed: int,
                        width: int) -> np.ndarray:
    stats = [evaluate(_counts(chunk, n)) for chunk in _resample_chunks(n, int(n_resamples), seed, width)]
    return np.concatenate(stats) if stats else np.zeros(0)


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
    _check_bootstrap(n_resamples, confidence)
    x = _as_metric(metric)
    groups = _as_groups(ratings, len(x), scale_max)
    terms = _HumanAlphaTerms(x, groups)
    stats = _weighted_bootstrap(terms.evaluate, len(x), n_resamples, seed, width=3)
    return _percentile_interval(stats, confidence)


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
    _check_bootstrap(n_resamples, confidence)
    groups = np.asarray(ratings, dtype=np.float64)
    if groups.ndim != 2 or groups.shape[0] < 2:
        raise ValueError(f"ratings must be a groups x units array with at least 2 groups, got shape {groups.shape}")
    terms = _unit_terms(_as_groups(groups, groups.shape[1], scale_max))

    def evaluate(weights: np.ndarray) -> np.ndarray:
        sums = weights @ terms
        return _interval_alpha_from_sums(sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3])

    stats = _weighted_bootstrap(evaluate, groups.shape[1], n_resamples, seed, width=3)
    return _percentile_interval(stats, confidence)


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
    _check_bootstrap(n_resamples, confidence)
    s, label = _as_identity(scores, same)
    terms = _AUCTerms(s, label)
    stats = _weighted_bootstrap(terms.evaluate, len(s), n_resamples, seed, width=6)
    return _percentile_interval(stats, confidence)


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
