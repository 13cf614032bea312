"""Interval alpha and the Mann-Whitney AUC as weighted per-unit sums, evaluated for many
resample-count vectors at once (one matrix product a resample chunk).

The closed form of interval alpha is in :mod:`pytest_masc.stats.agreement`'s docstring. A
weight vector ``w`` ``(n,)`` counts how often each unit is in a resample (all ones: the
data themselves), so a ``(B, n)`` weight matrix evaluates ``B`` resamples together.
"""
from __future__ import annotations

import numpy as np


def interval_alpha_from_sums(n_values, within, s1, s2):
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


def unit_terms(values: np.ndarray) -> np.ndarray:
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


class HumanAlphaTerms:
    """Per-unit sums for the weighted (bootstrap) form of :func:`~pytest_masc.stats.agreement.human_alpha`.

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
                alpha = interval_alpha_from_sums(2.0 * n, within, sxn + sy, sxxn + syy)
                alpha = np.where((r > 0) & np.isfinite(r), alpha, np.nan)
                alphas.append(alpha)
        stacked = np.stack(alphas, axis=0)
        finite = np.isfinite(stacked)
        with np.errstate(invalid="ignore"):
            return np.where(finite.any(axis=0), np.where(finite, stacked, 0.0).sum(0) / finite.sum(0), np.nan)


class AUCTerms:
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


__all__ = ["AUCTerms", "HumanAlphaTerms", "interval_alpha_from_sums", "unit_terms"]
