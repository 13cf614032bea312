"""Release comparisons that tell a regression from sampling noise, and how many cases to run.

Input: one *case table* per release, a mapping of equal-length columns (a ``dict`` of lists or
arrays, or a ``pandas.DataFrame``): ``suite``, ``concept``, ``case_id``, optional ``seed``
(absent: one seed per case) and one score column per metric (``CP``, ``PF``); NaN, None or inf
is a missing score. A case is ``(suite, concept, case_id)``, a *row* ``(suite, concept, metric)``.

Each side of a case is averaged over its finite seeds (:math:`S_a`, :math:`S_b`); the case delta
:math:`d_c = \\bar a_c - \\bar b_c` equals the mean of per-seed differences :math:`\\frac1{|S|}\\sum_s (a_{cs} - b_{cs})` when both sides
hold the same seeds :math:`S`; unequal seed sets keep every seed of each side (the case counts in
``n_unequal_seeds``). A case with no finite score on one side leaves the row and counts in
``n_excluded``; a case on one side only counts in ``n_unpaired``. Per row, over ``n`` cases:
:math:`\\hat\\delta = \\bar d`, ``sd`` :math:`s` (``ddof=1``), :math:`se = s/\\sqrt n`, :math:`t = \\hat\\delta/se`.

Interval ``[low, high]``: studentized (bootstrap-t) case bootstrap; a resample draws ``n`` cases
with replacement (seeds stay with their case) and gives :math:`T^* = (\\hat\\delta^* - \\hat\\delta)/se^*`;
with :math:`q_p` its ``p`` quantile and :math:`\\alpha = 1 - \\text{confidence}`:
:math:`[\\hat\\delta - q_{1-\\alpha/2}\\, se,\\ \\hat\\delta - q_{\\alpha/2}\\, se]`. Under 8 cases (or
where a quantile is infinite) the paired t interval :math:`\\hat\\delta \\pm t_{n-1, \\alpha/2}\\, se` instead.

Drop test: :math:`p = P(T_{n-1} \\le t)` (one-sided paired t on case deltas: the upper bound
:math:`\\hat\\delta + t_{n-1,a}\\, se` is below 0 iff :math:`p < a`), Holm-adjusted over all ``m`` rows
(:func:`holm_adjust`). Holm levels reach :math:`\\alpha/m` (1.7e-4 for 300 rows): resampling 10-20
cases cannot resolve such tails (a bootstrap-t test lost 3-21 points of power at 10-30 cases, measured);
with no true change the deltas are symmetric (both releases draw alike) and the t test is exact
for normal and conservative for heavier symmetric tails.

Verdict (:func:`decide`): ``regressed`` when :math:`\\tilde p \\le \\alpha` and :math:`-\\hat\\delta >`
``max_drop`` (fails the session); else ``non-inferior`` when ``low > -max_drop``; else ``inconclusive``
(fails with ``require_noninferior``). Under 2 cases: ``p = 1``, NaN bounds; all deltas equal (sd <=
1e-12): ``low = high = delta``, ``p`` 0 (drop) or 1. Sizes: :mod:`pytest_masc.stats.planning`.
numpy and the standard library only (pandas on ``frame()``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas

METRICS = ("CP", "PF")
KEY_COLUMNS = ("suite", "concept", "case_id")
VERDICTS = ("regressed", "non-inferior", "inconclusive")
DECISION_POWER = 0.8  #: power at which ``cases_needed`` decides an inconclusive row
_CHUNK_ELEMENTS, _ZERO_SD = 2_000_000, 1e-12  # resampled values per chunk; sd below this: all deltas equal
_MIN_BOOTSTRAP_CASES = 8  # fewer: paired t interval (n draws of one case, chance n^(1-n), give T* = inf)
_NORMAL = NormalDist()
_HERMITE = np.polynomial.hermite_e.hermegauss(32)  # nodes, weights for E over N(0, 1) (x sqrt(2 pi))


# --------------------------------------------------------------------------- input


@dataclass
class _Side:
    """One table: ``case``/``seed`` codes ``(rows,)``, shared by the tables read together; ``scores`` ``(rows, M)``."""

    case: np.ndarray
    seed: np.ndarray
    scores: np.ndarray


def _dense(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int64).ravel(), uniques


def _column(table: Mapping[str, Any], name: str, side: str, length: Optional[int]) -> np.ndarray:
    try:
        values = np.asarray(table[name])
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{side}: no {name!r} column (has {sorted(map(str, table))})") from None
    if values.ndim != 1 or (length is not None and len(values) != length):
        raise ValueError(f"{side}: column {name!r} must be 1-D with {length} values, got shape {values.shape}")
    return values


def _read(tables: Sequence[tuple[str, Mapping[str, Any]]], metrics: Sequence[str]):
    """``(sides, (suite, concept) labels per concept code, concept code per case code, seed count)``."""
    keys, scores = [], []
    for side, table in tables:
        length = len(_column(table, "case_id", side, None))
        keys.append([_column(table, name, side, length).astype(str) for name in KEY_COLUMNS]
                    + [_column(table, "seed", side, length).astype(str) if "seed" in table else np.zeros(length, str)])
        try:
            scores.append(np.stack([_column(table, m, side, length).astype(np.float64) for m in metrics], axis=1))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{side}: score columns {list(metrics)} must hold numbers: {error}") from None
    codes, uniques = zip(*(_dense(np.concatenate([k[i] for k in keys])) for i in range(4)))
    concept, concept_ids = _dense(codes[0] * len(uniques[1]) + codes[1])
    case, case_ids = _dense(concept * len(uniques[2]) + codes[2])
    if not len(case_ids):
        raise ValueError(f"{' and '.join(side for side, _ in tables)}: no cases")
    labels = (uniques[0][concept_ids // len(uniques[1])], uniques[1][concept_ids % len(uniques[1])])
    concept_of_case = np.empty(len(case_ids), np.int64)
    concept_of_case[case] = concept
    sides, start, n_seeds = [], 0, len(uniques[3])
    for (side, _), values in zip(tables, scores):
        parsed = _Side(case[start:start + len(values)], codes[3][start:start + len(values)], values)
        pairs, counts = np.unique(parsed.case * n_seeds + parsed.seed, return_counts=True)
        if (counts > 1).any():
            c, s = divmod(int(pairs[counts > 1][0]), n_seeds)
            raise ValueError(f"{side}: case {str(uniques[2][case_ids[c] % len(uniques[2])])!r} of "
                             f"{labels[0][concept_of_case[c]]}::{labels[1][concept_of_case[c]]} "
                             f"has seed {str(uniques[3][s])!r} more than once")
        sides.append(parsed)
        start += len(values)
    return sides, labels, concept_of_case, n_seeds


def _per_case(side: _Side, n_cases: int, metric: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the finite scores of each case: two ``(n_cases,)`` arrays."""
    values = side.scores[:, metric]
    finite = np.isfinite(values)
    total = np.bincount(side.case, weights=np.where(finite, values, 0.0), minlength=n_cases)
    return total, np.bincount(side.case, weights=finite, minlength=n_cases)


@dataclass
class _Rows:
    """Row labels and counts ``(R,)``; case deltas ``values`` contiguous per row, ``sizes[r]`` of them."""

    suite: np.ndarray
    concept: np.ndarray
    metric: np.ndarray
    values: np.ndarray
    sizes: np.ndarray
    excluded: np.ndarray
    unpaired: np.ndarray
    unequal: np.ndarray
    seeds: np.ndarray


def _paired_rows(before: Mapping[str, Any], after: Mapping[str, Any], metrics: Sequence[str]) -> _Rows:
    """Case deltas ``d_c`` (module doc) per ``(suite, concept, metric)`` row."""
    (old, new), labels, concept_of_case, n_seeds = _read([("before", before), ("after", after)], metrics)
    n_cases, n_metrics, n_rows = len(concept_of_case), len(metrics), len(labels[0]) * len(metrics)
    on_old, on_new = (np.bincount(s.case, minlength=n_cases) > 0 for s in (old, new))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "value", "excluded", "unequal", "seeds")}
    for m in range(n_metrics):
        (sum_old, cnt_old), (sum_new, cnt_new) = _per_case(old, n_cases, m), _per_case(new, n_cases, m)
        valid = on_old & on_new & (cnt_old > 0) & (cnt_new > 0)
        finite = [np.isfinite(s.scores[:, m]) for s in (old, new)]
        shared = np.intersect1d(*((s.case * n_seeds + s.seed)[f] for s, f in zip((old, new), finite)), assume_unique=True)
        common = np.bincount(shared // n_seeds, minlength=n_cases)
        row = concept_of_case * n_metrics + m
        with np.errstate(divide="ignore", invalid="ignore"):
            parts["value"].append((sum_new / cnt_new - sum_old / cnt_old)[valid])
        parts["row"].append(row[valid])
        parts["excluded"].append(row[on_old & on_new & ~valid])
        parts["unequal"].append(row[valid & ((cnt_old != common) | (cnt_new != common))])
        parts["seeds"].append(cnt_new[valid])
    row = np.concatenate(parts["row"])
    sizes = np.bincount(row, minlength=n_rows)
    count = {k: np.bincount(np.concatenate(parts[k]), minlength=n_rows) for k in ("excluded", "unequal")}
    with np.errstate(invalid="ignore"):
        seeds = np.bincount(row, weights=np.concatenate(parts["seeds"]), minlength=n_rows) / sizes
    return _Rows(
        suite=np.repeat(labels[0], n_metrics), concept=np.repeat(labels[1], n_metrics),
        metric=np.tile(np.asarray(metrics, dtype=str), len(labels[0])),
        values=np.concatenate(parts["value"])[np.argsort(row, kind="stable")], sizes=sizes, seeds=seeds,
        unpaired=np.repeat(np.bincount(concept_of_case[on_old ^ on_new], minlength=len(labels[0])), n_metrics),
        **count,
    )


# --------------------------------------------------------------------------- tests and intervals


def _studentized(centered: np.ndarray, sizes: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """:math:`T^*` ``(n_resamples, R)`` for rows of ``sizes`` (each >= 2) laid out contiguously in
    ``centered`` (each row's deltas minus the row mean): every row resamples its own cases."""
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offset, size, n = np.repeat(starts, sizes), np.repeat(sizes, sizes).astype(np.float64), sizes.astype(np.float64)
    per_chunk, chunks = max(1, _CHUNK_ELEMENTS // max(1, len(centered))), []
    for done in range(0, n_resamples, per_chunk):
        uniform = rng.random((min(per_chunk, n_resamples - done), len(centered)))
        draws = centered[offset + (uniform * size).astype(np.int64)]
        s1 = np.add.reduceat(draws, starts, axis=1)
        var = np.maximum(np.add.reduceat(draws * draws, starts, axis=1) - s1 * s1 / n, 0.0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = s1 / n / np.sqrt(var / n)
        chunks.append(np.where(np.isnan(t), 0.0, t))  # 0/0: one case drawn n times, equal to the mean
    return np.concatenate(chunks)


def _estimates(rows: _Rows, confidence: float, n_resamples: int, seed: int):
    """Per row: ``delta, sd, low, high, p`` (``(R,)`` each), see the module doc."""
    sizes, alpha = rows.sizes, 1.0 - confidence
    row_of = np.repeat(np.arange(len(sizes)), sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.bincount(row_of, weights=rows.values, minlength=len(sizes)) / sizes
        centered = rows.values - delta[row_of]
        sd = np.sqrt(np.bincount(row_of, weights=centered ** 2, minlength=len(sizes)) / (sizes - 1))
    flat = (sizes >= 2) & (sd <= _ZERO_SD)
    tested = (sizes >= 2) & ~flat
    low, high = np.where(flat, delta, np.nan), np.where(flat, delta, np.nan)
    p = np.where(flat & (delta < 0), 0.0, 1.0)
    if tested.any():
        t_star = _studentized(centered[np.repeat(tested, sizes)], sizes[tested], n_resamples, seed)
        se = sd[tested] / np.sqrt(sizes[tested])
        low[tested] = delta[tested] - np.quantile(t_star, 1 - alpha / 2, axis=0, method="higher") * se
        high[tested] = delta[tested] - np.quantile(t_star, alpha / 2, axis=0, method="lower") * se
        for r, t, error in zip(np.flatnonzero(tested), delta[tested] / se, se):
            p[r] = t_sf(-t, int(sizes[r]) - 1) if t < 0 else 1.0 - t_sf(t, int(sizes[r]) - 1)
            if sizes[r] < _MIN_BOOTSTRAP_CASES or not (np.isfinite(low[r]) and np.isfinite(high[r])):
                half = t_quantile(alpha / 2, int(sizes[r]) - 1) * error  # the paired t interval
                low[r], high[r] = delta[r] - half, delta[r] + half
    return delta, sd, low, high, p


def holm_adjust(p_values: Any) -> np.ndarray:
    """Holm step-down adjusted p-values :math:`\\tilde p_{(j)} = \\max_{i \\le j} \\min(1,
    (m - i + 1) p_{(i)})`, in the input order; reject row ``i`` at level ``alpha`` when
    ``adjusted[i] <= alpha`` (family-wise error ``<= alpha``)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled) if len(p) else scaled
    return adjusted


def decide(delta: Any, low: Any, adjusted_p: Any, *, max_drop: float, alpha: float) -> np.ndarray:
    """Verdicts (module doc): ``regressed`` iff ``adjusted_p <= alpha`` and ``-delta > max_drop``;
    else ``non-inferior`` iff ``low > -max_drop``; else ``inconclusive``. NaN never decides."""
    delta, low, adjusted_p = (np.asarray(x, dtype=np.float64) for x in (delta, low, adjusted_p))
    regressed = (adjusted_p <= alpha) & (-delta > max_drop)
    return np.where(regressed, VERDICTS[0], np.where(low > -max_drop, VERDICTS[1], VERDICTS[2]))


# --------------------------------------------------------------------------- sizes


def t_sf(t: float, df: int) -> float:
    """:math:`P(T_{df} > t)`, integer ``df >= 1``, ``t >= 0``: finite sums (Abramowitz & Stegun 26.7.3-4),
    absolute error below 1e-12 (measured to ``df = 1e5``)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 0:
        j = np.arange(1, df // 2)
        inside = s * (1.0 + np.sum(np.cumprod((2 * j - 1) / (2 * j)) * c2 ** j))
    else:
        j = np.arange(1, (df - 1) // 2)
        terms = 1.0 + np.sum(np.cumprod(2 * j / (2 * j + 1.0)) * c2 ** j) if df > 1 else 0.0
        inside = 2 / math.pi * (theta + s * math.cos(theta) * terms)
    return max(0.0, (1.0 - inside) / 2.0)


def t_quantile(tail: float, df: float) -> float:
    """``t`` with :math:`P(T_{df} > t) = \\text{tail}` (``0 < tail <= 0.5``): Cornish-Fisher start,
    then Newton steps on the exact :func:`t_sf` for ``df <= 200``."""
    z = _NORMAL.inv_cdf(1.0 - tail)
    t = z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2) \
        + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3)
    if df > 200:
        return t
    df = int(df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    for _ in range(50):
        density = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (t_sf(t, df) - tail) / density
        t = max(t + step, t / 2)
        if abs(step) < 1e-10 * max(1.0, t):
            break
    return t


def detection_power(n: int, drop: float, sd: float, level: float, excess: float = math.inf) -> float:
    """Chance that ``n`` normal case deltas (sd ``sd``, true ``drop`` > 0) show the drop at one-sided
    ``level`` (:math:`-\\hat\\delta > t\\, s/\\sqrt n`, :math:`t = t_{\\nu, level}`, :math:`\\nu = n - 1`) *and*
    :math:`-\\hat\\delta > \\Delta - \\text{excess}`. With :math:`\\hat\\delta` and :math:`s` independent and
    :math:`s/\\sigma = (1 - c + z\\sqrt c)^{3/2}`, :math:`c = 2/9\\nu`, :math:`z \\sim N(0, 1)` (Wilson-Hilferty):

    .. math::

        P = E_z\\big[\\Phi\\big(\\min(\\text{excess}\\sqrt n/\\sigma,\\;
            \\Delta\\sqrt n/\\sigma - t\\, s/\\sigma)\\big)\\big]

    by Gauss-Hermite quadrature over :math:`z`."""
    if n < 2 or drop <= 0 or excess <= 0:
        return 0.0
    if sd <= 0:
        return 1.0
    t, root, c = t_quantile(level, n - 1), math.sqrt(n) / sd, 2.0 / (9.0 * (n - 1))
    ratio = np.maximum(1.0 - c + _HERMITE[0] * math.sqrt(c), 0.0) ** 1.5
    bound = np.minimum(excess * root, drop * root - t * ratio) / math.sqrt(2.0)
    return float(np.dot(_HERMITE[1], [1.0 + math.erf(x) for x in bound]) / (2.0 * math.sqrt(2.0 * math.pi)))


def cases_for_power(drop: float, sd: float, level: float, excess: float = math.inf, power: float = 0.8,
                    limit: int = 10 ** 9) -> Optional[int]:
    """Fewest cases (>= 2) with :func:`detection_power` >= ``power``; None when no number up to
    ``limit`` does (e.g. ``drop <= 0`` or ``excess <= 0``). Searched from the normal-theory size
    :math:`((z_{level} + z_{power})\\, \\sigma/\\Delta)^2`."""
    def enough(n: int) -> bool:
        return detection_power(n, drop, sd, level, excess) >= power

    if not enough(limit):
        return None
    z = _NORMAL.inv_cdf(power)
    guess = ((_NORMAL.inv_cdf(1 - level) + z) * sd / drop) ** 2 if drop > 0 else limit
    guess = max(guess, (z * sd / excess) ** 2 if 0 < excess < math.inf else 0.0)
    low, high = max(1, int(guess * 0.8)), min(limit, int(guess * 1.25) + 4)  # power(low) < target <= power(high)
    while low > 1 and enough(low):
        low, high = max(1, low // 2), low
    while not enough(high):
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return max(high, 2)


# --------------------------------------------------------------------------- results


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


class _Table:
    """``frame()``: a pandas row per entry of the field named ``_table``; ``as_dict()``: all, JSON-safe."""

    _table, _integers = "rows", ("cases_needed",)

    def frame(self) -> "pandas.DataFrame":
        import pandas as pd

        frame = pd.DataFrame([asdict(row) for row in getattr(self, self._table)])
        return frame.astype({c: "Int64" for c in self._integers if c in frame})

    def as_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class RowComparison:
    """One row (module doc). ``cases_needed`` (inconclusive rows): cases at ``seeds`` seeds each
    that would decide it with power :data:`DECISION_POWER` at the observed ``sd``; ``failed``: fails the session;
    ``note``: why the verdict was changed after the test (empty when it was not)."""

    suite: str
    concept: str
    metric: str
    n_cases: int
    delta: float
    low: float
    high: float
    p_value: float
    adjusted_p: float
    verdict: str
    cases_needed: Optional[int]
    failed: bool
    sd: float
    seeds: float
    n_excluded: int
    n_unpaired: int
    n_unequal_seeds: int
    note: str = ""  # why a verdict was changed after the test (the metric-drift canary)


@dataclass(frozen=True)
class ReleaseComparison(_Table):
    """All rows of one release pair and the settings; ``failed`` when a row failed."""

    rows: tuple[RowComparison, ...]
    max_drop: float
    confidence: float
    n_resamples: int
    seed: int
    require_noninferior: bool

    @property
    def failed(self) -> bool:
        return any(row.failed for row in self.rows)

    def with_verdict(self, verdict: str) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict == verdict]


def _check(max_drop: float, confidence: float, n_resamples: int) -> None:
    if not max_drop >= 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")


def _cases_needed(delta: float, sd: float, n: int, max_drop: float, alpha: float, m: int) -> Optional[int]:
    """An inconclusive row's cases: for non-inferiority (``low > -max_drop``, one-sided ``alpha/2``)
    when ``delta > -max_drop``, else for ``regressed`` at Holm's first level ``alpha/m``."""
    if n < 2 or not math.isfinite(sd):
        return None
    if delta > -max_drop:
        return cases_for_power(delta + max_drop, sd, alpha / 2, power=DECISION_POWER)
    return cases_for_power(-delta, sd, alpha / m, -delta - max_drop, power=DECISION_POWER)


def compare_cases(before: Mapping[str, Any], after: Mapping[str, Any], *, metrics: Sequence[str] = METRICS,
                  max_drop: float = 0.02, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                  require_noninferior: bool = False) -> ReleaseComparison:
    """Compare two releases' case tables (module doc) row by row: a :class:`ReleaseComparison` with
    rows sorted by suite, concept, then ``metrics`` order.

    Args:
        before, after: case tables: ``suite``, ``concept``, ``case_id``, optional ``seed``, and
            one score column per entry of ``metrics``.
        max_drop: the drop in score units a release may show.
        confidence: ``1 - alpha``: family-wise level of ``regressed`` over all rows (one-sided)
            and coverage of ``[low, high]`` (two-sided).
        n_resamples: bootstrap resamples ``B`` for ``[low, high]``.
        seed: for ``numpy.random.default_rng``: the same inputs and seed give the same result.
        require_noninferior: inconclusive rows fail too.
    """
    _check(max_drop, confidence, n_resamples)
    rows = _paired_rows(before, after, metrics)
    delta, sd, low, high, p = _estimates(rows, confidence, int(n_resamples), seed)
    alpha, m = 1.0 - confidence, len(p)
    adjusted = holm_adjust(p)
    verdict = decide(delta, low, adjusted, max_drop=max_drop, alpha=alpha)
    result = []
    for r in range(m):
        n, inconclusive = int(rows.sizes[r]), verdict[r] == VERDICTS[2]
        result.append(RowComparison(
            str(rows.suite[r]), str(rows.concept[r]), str(rows.metric[r]), n, float(delta[r]), float(low[r]),
            float(high[r]), float(p[r]), float(adjusted[r]), str(verdict[r]),
            _cases_needed(delta[r], sd[r], n, max_drop, alpha, m) if inconclusive else None,
            bool(verdict[r] == VERDICTS[0] or (require_noninferior and inconclusive)), float(sd[r]),
            float(rows.seeds[r]), int(rows.excluded[r]), int(rows.unpaired[r]), int(rows.unequal[r]),
        ))
    return ReleaseComparison(tuple(result), max_drop, confidence, int(n_resamples), seed, require_noninferior)


__all__ = ["DECISION_POWER", "KEY_COLUMNS", "METRICS", "VERDICTS", "ReleaseComparison", "RowComparison",
           "cases_for_power", "compare_cases", "decide", "detection_power", "holm_adjust", "t_quantile", "t_sf"]
