"""Release comparisons (``pytest_masc.stats.compare``) and sizes (``pytest_masc.stats.planning``):
intervals against the closed-form paired t interval (scipy as the oracle), measured coverage,
family-wise false failures and power on simulated release pairs (the model of
``benchmarks/release_simulation.py``), and the exact edges of the verdict rule."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_masc.stats.compare import (
    cases_for_power,
    compare_cases,
    decide,
    detection_power,
    holm_adjust,
    t_quantile,
    t_sf,
)
from pytest_masc.stats.planning import plan, variance_components

stats = pytest.importorskip("scipy.stats")

_SPEC = importlib.util.spec_from_file_location(
    "release_simulation", Path(__file__).resolve().parent.parent / "benchmarks" / "release_simulation.py")
simulation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(simulation)


def table(concept, case_id, seed, cp, pf=None, suite="s"):
    """A case table from per-row lists (PF defaults to CP)."""
    return {"suite": [suite] * len(concept), "concept": list(concept), "case_id": list(case_id), "seed": list(seed),
            "CP": list(cp), "PF": list(cp if pf is None else pf)}


def deltas_table(deltas, concepts=None):
    """``before`` all 0.5, ``after`` 0.5 + delta: one seed per case, the case deltas given."""
    deltas = np.asarray(deltas, dtype=np.float64)
    concepts = ["a"] * len(deltas) if concepts is None else concepts
    cases = [f"p{i}" for i in range(len(deltas))]
    return table(concepts, cases, [0] * len(deltas), [0.5] * len(deltas)), table(concepts, cases, [0] * len(deltas), 0.5 + deltas)


# --------------------------------------------------------------------------- the t distribution and sizes


@pytest.mark.parametrize("df", [1, 2, 3, 8, 19, 120, 5000])
def test_t_tail_and_quantile_match_scipy(df):
    for tail in (0.4, 0.025, 1e-3, 1.7e-4, 1e-6):
        assert t_quantile(tail, df) == pytest.approx(stats.t.isf(tail, df), rel=1e-6 if df <= 200 else 1e-4)
    for t in (0.0, 0.5, 2.0, 7.0):
        assert t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("n, level, excess", [(8, 0.05 / 6, 0.02), (20, 0.05 / 6, 0.02), (40, 0.025, math.inf)])
def test_detection_power_matches_a_simulated_paired_t_test(n, level, excess):
    rng = np.random.default_rng(3)
    drop, sd = 0.04, 0.04 * math.sqrt(n) / 3.2  # power near 0.8
    deltas = rng.normal(-drop, sd, (40_000, n))
    mean, se = deltas.mean(axis=1), deltas.std(axis=1, ddof=1) / math.sqrt(n)
    shown = (stats.t.cdf(mean / se, n - 1) <= level) & (-mean > drop - excess)
    assert detection_power(n, drop, sd, level, excess) == pytest.approx(shown.mean(), abs=0.025)
    needed = cases_for_power(drop, sd, level, excess, power=0.8)
    assert detection_power(needed, drop, sd, level, excess) >= 0.8 > detection_power(needed - 1, drop, sd, level, excess)
    assert cases_for_power(drop, sd, level, excess=0.0) is None


# --------------------------------------------------------------------------- interval and coverage


def test_bootstrap_interval_is_close_to_the_paired_t_interval_on_normal_data():
    rng = np.random.default_rng(1)
    before, after = deltas_table(rng.normal(-0.01, 0.03, 60))
    row = compare_cases(before, after, n_resamples=4000).rows[0]
    d = np.asarray(after["CP"]) - np.asarray(before["CP"])
    half = stats.t.isf(0.025, 59) * d.std(ddof=1) / math.sqrt(60)
    assert row.delta == pytest.approx(d.mean(), abs=1e-15)
    assert row.low == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert row.high == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert row.p_value == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="less").pvalue, rel=1e-6)


@pytest.mark.parametrize("n_cases", [10, 20])
def test_interval_covers_the_true_delta_at_the_nominal_rate(n_cases):
    """600 independent rows (one concept each) in one call: coverage 0.95 within 3 Monte-Carlo sd."""
    rng = np.random.default_rng(n_cases)
    rows = 600
    before, after = deltas_table(rng.normal(-0.01, 0.03, rows * n_cases), concepts=np.repeat(np.arange(rows), n_cases))
    result = compare_cases(before, after, metrics=("CP",), n_resamples=2000)
    covered = np.mean([row.low <= -0.01 <= row.high for row in result.rows])
    assert abs(covered - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / rows), covered


# --------------------------------------------------------------------------- release pairs


@pytest.mark.parametrize("seed_noise", [0.01, 0.08])
def test_no_true_change_fails_at_most_five_percent_of_releases(seed_noise):
    rng = np.random.default_rng(7)
    releases = 400
    new, old = simulation.false_failures(rng, releases, seed_noise, concepts=3, prompts=20, n_resamples=50)
    assert new <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / releases), new
    if seed_noise == 0.08:  # today's point rule flakes on the same draws
        assert old > 0.5


def test_a_true_drop_is_detected_at_the_planned_size_and_names_its_concept():
    rng = np.random.default_rng(11)
    pilot, _ = simulation.release_pair(rng, 3, 20, 4, 0.05)
    proposal = plan(pilot).recommended
    assert proposal.power >= 0.8
    releases = 300
    power, other, _ = simulation.detection(rng, releases, 0.05, proposal.prompts, proposal.seeds, n_resamples=50)
    assert power >= 0.8 - 2.5 * math.sqrt(0.8 * 0.2 / releases), (proposal, power)
    assert other <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / releases), other


# --------------------------------------------------------------------------- verdict edges


def test_verdict_boundaries_are_strict_where_the_rule_says():
    verdicts = decide(delta=[-0.25, -0.25, -0.2500001, -0.1, -0.1, -0.3, -0.3],
                      low=[-0.3, -0.3, -0.3, -0.25, -0.2499999, -0.4, -0.4],
                      adjusted_p=[0.05, 0.01, 0.05, 1.0, 1.0, 0.0500001, math.nan], max_drop=0.25, alpha=0.05)
    assert list(verdicts) == ["inconclusive", "inconclusive", "regressed", "inconclusive", "non-inferior",
                              "inconclusive", "inconclusive"]


@pytest.mark.parametrize("after, verdict", [(0.75, "inconclusive"), (0.5, "regressed"), (0.875, "non-inferior")])
def test_equal_deltas_decide_exactly_at_max_drop(after, verdict):
    """Every case drops by the same dyadic amount: the interval is the point, the rule is exact."""
    before, later = deltas_table([after - 1.0] * 4)
    before["CP"] = [1.0] * 4
    later["CP"] = [after] * 4
    row = compare_cases(before, later, metrics=("CP",), max_drop=0.25).rows[0]
    assert (row.delta, row.low, row.high) == (after - 1.0,) * 3
    assert row.verdict == verdict and row.failed == (verdict == "regressed")
    assert row.cases_needed is None  # decided, or (exactly at max_drop) no number of cases decides it


def test_holm_adjusts_in_rank_order():
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 0.04 < 0.05 is not rejected: the step-down stopped
    assert holm_adjust([0.001, 0.02, 0.011]) == pytest.approx([0.003, 0.022, 0.022])  # running maximum
    assert holm_adjust([]).shape == (0,)


def test_a_drop_significant_alone_is_not_regressed_among_many_rows():
    rng = np.random.default_rng(5)
    drop = rng.normal(-0.05, 0.06, 12)
    alone = compare_cases(*deltas_table(drop), metrics=("CP",)).rows[0]
    assert 0.05 / 20 < alone.p_value < 0.05 and alone.verdict == "regressed"
    flat = [0.0] * 12 * 19  # 19 unchanged concepts: 20 rows in the family
    before, after = deltas_table(np.concatenate([drop, flat]), concepts=np.repeat(np.arange(20), 12))
    row = compare_cases(before, after, metrics=("CP",)).rows[0]
    assert row.p_value == pytest.approx(alone.p_value)
    assert row.adjusted_p == pytest.approx(min(1.0, 20 * alone.p_value))
    assert row.verdict == "inconclusive" and row.cases_needed > 12


def test_missing_scores_are_left_out_and_counted():
    nan = math.nan
    before = table(["a"] * 7, ["p0", "p0", "p1", "p1", "p2", "p3", "gone"], [0, 1, 0, 1, 0, 0, 0],
                   cp=[0.5, 0.7, 0.4, 0.4, 0.6, 0.3, 0.9], pf=[0.2] * 7)
    after = table(["a"] * 6, ["p0", "p0", "p1", "p1", "p2", "p3"], [0, 1, 0, 1, 0, 0],
                  cp=[0.4, nan, 0.3, 0.5, nan, 0.2], pf=[0.1] * 6)
    cp, pf = compare_cases(before, after).rows
    # p0: after has seed 0 only (0.4) against the before mean 0.6; p1: 0.4 - 0.4; p2: no after CP; p3: -0.1
    assert cp.n_cases == 3 and cp.n_excluded == 1 and cp.n_unpaired == 1 and cp.n_unequal_seeds == 1
    assert cp.delta == pytest.approx(np.mean([0.4 - 0.6, 0.0, -0.1]))
    assert pf.n_cases == 4 and pf.n_excluded == 0 and pf.delta == pytest.approx(-0.1)


def test_seed_sets_unequal_between_sides_keep_every_seed():
    before = table(["a"] * 4, ["p0", "p0", "p1", "p1"], [0, 1, 0, 1], cp=[0.5, 0.7, 0.2, 0.4])
    after = table(["a"] * 5, ["p0", "p0", "p0", "p1", "p1"], [0, 1, 2, 0, 1], cp=[0.4, 0.6, 0.8, 0.3, 0.1])
    row = compare_cases(before, after, metrics=("CP",)).rows[0]
    assert row.delta == pytest.approx(np.mean([0.6 - 0.6, 0.2 - 0.3]))
    assert row.n_unequal_seeds == 1 and row.seeds == 2.5
    # equal seed sets: the mean of per-seed differences
    row = compare_cases(before, {**after, "case_id": ["p0", "p0", "p9", "p1", "p1"]}, metrics=("CP",)).rows[0]
    assert row.delta == pytest.approx(np.mean([np.mean([0.4 - 0.5, 0.6 - 0.7]), np.mean([0.3 - 0.2, 0.1 - 0.4])]))
    assert row.n_unequal_seeds == 0 and row.n_unpaired == 1


def test_rows_with_fewer_than_two_cases_are_never_regressed():
    before = table(["a", "b"], ["p0", "p0"], [0, 0], cp=[0.9, 0.9])
    after = table(["a", "c"], ["p0", "p0"], [0, 0], cp=[0.1, 0.1])
    rows = compare_cases(before, after, metrics=("CP",)).rows
    assert [(r.concept, r.n_cases, r.verdict, r.p_value, r.failed) for r in rows] == [
        ("a", 1, "inconclusive", 1.0, False), ("b", 0, "inconclusive", 1.0, False), ("c", 0, "inconclusive", 1.0, False)]
    assert rows[0].delta == pytest.approx(-0.8) and math.isnan(rows[0].low) and rows[0].cases_needed is None
    assert rows[1].n_unpaired == 1 and math.isnan(rows[1].delta)
    strict = compare_cases(before, after, metrics=("CP",), require_noninferior=True)
    assert strict.failed and all(r.failed for r in strict.rows)


def test_the_same_seed_gives_the_same_result():
    rng = np.random.default_rng(2)
    before, after = simulation.release_pair(rng, 3, 15, 2, 0.03)
    first, again = compare_cases(before, after, seed=4), compare_cases(before, after, seed=4)
    other = compare_cases(before, after, seed=5)
    assert json.dumps(first.as_dict()) == json.dumps(again.as_dict())
    assert [r.low for r in first.rows] != [r.low for r in other.rows]  # the bootstrap moved
    assert [r.p_value for r in first.rows] == [r.p_value for r in other.rows]  # the test did not


def test_result_as_json_and_frame():
    before, after = deltas_table([0.01, -0.02, 0.0, 0.03])
    result = compare_cases(before, after, max_drop=0.05)
    data = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert data["max_drop"] == 0.05 and [r["metric"] for r in data["rows"]] == ["CP", "PF"]
    frame = result.frame()
    assert list(frame["verdict"]) == [r.verdict for r in result.rows]
    assert str(frame["cases_needed"].dtype) == "Int64"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("PF"), "after: no 'PF' column"),
    (lambda t: t.update(seed=[0, 0]), "after: case 'p0' of s::a has seed '0' more than once"),
    (lambda t: t.update(CP=["x", 0.5]), "after: score columns ['CP', 'PF'] must hold numbers"),
    (lambda t: t.update(concept=["a"]), "after: column 'concept' must be 1-D with 2 values"),
])
def test_bad_tables_are_refused_with_the_side_and_column_named(change, message):
    before = table(["a", "a"], ["p0", "p1"], [0, 0], cp=[0.5, 0.5])
    after = table(["a", "a"], ["p0", "p0"], [0, 1], cp=[0.5, 0.5])
    change(after)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compare_cases(before, after)


@pytest.mark.parametrize("option", [{"max_drop": -0.1}, {"confidence": 1.0}, {"n_resamples": 0}])
def test_bad_settings_are_refused(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        compare_cases(*deltas_table([0.0, 0.1]), **option)


def test_importing_needs_neither_pandas_nor_scipy():
    code = ("import sys, pytest_masc.stats.compare, pytest_masc.stats.planning;"
            "print(sorted({'pandas', 'scipy', 'torch'} & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- planning


def test_variance_components_recover_the_simulated_noise():
    rng = np.random.default_rng(4)
    run, _ = simulation.release_pair(rng, 10, 40, 6, 0.03, prompt_sd=0.05)
    for component in variance_components(run):
        assert component.seed_sd == pytest.approx(0.03, rel=0.05)
        assert component.prompt_sd == pytest.approx(0.05, rel=0.15)
        assert (component.n_cases, component.seeds, component.seed_df) == (400, 6.0, 2000)


def test_plan_options_trade_prompts_for_seeds():
    rng = np.random.default_rng(6)
    run, _ = simulation.release_pair(rng, 3, 20, 4, 0.05)
    result = plan(run, max_seeds=4, assurance=None)
    prompts = [o.prompts for o in result.options]
    assert prompts == sorted(prompts, reverse=True) and prompts[0] > 2 * prompts[3]
    assert result.recommended == min(result.options, key=lambda o: (o.images, o.seeds))
    assert result.rows == 6 and result.level == pytest.approx(0.05 / 6) and result.drop == pytest.approx(0.04)
    capped = plan(run, max_seeds=4, max_prompts=prompts[1], assurance=None)
    assert [o.feasible for o in capped.options] == [False, True, True, True]
    assert capped.recommended.seeds >= 2
    assert plan(run, max_seeds=4).recommended.prompts > result.recommended.prompts  # the 80% upper limit of the noise
    with_interaction = plan(run, max_seeds=4, interaction=0.5, assurance=None)
    assert all(a.prompts > b.prompts for a, b in zip(with_interaction.options[1:], result.options[1:]))
    assert list(result.frame()["seeds"]) == [1, 2, 3, 4]


def test_plan_needs_two_seeds_somewhere():
    with pytest.raises(ValueError, match="run: no case has two finite CP scores"):
        plan(table(["a", "a"], ["p0", "p1"], [0, 0], cp=[0.5, 0.6]))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="drop must exceed max_drop"):
        plan(simulation.release_pair(rng, 1, 3, 2, 0.01)[0], drop=0.02)
    with pytest.raises(ValueError, match="plan: power out of range, got 1.5"):
        plan(simulation.release_pair(rng, 1, 3, 2, 0.01)[0], power=1.5)
    with pytest.raises(ValueError, match="interaction scales the prompt variance"):
        plan(simulation.release_pair(rng, 1, 1, 2, 0.01)[0], interaction=0.5)


def test_a_dataframe_is_a_case_table():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(8)
    before, after = simulation.release_pair(rng, 2, 6, 2, 0.03)
    from_frames = compare_cases(pd.DataFrame(before), pd.DataFrame(after).sample(frac=1.0, random_state=0))
    assert from_frames.as_dict() == compare_cases(before, after).as_dict()  # row order of the table does not matter
