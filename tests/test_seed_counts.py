"""A case of several seeds is one case in a run's report: the verdict's failed and errored counts,
the alpha against human ratings (one unit per case, scores averaged over its seeds), the suite
alpha gates' rated-case counts, the per-concept means and the baseline's concept table count and
weigh cases, not seed records (:func:`pytest_masc.report.frame.case_rows`)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_masc.gates import Record
from pytest_masc.report import concept_table, human_agreement
from pytest_masc.report.baseline import update_baseline
from pytest_masc.report.frame import case_rows, records_frame
from pytest_masc.report.model import Report, suite_collected
from pytest_masc.report.suite_gates import over_text
from pytest_masc.report.verdict import evaluate
from pytest_masc.stats.agreement import human_alpha

#: case id -> (CP of each seed, PF of each seed, the case's concept ratings by two raters)
CASES = {
    "beach": ([0.30, 0.50, 0.40], [0.10, 0.20, 0.30], [4.0, 3.0]),
    "snow": ([0.10, 0.05, 0.30], [0.05, 0.05, 0.20], [1.0, 2.0]),
    "city": ([0.20, 0.25, 0.15], [0.30, 0.10, 0.20], [3.0, 2.0]),
}


def seed_records(cases=CASES, suite: str = "dogs", concept: str = "dog") -> list[Record]:
    """One record per (case, seed), each carrying its case's ratings, as the plugin writes them."""
    records = []
    for case_id, (cps, pfs, ratings) in cases.items():
        for seed, (cp, pf) in enumerate(zip(cps, pfs)):
            records.append(Record(
                nodeid=f"masc_{suite}.toml::{case_id}", kind="suite", suite=suite, concept=concept, case_id=case_id,
                prompt=f"a {concept} at the {case_id}", subject=concept, image=f"out/{case_id}_{seed}.png",
                scores={"concept": cp, "prompt": pf, "prompt_margin": pf - 0.05},
                human={"concept": list(ratings)}, check_index=seed, seed=seed,
            ))
    return records


def fail_case(records: list[Record], case_id: str) -> None:
    """Every seed of ``case_id`` carries the case's failure (the gates fail on its mean)."""
    for record in records:
        if record.case_id == case_id:
            record.passed, record.failures = False, ["mean over 3 seeds: concept 0.150 < min_concept 0.2"]


def test_case_rows_average_each_cases_seeds_and_keep_its_ratings():
    cases = case_rows(records_frame(seed_records()))
    assert list(cases["case_id"]) == ["beach", "snow", "city"]
    assert list(cases["seeds"]) == [3, 3, 3]
    assert cases["scores.concept"].tolist() == pytest.approx([0.40, 0.15, 0.20])
    assert cases["human.concept"].tolist() == [[4.0, 3.0], [1.0, 2.0], [3.0, 2.0]]


def test_a_nan_seed_makes_its_cases_mean_nan():
    records = seed_records()
    records[1].scores["prompt"] = None  # beach, seed 1
    cases = case_rows(records_frame(records))
    assert math.isnan(cases["scores.prompt"].iat[0]) and cases["scores.prompt"].iat[1] == pytest.approx(0.10)
    assert cases["scores.concept"].iat[0] == pytest.approx(0.40)


def test_alpha_has_one_unit_per_case_with_its_seeds_mean():
    agreement = human_agreement(records_frame(seed_records()), n_resamples=50)
    means = np.array([np.mean(cps) for cps, _, _ in CASES.values()])
    ratings = np.array([r for _, _, r in CASES.values()]).T  # raters x units
    assert agreement["concept"]["units"] == 3
    assert agreement["concept"]["alpha"] == pytest.approx(human_alpha(means, ratings))


def test_the_suite_alpha_gate_counts_rated_cases_not_records():
    records = seed_records()
    collected = {"dogs": suite_collected("masc_dogs.toml", {"dog": 3}, {"concept": 3})}
    run = Report(records=records, suite_gates={"dogs": {"min_alpha_concept": 0.99}}, collected=collected)
    (gate,) = evaluate(run, n_resamples=50).suite_gates
    assert (gate["ran"], gate["used"], gate["rated"]) == (3, 3, 3)
    assert over_text(gate) == "over 3 rated cases"


def test_a_failing_case_counts_once():
    records = seed_records()
    fail_case(records, "snow")
    evaluation = evaluate(Report(records=records), n_resamples=50)
    assert (evaluation.failed_cases, evaluation.errored_cases) == (1, 0)
    assert [(row["cases"], row["passed"]) for row in evaluation.summary["concepts"]] == [(3, 2)]


def test_an_unscorable_seed_makes_one_errored_case():
    records = seed_records()
    snow = [r for r in records if r.case_id == "snow"]
    snow[2].scores, snow[2].error, snow[2].passed = {}, "InputError: out/snow_2.png: no such file", False
    for record in snow[:2]:  # what the plugin writes on the case's other seeds
        record.passed, record.failures = False, ["seed 2 could not be scored, so the case's mean over 3 seeds is not formed"]
    evaluation = evaluate(Report(records=records), n_resamples=50)
    assert (evaluation.failed_cases, evaluation.errored_cases) == (0, 1)
    assert "concept" not in evaluation.summary["agreement"]  # 2 scored cases left: too few units for an alpha


#: a 4-seed case beside a 1-seed case: equal weights give (0.6 + 0.2) / 2, record weights 1.0 / 5
UNEQUAL = {
    "many": ([0.10, 0.20, 0.10, 0.20], [0.0, 0.1, 0.2, 0.1], [2.0, 2.0]),
    "one": ([0.60], [0.5], [4.0, 4.0]),
}


def test_concept_means_weigh_each_case_the_same():
    (row,) = concept_table(records_frame(seed_records(UNEQUAL)))
    assert row["cases"] == 2
    assert row["mean_concept"] == pytest.approx((0.15 + 0.60) / 2)  # records would give 1.2 / 5 = 0.24
    assert row["mean_prompt"] == pytest.approx((0.10 + 0.50) / 2)
    assert row["min_concept"] == pytest.approx(0.15)  # the lowest case mean, what the gates judge


def test_the_baseline_holds_case_weighted_means_and_case_counts(tmp_path):
    records = seed_records(UNEQUAL)
    collected = {"dogs": suite_collected("masc_dogs.toml", {"dog": 2}, {})}
    run = Report(records=records, collected=collected, exitstatus=0)
    path = tmp_path / "baseline.json"
    update = update_baseline(path, run, evaluate(run, n_resamples=50))
    assert update.written and update.partial == [] and update.cases == 2
    written = json.loads(path.read_text())["concepts"]["dogs::dog"]
    assert (written["cases"], written["concept"]) == (2, pytest.approx(0.375))
