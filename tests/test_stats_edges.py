"""Agreement statistics at their edges (issue #20): data with no spread has no alpha, even
when float round-off leaves a tiny positive expected disagreement."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_masc.stats.agreement import interval_alpha, krippendorff_alpha


@pytest.mark.parametrize("value", [0.1, 0.7, 1 / 3, 2.2, 3.7])
@pytest.mark.parametrize("shape", [(2, 3), (3, 5), (2, 7)])
def test_constant_ratings_have_no_alpha(value, shape):
    ratings = np.full(shape, value)
    assert math.isnan(interval_alpha(ratings))
    assert math.isnan(krippendorff_alpha(ratings, "interval"))


def test_a_single_pairable_value_per_unit_has_no_alpha():
    ratings = np.array([[1.0, np.nan, 3.0], [np.nan, 2.0, np.nan]])
    assert math.isnan(interval_alpha(ratings))
    assert interval_alpha(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])) == 1.0


@pytest.mark.parametrize("ratings", [[[1.0, 2.0, 3.0]], [1.0, 2.0, 3.0], [[[1.0, 2.0]], [[3.0, 4.0]]]])
def test_human_vs_human_alpha_needs_a_groups_by_units_array_of_two_groups(ratings):
    from pytest_masc.stats.agreement import human_vs_human_alpha, human_vs_human_alpha_ci
    for function in (human_vs_human_alpha, human_vs_human_alpha_ci):
        with pytest.raises(ValueError, match=r"ratings must be a groups x units array with at least 2 groups, got shape"):
            function(ratings)


@pytest.mark.parametrize("df", [201, 250])
@pytest.mark.parametrize("tail", [0.025, 0.05, 0.2])
def test_the_t_quantile_series_above_200_degrees_of_freedom_is_accurate_to_1e_9(df, tail):
    """Above 200 degrees of freedom the quantile is the Cornish-Fisher series alone (no Newton
    steps): its third-order term is what brings it within 1e-9 of the exact quantile."""
    from scipy import stats
    from pytest_masc.stats.compare import t_quantile
    assert t_quantile(tail, df) == pytest.approx(stats.t.isf(tail, df), rel=1e-9)


def test_an_inconclusive_row_near_zero_needs_the_cases_to_show_non_inferiority():
    """Deltas around 0 with max_drop 0.02: inconclusive, and the cases needed to show
    ``low > -max_drop`` are about the normal-theory ``((z_{alpha/2} + z_power) sd / (delta + max_drop))^2``."""
    from statistics import NormalDist
    from pytest_masc.stats.compare import DECISION_POWER, compare_cases
    deltas = np.array([0.05, -0.05, 0.05, -0.05, 0.03, -0.03])
    cases = [f"p{i}" for i in range(len(deltas))]
    before = {"suite": ["s"] * 6, "concept": ["a"] * 6, "case_id": cases, "CP": [0.5] * 6}
    after = {**before, "CP": list(0.5 + deltas)}
    row = compare_cases(before, after, metrics=("CP",), max_drop=0.02).rows[0]
    assert row.verdict == "inconclusive" and abs(row.delta) < 1e-12
    z = NormalDist().inv_cdf
    approx = ((z(1 - 0.05 / 2) + z(DECISION_POWER)) * row.sd / (row.delta + 0.02)) ** 2
    assert row.cases_needed is not None and 0.8 * approx < row.cases_needed < 1.4 * approx


def test_two_cases_can_already_show_a_large_drop():
    from pytest_masc.stats.compare import detection_power
    assert detection_power(2, drop=1.0, sd=0.05, level=0.05) > 0.5
    assert detection_power(1, drop=1.0, sd=0.05, level=0.05) == 0.0


def test_a_release_comparison_as_a_dict_is_plain_json():
    """A concept of one case has no interval (NaN): as_dict gives None there, so strict JSON works."""
    import json
    from pytest_masc.stats.compare import compare_cases
    before = {"suite": ["s"] * 4, "concept": ["a", "a", "a", "b"], "case_id": ["p0", "p1", "p2", "q0"],
              "CP": [0.5, 0.5, 0.5, 0.5]}
    after = {**before, "CP": [0.25, 0.5, 0.75, 0.5]}
    plain = compare_cases(before, after, metrics=("CP",), n_resamples=50).as_dict()
    rows = json.loads(json.dumps(plain, allow_nan=False))["rows"]
    assert [row["concept"] for row in rows] == ["a", "b"] and rows[1]["low"] is None


def test_the_bootstrap_takes_one_resample_and_a_confidence_strictly_inside_zero_one():
    from pytest_masc.stats.resample import check_bootstrap
    check_bootstrap(1, 0.95)
    check_bootstrap(10, math.nextafter(0.0, 1.0))
    check_bootstrap(10, math.nextafter(1.0, 0.0))
    with pytest.raises(ValueError, match="n_resamples must be positive, got 0"):
        check_bootstrap(0, 0.95)
    for confidence in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
            check_bootstrap(10, confidence)


def test_alpha_is_undefined_when_the_expected_disagreement_is_round_off_of_large_values():
    from pytest_masc.stats.weighted import interval_alpha_from_sums
    n_values, s2 = 4.0, 4e12  # values near 1e6: the round-off floor is 1e-12 * s2 / N = 1.0
    for spread, defined in ((0.1, False), (10.0, True)):
        s1 = math.sqrt(n_values * (s2 - spread))
        expected = 2.0 * (s2 - s1 * s1 / n_values) / (n_values - 1.0)
        assert (expected > 1.0) is defined and expected > 1e-3
        alpha = float(interval_alpha_from_sums(n_values, 0.0, s1, s2))
        assert math.isnan(alpha) is not defined and (not defined or alpha == 1.0)


def test_resample_chunks_draw_exactly_the_rows_asked_in_any_chunking(monkeypatch):
    from pytest_masc.stats import resample
    whole = np.concatenate(list(resample.resample_chunks(5, 7, seed=3)))
    monkeypatch.setattr(resample, "CHUNK_ELEMENTS", 15)  # 3 rows of 5 units a chunk: 3 + 3 + 1
    chunks = list(resample.resample_chunks(5, 7, seed=3))
    assert [len(c) for c in chunks] == [3, 3, 1] and whole.shape == (7, 5)
    assert np.array_equal(np.concatenate(chunks), whole)


def test_the_percentile_interval_cuts_half_the_remaining_mass_from_each_tail():
    from pytest_masc.stats.resample import percentile_interval
    stats = np.arange(101, dtype=np.float64)  # quantile q of 0..100 is 100 q
    assert percentile_interval(stats, 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.append(stats, [np.nan, np.inf]), 0.5) == pytest.approx((25.0, 75.0))
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan]), 0.9))
