"""Agreement statistics against independent references: Krippendorff's worked example, the
``krippendorff`` package, scikit-learn's ROC AUC, and bootstrap properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

krippendorff = pytest.importorskip("krippendorff")
from sklearn.metrics import roc_auc_score  # noqa: E402

from pytest_masc.stats import resample  # noqa: E402
from pytest_masc.stats.agreement import (  # noqa: E402
    bootstrap_ci,
    format_estimate,
    human_alpha,
    human_alpha_ci,
    human_vs_human_alpha,
    human_vs_human_alpha_ci,
    identity_auc,
    identity_auc_ci,
    interval_alpha,
    krippendorff_alpha,
    normalize_minmax,
)

NAN = math.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
# example with missing values (also the krippendorff package's doctest).
WORKED_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


def _ratings(rng, n_units, n_groups, missing=0.2, signal=None):
    """Integer ratings 0..4 (NaN where missing), optionally following ``signal`` in [0, 1]."""
    base = rng.uniform(0, 1, n_units) if signal is None else signal
    ratings = np.clip(np.round(4 * base + rng.normal(0, 0.8, (n_groups, n_units))), 0, 4)
    ratings[rng.random(ratings.shape) < missing] = np.nan
    return ratings


@pytest.mark.parametrize("level", sorted(PUBLISHED))
def test_worked_example_matches_published_alpha(level):
    assert round(krippendorff_alpha(WORKED_EXAMPLE, level), 3) == PUBLISHED[level]


def test_closed_form_interval_alpha_on_worked_example():
    assert interval_alpha(WORKED_EXAMPLE) == pytest.approx(krippendorff_alpha(WORKED_EXAMPLE, "interval"), abs=1e-12)
    assert round(interval_alpha(WORKED_EXAMPLE), 3) == PUBLISHED["interval"]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_alpha_equals_package_on_random_missing_data(seed, level):
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 6, size=(3, 40)).astype(float)
    data[rng.random(data.shape) < 0.3] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=5),
    st.integers(min_value=3, max_value=30),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_interval_closed_form_equals_package(n_raters, n_units, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_raters, n_units)).round(1)
    data[rng.random(data.shape) < 0.35] = np.nan
    expected = krippendorff_alpha(data, "interval")
    got = interval_alpha(data)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_krippendorff_alpha_undefined_and_invalid():
    assert math.isnan(krippendorff_alpha([[1, NAN, 3], [NAN, 2, NAN]]))  # no pairable unit
    assert math.isnan(krippendorff_alpha([[2, 2, 2], [2, 2, NAN]]))  # no spread
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(WORKED_EXAMPLE, "cardinal")
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha([1, 2, 3])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_groups", [1, 2, 3])
def test_human_alpha_equals_krippendorff_per_group_mean(seed, n_groups):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, 120)
    metric = 0.3 + 0.2 * signal + rng.normal(0, 0.05, 120)
    metric[rng.random(120) < 0.1] = np.nan
    ratings = _ratings(rng, 120, n_groups, signal=signal)
    normalized = normalize_minmax(metric)
    expected = np.mean([
        krippendorff.alpha(reliability_data=np.vstack([normalized, group / 4]), level_of_measurement="interval")
        for group in ratings
    ])
    assert human_alpha(metric, ratings) == pytest.approx(expected, abs=1e-12)
    if n_groups == 1:
        assert human_alpha(metric, ratings[0]) == pytest.approx(expected, abs=1e-12)


def test_human_alpha_scale_max_and_normalisation():
    rng = np.random.default_rng(3)
    ratings = rng.integers(0, 5, size=(2, 60)).astype(float)
    metric = ratings.mean(axis=0) + rng.normal(0, 0.3, 60)
    alpha = human_alpha(metric, ratings)
    # min-max normalisation: any increasing affine map of the metric gives the same alpha
    assert human_alpha(10 * metric - 3, ratings) == pytest.approx(alpha, abs=1e-12)
    # ratings on a 0..10 scale with scale_max=10 are the same ratings
    assert human_alpha(metric, ratings * 2.5, scale_max=10) == pytest.approx(alpha, abs=1e-12)
    # a metric equal to the (full-range) ratings agrees perfectly
    exact = np.array([0, 1, 2, 3, 4, 2, 1], dtype=float)
    assert human_alpha(exact, exact) == pytest.approx(1.0)
    assert human_alpha(-exact, exact) < 0


def test_human_alpha_undefined_and_invalid():
    ratings = np.array([0, 1, 2, 3, 4], dtype=float)
    assert math.isnan(human_alpha(np.ones(5), ratings))  # constant metric
    assert math.isnan(human_alpha(np.arange(5.0), np.full(5, np.nan)))  # nothing rated
    # a group that rated nothing is left out of the mean
    two = np.vstack([ratings, np.full(5, np.nan)])
    assert human_alpha(np.arange(5.0), two) == pytest.approx(human_alpha(np.arange(5.0), ratings))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        human_alpha(np.arange(5.0), ratings + 1)
    with pytest.raises(ValueError, match="units"):
        human_alpha(np.arange(4.0), ratings)
    with pytest.raises(ValueError, match="1-D"):
        human_alpha(np.ones((2, 5)), ratings)


@pytest.mark.parametrize("n_groups", [2, 3])
def test_human_vs_human_alpha_equals_krippendorff(n_groups):
    rng = np.random.default_rng(n_groups)
    ratings = _ratings(rng, 80, n_groups)
    expected = krippendorff.alpha(reliability_data=ratings / 4, level_of_measurement="interval")
    assert human_vs_human_alpha(ratings) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="2 groups"):
        human_vs_human_alpha(ratings[:1])


@pytest.mark.parametrize("seed", range(5))
def test_identity_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.4
    scores = rng.integers(0, 6, 300) + same * rng.integers(0, 2, 300)  # many ties
    assert identity_auc(scores, same) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert identity_auc(scores.astype(float) / 7, same.astype(int)) == pytest.approx(roc_auc_score(same, scores))


def test_identity_auc_edge_cases():
    assert identity_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert identity_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert identity_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    assert math.isnan(identity_auc([0.1, 0.2], [True, True]))
    scores = np.array([0.9, np.nan, 0.3, 0.4, np.nan, 0.8])
    same = np.array([True, True, False, False, False, True])
    finite = np.isfinite(scores)
    assert identity_auc(scores, same) == pytest.approx(roc_auc_score(same[finite], scores[finite]))
    with pytest.raises(ValueError, match="boolean"):
        identity_auc([0.1, 0.2], [2, 0])


def _alpha_problem(n_units, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0, 1, n_units)
    metric = signal + rng.normal(0, 0.25, n_units)
    return metric, _ratings(rng, n_units, 2, missing=0.1, signal=signal)


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    metric, ratings = _alpha_problem(300)
    value = human_alpha(metric, ratings)
    low, high = human_alpha_ci(metric, ratings, n_resamples=400, seed=7)
    assert low < value < high
    assert human_alpha_ci(metric, ratings, n_resamples=400, seed=7) == (low, high)
    assert human_alpha_ci(metric, ratings, n_resamples=400, seed=8) != (low, high)
    wider = human_alpha_ci(metric, ratings, n_resamples=400, seed=7, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high


def test_bootstrap_ci_narrows_with_more_units():
    small = human_alpha_ci(*_alpha_problem(100, seed=1), n_resamples=300)
    large = human_alpha_ci(*_alpha_problem(3000, seed=1), n_resamples=300)
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])


def test_vectorised_intervals_equal_generic_bootstrap():
    metric, ratings = _alpha_problem(150, seed=4)
    metric[3] = np.nan
    boot = dict(n_resamples=200, seed=11)
    generic = bootstrap_ci(lambda m, r: human_alpha(m, r), metric, ratings, **boot)
    assert human_alpha_ci(metric, ratings, **boot) == pytest.approx(generic, abs=1e-12)
    generic = bootstrap_ci(human_vs_human_alpha, ratings, **boot)
    assert human_vs_human_alpha_ci(ratings, **boot) == pytest.approx(generic, abs=1e-12)
    rng = np.random.default_rng(4)
    same = rng.random(150) < 0.5
    scores = np.round(rng.normal(same * 0.5, 1.0), 1)
    generic = bootstrap_ci(identity_auc, scores, same, **boot)
    low, high = identity_auc_ci(scores, same, **boot)
    assert (low, high) == pytest.approx(generic, abs=1e-12)
    assert low <= identity_auc(scores, same) <= high


def test_bootstrap_chunking_does_not_change_resamples(monkeypatch):
    metric, ratings = _alpha_problem(200, seed=5)
    whole = human_alpha_ci(metric, ratings, n_resamples=50, seed=3)
    monkeypatch.setattr(resample, "CHUNK_ELEMENTS", 1000)  # a few resamples per chunk
    # same resamples; only the matrix products' shapes (so BLAS's summation order) differ
    assert human_alpha_ci(metric, ratings, n_resamples=50, seed=3) == pytest.approx(whole, abs=1e-12)


def test_bootstrap_ci_validation():
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(np.mean, np.ones(5), n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(np.mean, np.ones(5), confidence=1.0)
    with pytest.raises(ValueError, match="same number of units"):
        bootstrap_ci(lambda a, b: 0.0, np.ones(5), np.ones(4))
    assert all(math.isnan(v) for v in bootstrap_ci(lambda a: math.nan, np.ones(5), n_resamples=10))


def test_vectorised_bootstrap_on_ten_thousand_units_equals_the_generic_one():
    """At the paper's scale the vectorised CI is still the generic bootstrap's and brackets
    the estimate. (No wall-clock bound: on a shared machine it fails for reasons of its own.)"""
    metric, ratings = _alpha_problem(10_000, seed=6)
    boot = dict(n_resamples=40, seed=2)
    low, high = human_alpha_ci(metric, ratings, **boot)
    generic = bootstrap_ci(lambda m, r: human_alpha(m, r), metric, ratings, **boot)
    assert (low, high) == pytest.approx(generic, abs=1e-12)
    assert low < human_alpha(metric, ratings) < high


def test_format_estimate():
    assert format_estimate(0.4712, 0.4391, 0.5049) == "0.47 [0.44, 0.50]"
    assert format_estimate(-0.054, -0.1, 0.0) == "-0.05 [-0.10, 0.00]"
    assert format_estimate(0.5) == "0.50"
    assert format_estimate(0.5, math.nan, math.nan) == "0.50"
    assert format_estimate(math.nan, 0.1, 0.2) == "n/a"
    assert format_estimate(0.12345, 0.1, 0.2, digits=3) == "0.123 [0.100, 0.200]"
    assert format_estimate(-0.001, -0.3, 0.004) == "0.00 [-0.30, 0.00]"
