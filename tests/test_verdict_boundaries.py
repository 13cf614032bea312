"""Verdicts exactly at, just below and just above every threshold, empty references among
several, and several checks in one test (issue #20: the mutants that survived the suite)."""
from __future__ import annotations

import math

import pytest

from pytest_masc.gates import GATES, Record, combine_scores, evaluate_gates
from pytest_masc.report import merge
from pytest_masc.report.baseline import baseline_payload, write_baseline
from pytest_masc.report.baseline_check import check_baseline, compare_baseline
from pytest_masc.report.model import FORMAT, Report, ReportError
from pytest_masc.report.suite_gates import suite_gate_finding, suite_gate_results
from pytest_masc.report.frame import records_frame
from pytest_masc.report.verdict import evaluate
from pytest_masc.types import Score, ScoreDiagnostics

SETTINGS = {"model": "tiny", "revision": None, "dtype": "float32", "max_num_patches": 256, "checkpoint": None}


def diagnostics(background_patches: int = 3, fg_threshold: float = 0.5) -> dict:
    """Complete diagnostics (their JSON form) of a 4x4 reference and a 2x2 output grid."""
    return ScoreDiagnostics(
        prompt_text="on a beach", subject_found=True, prompt_stripped=True, prompt_truncated=False, ref_grid=(4, 4),
        out_grid=(2, 2), ref_patches=16, ref_foreground_patches=0, ref_foreground_fraction=0.0, out_patches=4,
        out_foreground_patches=4 - background_patches, out_foreground_fraction=(4 - background_patches) / 4,
        background_patches=background_patches, ref_mask_reading=None, out_mask_reading=None, fg_threshold=fg_threshold,
    ).as_dict()


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def record(case_id: str = "c1", *, concept: str = "dog", scores=None, gates=None, nodeid=None, check_index=0,
           human=None, suite: str = "s") -> Record:
    """A scored suite case (all five scores 0.5 unless given); its gates judged."""
    values = {"concept": 0.5, "prompt": 0.5, "prompt_margin": 0.5, "global_concept": 0.5, "global_prompt": 0.5}
    values.update(scores or {})
    made = Record(nodeid=nodeid or f"masc_{suite}.toml::{case_id}", kind="suite", suite=suite, concept=concept,
                  case_id=case_id, prompt="a dog on a beach", subject="dog", image=f"{case_id}.png",
                  scores=values, concept_per_reference=[values["concept"]], gates=dict(gates or {}),
                  human=dict(human or {}), check_index=check_index)
    evaluate_gates(made)
    return made


# ------------------------------------------------------------------ per-case gates
@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("minimum", [0.0, 0.3, -0.25, 0.95, 1.0, -1.0])
def test_a_score_exactly_at_its_gate_passes_and_one_ulp_below_fails(gate, minimum):
    key, label = GATES[gate]
    at = record(scores={key: minimum}, gates={gate: minimum})
    assert at.passed and at.failures == []
    just_above = record(scores={key: above(minimum)}, gates={gate: minimum})
    assert just_above.passed and just_above.failures == []
    just_below = record(scores={key: below(minimum)}, gates={gate: minimum})
    assert not just_below.passed
    [failure] = just_below.failures
    assert failure.startswith(f"{label} ") and f" < {gate} " in failure and "(short by " in failure


def test_a_margin_of_exactly_zero_passes_min_prompt_margin_zero():
    for margin in (0.0, -0.0):
        case = record(scores={"prompt_margin": margin}, gates={"min_prompt_margin": 0})
        assert case.passed, case.failures
    assert not record(scores={"prompt_margin": -1e-12}, gates={"min_prompt_margin": 0}).passed


def test_an_error_fails_a_case_whose_gates_pass():
    case = record(gates={"min_concept": 0.1})
    case.error = "image not found"
    evaluate_gates(case)
    assert case.failures == [] and case.passed is False


# ------------------------------------------------------------------ several references
def score(concept: float, prompt: float = 0.25, global_concept: float = 0.5) -> Score:
    return Score(concept=concept, prompt=prompt, global_concept=global_concept, global_prompt=0.125, prompt_margin=0.0625)


def test_several_references_average_cp_and_global_cp_and_take_pf_from_the_first():
    scores, per_reference = combine_scores([score(0.75, 0.25, 0.5), score(0.25, 0.5, 0.25)])
    assert scores == {"concept": 0.5, "prompt": 0.25, "global_concept": 0.375, "global_prompt": 0.125,
                      "prompt_margin": 0.0625}
    assert per_reference == [0.75, 0.25]


@pytest.mark.parametrize("concepts, which", [
    ([0.9, math.nan], " (reference 2)"),
    ([math.nan, 0.9], " (reference 1)"),
    ([math.nan, 0.9, math.nan], " (reference 1, 3)"),
    ([math.nan], ""),
])
def test_an_empty_reference_makes_cp_nan_and_fails_naming_it(concepts, which):
    scores, per_reference = combine_scores([score(c) for c in concepts])
    assert scores["concept"] is None
    assert per_reference == [None if math.isnan(c) else c for c in concepts]
    case = record(scores={}, gates={"min_concept": 0.1})
    case.scores = scores
    case.concept_per_reference = per_reference
    case.extras = diagnostics(fg_threshold=0.25)
    failures = evaluate_gates(case)
    assert not case.passed
    assert failures == [f"reference mask is empty{which}: no patch of the reference mask reaches the foreground "
                        "threshold 0.25 on the patch grid, so CP is NaN"]
    case.extras = {"fg_threshold": 0.25}  # no complete diagnostics: the threshold is not known
    assert evaluate_gates(case) == [f"reference mask is empty{which}: no patch of the reference mask reaches the "
                                    "foreground threshold on the patch grid, so CP is NaN"]


def test_an_empty_reference_fails_a_case_without_a_concept_gate():
    scores, per_reference = combine_scores([score(0.9), score(math.nan)])
    case = record(gates={})
    case.scores, case.concept_per_reference = scores, per_reference
    assert evaluate_gates(case)[0].startswith("reference mask is empty (reference 2):") and not case.passed


@pytest.mark.parametrize("key, extras, distractors, reason", [
    ("prompt", diagnostics(background_patches=0), {}, "the output mask covers every patch"),
    ("prompt_margin", diagnostics(background_patches=0), {}, "the output mask covers every patch"),
    ("prompt_margin", diagnostics(background_patches=3), {}, "no distractor prompts to compare with"),
    ("prompt_margin", diagnostics(background_patches=3), {"a cat": None}, "the score is NaN"),
    ("global_prompt", diagnostics(background_patches=0), {}, "the score is NaN"),
    ("prompt", {"background_patches": 0}, {}, "the score is NaN"),  # partial diagnostics read as none
])
def test_a_nan_score_fails_its_gate_with_its_reason(key, extras, distractors, reason):
    gate = next(g for g, (k, _) in GATES.items() if k == key)
    case = record(scores={key: None}, gates={gate: -1.0})
    case.extras, case.distractor_prompts = extras, distractors
    [failure] = evaluate_gates(case)
    assert failure.startswith(f"{GATES[gate][1]} is NaN, gate {gate} = -1: {reason}") and not case.passed


# ------------------------------------------------------------------ baseline drops
def test_an_unchanged_run_passes_its_own_baseline_with_max_drop_zero(tmp_path):
    records = [record("c1", scores={"concept": 0.7, "prompt": 0.1}), record("c2", scores={"concept": 0.3, "prompt": 0.2}),
               record("c3", concept="cat", scores={"concept": 0.123456789, "prompt": -0.05})]
    path = tmp_path / "baseline.json"
    write_baseline(path, records, settings=SETTINGS)
    comparison = check_baseline(path, records, SETTINGS, 0.0)
    assert comparison.compared == ["s::cat", "s::dog"] and comparison.point_rule == []
    # no drop at all: not regressed (-delta = 0 is not > 0), not non-inferior (low = 0 is not > -0): inconclusive
    assert {(r.concept, r.metric): (r.delta, r.verdict) for r in comparison.release.rows} == {
        (concept, metric): (0.0, "inconclusive") for concept in ("cat", "dog") for metric in ("CP", "PF")}
    assert comparison.regressions == [] and comparison.inconclusive == [] and not comparison.failed
    report = Report(records=records, settings=SETTINGS, suite_gates={})
    assert not evaluate(report, baseline=path, max_drop=0.0, n_resamples=10).failed
    strict = check_baseline(path, records, SETTINGS, 0.0, require_noninferior=True)
    assert strict.failed and strict.regressions == [] and len(strict.inconclusive) == 4


def constant_drop(score_key: str, after: float, max_drop: float, require_noninferior: bool = False):
    """Four cases at 0.75 in a version-4 baseline, each now at ``after`` on ``score_key`` (sd 0)."""
    other = "prompt" if score_key == "concept" else "concept"
    before = baseline_payload([record(f"c{i}", scores={"concept": 0.75, "prompt": 0.75}) for i in range(4)], settings=SETTINGS)
    now = [record(f"c{i}", scores={score_key: after, other: 0.75}) for i in range(4)]
    comparison = compare_baseline(before, now, max_drop, require_noninferior=require_noninferior, n_resamples=10)
    assert comparison.point_rule == [] and comparison.compared == ["s::dog"]
    return comparison, {row.metric: row for row in comparison.release.rows}


@pytest.mark.parametrize("score_key, label", [("concept", "CP"), ("prompt", "PF")])
def test_a_constant_drop_of_exactly_max_drop_is_not_regressed_and_one_ulp_more_is(score_key, label):
    exactly, rows = constant_drop(score_key, 0.5, 0.25)
    assert rows[label].delta == -0.25 and rows[label].adjusted_p <= 0.05  # the drop is established ...
    assert rows[label].verdict == "inconclusive" and not exactly.failed  # ... but -delta > max_drop is strict
    further, rows = constant_drop(score_key, below(0.5), 0.25)
    assert -rows[label].delta > 0.25 and rows[label].verdict == "regressed"
    [regression] = further.regressions
    # the drop is printed with the digits that show it above max_drop, never as "0.2500"
    assert regression.startswith(f"s::dog: mean {label} dropped 0.2500000000000001, more than max_drop 0.25 ")
    assert further.failed and further.findings == [f"REGRESSION {regression}"]
    untouched = "PF" if label == "CP" else "CP"
    assert rows[untouched].delta == 0.0 and rows[untouched].verdict == "non-inferior"  # low 0 > -0.25


@pytest.mark.parametrize("score_key, label", [("concept", "CP"), ("prompt", "PF")])
def test_non_inferior_needs_the_interval_strictly_above_minus_max_drop(score_key, label):
    _, at = constant_drop(score_key, 0.5, 0.25)
    assert at[label].low == -0.25 and at[label].verdict == "inconclusive"
    wider, above_it = constant_drop(score_key, 0.5, above(0.25))
    assert above_it[label].low == -0.25 and above_it[label].verdict == "non-inferior" and not wider.failed
    strict, _ = constant_drop(score_key, 0.5, 0.25, require_noninferior=True)
    [finding] = strict.findings
    assert finding.startswith(f"INCONCLUSIVE s::dog: {label} ") and strict.regressions == []


@pytest.mark.parametrize("score_key, label", [("concept", "CP"), ("prompt", "PF")])
def test_a_version_2_mean_drop_of_exactly_max_drop_passes_and_one_ulp_more_fails(score_key, label):
    baseline = {"version": 2, "concepts": {"s::dog": {"concept": 0.75, "prompt": 0.75, "cases": 1}}}
    other = "prompt" if score_key == "concept" else "concept"
    exactly = compare_baseline(baseline, [record(scores={score_key: 0.5, other: 0.75})], 0.25)
    assert exactly.regressions == [] and exactly.compared == ["s::dog"] and exactly.point_rule == ["s::dog"]
    assert exactly.release is None
    improved = compare_baseline(baseline, [record(scores={score_key: 0.875, other: 0.75})], 0.0)
    assert improved.regressions == []
    further = compare_baseline(baseline, [record(scores={score_key: below(0.5), other: 0.75})], 0.25)
    [regression] = further.regressions
    assert regression.startswith(f"s::dog: mean {label} 0.5000 dropped ") and "(allowed 0.25)" in regression
    assert further.failed and further.findings == [f"REGRESSION {regression}"]


def test_a_score_now_nan_is_a_regression_and_a_concept_left_out_is_missing():
    baseline = {"version": 2, "concepts": {"s::dog": {"concept": 0.5, "prompt": None, "cases": 1},
                                           "s::cat": {"concept": 0.5, "prompt": 0.5, "cases": 1}}}
    comparison = compare_baseline(baseline, [record(scores={"concept": None})], 0.1)
    assert comparison.regressions == ["s::dog: mean CP is now NaN (baseline 0.5000)"]
    assert comparison.missing == ["s::cat"] and comparison.failed
    skipped = compare_baseline(baseline, [record()], 0.1, skip=["s::c*", "x::*"])
    assert skipped.missing == [] and skipped.skipped == ["s::cat"] and skipped.unmatched_skip == ["x::*"]
    assert not skipped.failed


# ------------------------------------------------------------------ suite alpha gates
def rated_records(count: int = 4) -> list[Record]:
    return [record(f"r{i}", scores={"concept": 0.1 * i}, human={"concept": [float(i)]}) for i in range(count)]


@pytest.mark.parametrize("alpha, verdict", [(0.5, "passed"), (above(0.5), "passed"), (below(0.5), "failed")])
def test_a_suite_alpha_exactly_at_its_gate_passes(alpha, verdict):
    summary = {"suites": {"s": {"agreement": {"concept": {"alpha": alpha, "ci": [0.1, 0.9]}}}}}
    [result] = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, records_frame(rated_records()), summary)
    assert result["verdict"] == verdict and result["alpha"] == alpha
    assert (result["used"], result["ran"]) == (4, 4)
    finding = suite_gate_finding(result)
    if verdict == "passed":
        assert finding is None
    else:
        assert finding.startswith("s: alpha of concept scores vs humans 0.4999")
        assert finding.endswith(" < min_alpha_concept 0.5 (over 4 rated cases)")


def test_a_suite_alpha_gate_without_an_alpha():
    frame = records_frame(rated_records(2))
    gates = {"s": {"min_alpha_concept": 0.5}, "other": {"min_alpha_prompt": 0.2}}
    results = suite_gate_results(gates, frame, {"suites": {}})
    by_suite = {r["suite"]: r for r in results}
    assert by_suite["other"]["verdict"] == "not checked" and by_suite["other"]["reason"] == "none of its cases ran"
    assert by_suite["s"]["verdict"] == "failed" and by_suite["s"]["reason"] == "2 scored rated case(s); an alpha needs at least 3"
    assert suite_gate_finding(by_suite["s"]).startswith("s: min_alpha_concept = 0.5 but no human-rated cases give an alpha")
    partial = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, frame, {"suites": {}},
                                 {"s": {"rated": {"concept": 3}}})
    assert partial[0]["verdict"] == "not checked" and partial[0]["reason"] == "only 2 of its 3 rated cases ran, too few for an alpha"
    whole = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, records_frame(rated_records(3)), {"suites": {}},
                               {"s": {"rated": {"concept": 3}}})
    assert whole[0]["verdict"] == "failed" and whole[0]["reason"].startswith("alpha is undefined over 3 rated cases")


# ------------------------------------------------------------------ merging shards
def shard(records, source: str, exitstatus=0) -> Report:
    return Report(records=records, settings=SETTINGS, suite_gates={}, exitstatus=exitstatus,
                  shards=[{"source": source, "exitstatus": exitstatus, "cases": len(records)}], format=FORMAT)


def python_check(check_index: int) -> Record:
    made = record(f"check{check_index}", nodeid="test_model.py::test_two_checks", check_index=check_index)
    made.kind, made.suite = "python", "test_model.py"
    return made


def test_one_shard_of_a_test_that_checks_twice_merges():
    merged = merge([shard([python_check(0), python_check(1)], "a.json")])
    assert [(r.nodeid, r.check_index) for r in merged.records] == [("test_model.py::test_two_checks", 0),
                                                                   ("test_model.py::test_two_checks", 1)]
    split = merge([shard([python_check(1)], "a.json"), shard([python_check(0)], "b.json")])
    assert [r.check_index for r in split.records] == [0, 1]
    with pytest.raises(ReportError, match=r"shards overlap: case .*test_two_checks.* is in a\.json and in b\.json"):
        merge([shard([python_check(0)], "a.json"), shard([python_check(0)], "b.json")])


@pytest.mark.parametrize("statuses, merged", [
    ([0, 1], 1), ([1, 0], 1), ([5, 0], 0), ([0, 5], 0), ([5, 5], 5), ([None, 0], 0), ([None, None], None),
    ([2, 1], 2), ([None, 5], 5),
])
def test_the_merged_exit_status_is_the_first_failing_shard(statuses, merged):
    reports = [shard([record(f"c{i}")], f"{i}.json", status) for i, status in enumerate(statuses)]
    assert merge(reports).exitstatus == merged


def test_a_shard_whose_pytest_failed_outside_masc_is_a_finding():
    merged = merge([shard([record("c1")], "a.json", 1), shard([record("c2")], "b.json", 5)])
    assert merged.shard_findings == ["a.json: pytest exited with status 1 (tests failed) although its MaSC cases passed"]
    failing = record("c3", scores={"concept": 0.1}, gates={"min_concept": 0.5})
    assert merge([shard([failing], "a.json", 1)]).shard_findings == []


def suite_record(case_id: str, file: str, suite: str = "s") -> Record:
    return record(case_id, nodeid=f"{file}::{case_id}", suite=suite)


@pytest.mark.parametrize("files", [["a/masc_s.toml", "b/masc_s.toml"], ["a/masc_s.toml", "b/masc_s.toml", "c/masc_s.toml"]])
def test_one_suite_name_from_two_suite_files_is_refused_by_its_records_alone(files):
    """Shards that record nothing as collected (``collected`` empty): the records' node ids
    still tell that one suite name comes from two files."""
    reports = [shard([suite_record(f"c{i}", file)], f"{i}.json") for i, file in enumerate(files)]
    with pytest.raises(ReportError, match=r"suite 's' comes from two suite files, a/masc_s\.toml \(0\.json\) and "
                                          r"b/masc_s\.toml \(1\.json\); suites of one run need distinct names"):
        merge(reports)
    same_file = merge([shard([suite_record("c1", files[0])], "0.json"), shard([suite_record("c2", files[0])], "1.json")])
    assert len(same_file.records) == 2


@pytest.mark.parametrize("fmt, suite_gates", [(FORMAT - 1, {}), (FORMAT, None), (FORMAT - 1, None)])
def test_a_shard_of_an_old_format_or_without_suite_gates_is_refused(fmt, suite_gates):
    old = Report(records=[record()], settings=SETTINGS, suite_gates=suite_gates, format=fmt,
                 shards=[{"source": "old.json", "exitstatus": 0, "cases": 1}])
    with pytest.raises(ReportError, match=rf"old\.json: --masc-json format {fmt} records no run settings"):
        merge([old])


def test_a_suite_gate_reports_how_many_rated_cases_it_used():
    none_ran = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, records_frame([record(suite="t")]), {"suites": {}})
    assert (none_ran[0]["used"], none_ran[0]["ran"], none_ran[0]["verdict"]) == (0, 0, "not checked")
    unrated = records_frame([record("u1"), record("u2")])
    rated_elsewhere = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, unrated, {"suites": {}},
                                         {"s": {"rated": {"concept": 3}}})
    assert rated_elsewhere[0]["reason"] == "none of its 3 rated cases ran"
    no_concept_count = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, unrated, {"suites": {}},
                                          {"s": {"rated": {"prompt": 3}}})
    assert no_concept_count[0]["rated"] == 0 and no_concept_count[0]["verdict"] == "failed"
    assert no_concept_count[0]["reason"] == "0 scored rated case(s); an alpha needs at least 3"


def test_a_failed_suite_alpha_prints_three_decimals():
    summary = {"suites": {"s": {"agreement": {"concept": {"alpha": 0.123456, "ci": [0.0, 0.3]}}}}}
    [result] = suite_gate_results({"s": {"min_alpha_concept": 0.5}}, records_frame(rated_records()), summary,
                                  {"s": {"rated": {"concept": 6}}})
    assert suite_gate_finding(result) == ("s: alpha of concept scores vs humans 0.123 < min_alpha_concept 0.5 "
                                          "(over 4 of 6 rated cases)")


def test_a_first_shard_that_loaded_no_model_takes_the_dtype_of_another():
    first = shard([record("c1")], "a.json")
    first.settings = {**SETTINGS, "dtype": None}
    merged = merge([first, shard([record("c2")], "b.json")])
    assert merged.settings["dtype"] == "float32"
    assert merge([shard([record("c3")], "c.json"), first]).settings["dtype"] == "float32"


# ------------------------------------------------------------------ the run's verdict
def evaluation(**fields) -> "Evaluation":
    from pytest_masc.report.verdict import Evaluation
    values = dict(summary={}, alpha_findings=[], protocol_findings=[], baseline=None, failed_cases=0, errored_cases=0)
    values.update(fields)
    return Evaluation(**values)


def test_a_run_fails_for_any_one_reason_and_passes_with_none():
    from pytest_masc.report.baseline import BaselineUpdate
    from pytest_masc.report.baseline_check import BaselineComparison
    assert not evaluation().failed and evaluation().counts() == []
    for reason in (dict(failed_cases=1), dict(errored_cases=1), dict(alpha_findings=["s: alpha"]),
                   dict(protocol_findings=["p"]), dict(shard_findings=["a.json"]),
                   dict(baseline=BaselineComparison(path="b", max_drop=0.0, regressions=["x"])),
                   dict(baseline=BaselineComparison(path="b", max_drop=0.0, missing=["s::c"])),
                   dict(baseline=BaselineComparison(path="b", max_drop=0.0, error="cannot compare")),
                   dict(baseline_update=BaselineUpdate(path="b", error="read-only"))):
        assert evaluation(**reason).failed, reason
    assert not evaluation(baseline=BaselineComparison(path="b", max_drop=0.0, compared=["s::c"])).failed
    assert evaluation(protocol_findings=["p"], alpha_findings=["a"]).suite_findings == ["p", "a"]


def test_the_closing_counts_name_each_kind_of_session_failure():
    from pytest_masc.report.baseline import BaselineUpdate
    from pytest_masc.report.baseline_check import BaselineComparison
    one = evaluation(baseline=BaselineComparison(path="b", max_drop=0.0, regressions=["x"], missing=["m"],
                                                 error="e"), alpha_findings=["a"])
    assert one.counts() == [(1, "MaSC baseline error"), (1, "MaSC baseline regression"),
                            (1, "MaSC baseline concept missing"), (1, "MaSC suite gate failed")]
    two = evaluation(baseline=BaselineComparison(path="b", max_drop=0.0, regressions=["x", "y"], missing=["m", "n"],
                                                 error="e"),
                     baseline_update=BaselineUpdate(path="b", error="read-only"), alpha_findings=["a", "b"])
    assert two.counts() == [(2, "MaSC baseline errors"), (2, "MaSC baseline regressions"),
                            (2, "MaSC baseline concepts missing"), (2, "MaSC suite gates failed")]
    assert two.session_reasons == ["ERROR e", "REGRESSION x", "REGRESSION y", "MISSING m: in the baseline, not in this run",
                                   "MISSING n: in the baseline, not in this run", "ERROR baseline not written: read-only",
                                   "a", "b"]


def test_evaluate_lists_errors_and_subjects_missing_from_prompts():
    broken = record("c2")
    broken.error = "\n  image not found: c2.png\n  more"
    blank = record("c3")
    blank.error = "   "
    unstripped = record("c4")
    unstripped.extras = {**diagnostics(), "subject_found": False}
    partial = record("c5")
    partial.extras = {"subject_found": False}  # partial diagnostics read as none: no note
    result = evaluate(Report(records=[record("c1"), broken, blank, unstripped, partial], settings=SETTINGS, suite_gates={}),
                      n_resamples=10)
    assert result.errors == ["s / c2: image not found: c2.png", "s / c3: error"]
    assert result.subject_notes == ["s / c4: subject 'dog', prompt 'a dog on a beach'"]
    assert (result.failed_cases, result.errored_cases) == (0, 2) and result.failed


def test_one_suite_name_from_two_files_is_refused_by_what_the_shards_collected():
    def collected_shard(file: str, source: str) -> Report:
        report = shard([], source)
        report.collected = {"s": {"file": file, "concepts": {"dog": 1}, "rated": {"concept": 0, "prompt": 0}}}
        return report
    with pytest.raises(ReportError, match=r"suite 's' comes from two suite files, a/masc_s\.toml \(a\.json\) and "
                                          r"b/masc_s\.toml \(b\.json\)"):
        merge([collected_shard("a/masc_s.toml", "a.json"), collected_shard("b/masc_s.toml", "b.json")])
    assert merge([collected_shard("a/masc_s.toml", "a.json"), collected_shard("a/masc_s.toml", "b.json")]).collected == {
        "s": {"file": "a/masc_s.toml", "concepts": {"dog": 1}, "rated": {"concept": 0, "prompt": 0}}}


def test_an_empty_reference_still_lets_the_other_gates_judge():
    scores, per_reference = combine_scores([score(0.9, prompt=0.125), score(math.nan, prompt=0.5)])
    case = record(gates={"min_concept": 0.5, "min_prompt": 0.25, "min_global_concept": 0.0})
    case.scores, case.concept_per_reference = scores, per_reference
    failures = evaluate_gates(case)
    assert len(failures) == 2 and failures[0].startswith("reference mask is empty (reference 2)")
    assert failures[1].startswith("prompt following (PF) 0.1250 < min_prompt 0.2500")


def test_evaluate_refuses_a_baseline_of_other_settings_unless_allowed(tmp_path):
    records = [record("c1")]
    path = tmp_path / "baseline.json"
    write_baseline(path, records, settings={**SETTINGS, "dtype": "bfloat16"})
    report = Report(records=records, settings=SETTINGS, suite_gates={})
    refused = evaluate(report, baseline=path, n_resamples=10)
    assert refused.failed and refused.baseline.error.startswith("cannot compare: ")
    allowed = evaluate(report, baseline=path, allow_mismatch=True, n_resamples=10)
    assert not allowed.failed and allowed.baseline.compared == ["s::dog"]
