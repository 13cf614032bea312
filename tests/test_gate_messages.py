"""What a failing gate prints, and which thresholds and ratings are valid (issue #20: the
mutants of pytest_masc/gates.py that only change a message or a range check)."""
from __future__ import annotations

import math

import pytest

from pytest_masc.gates import (Record, evaluate_gates, failure_report, format_against, nan_to_none, shortfall_text,
                               threshold_text, valid_gate, valid_rating)
from pytest_masc.types import ScoreDiagnostics


@pytest.mark.parametrize("value, thresholds, digits, text", [
    (0.94995, [0.95], 4, "0.9499"),
    (0.949996, [0.95], 4, "0.949996"),
    (-0.0001, [0], 4, "-0.0001"),
    (0.5, [], 4, "0.5000"),
    (0.95, [0.95], 4, "0.9500"),
    (0.123456, [0.5, None, math.nan], 3, "0.123"),
    (0.12351, [0.1235], 4, "0.12351"),
    (math.nextafter(0.95, 0), [0.95], 4, "0.9499999999999998"),
    (-1e-18, [0], 4, "-1e-18"),  # no fixed-point text up to 17 places shows it below 0
])
def test_format_against_shows_a_value_on_its_side_of_each_threshold(value, thresholds, digits, text):
    assert format_against(value, thresholds, digits) == text
    for threshold in (t for t in thresholds if t is not None and not math.isnan(t)):
        assert (float(text) < threshold) == (value < threshold) and (float(text) == threshold) == (value == threshold)


def test_threshold_and_shortfall_texts():
    assert threshold_text(0.95) == "0.9500" and threshold_text(0.12345) == "0.12345" and threshold_text(1) == "1.0000"
    assert threshold_text(0.125, 2) == "0.125"
    assert shortfall_text(0.25, 0.5) == "0.2500"
    assert shortfall_text(0.5, 0.50000001) == "0.00000001"
    assert shortfall_text(0.5, math.nextafter(0.5, 1)) == "0.0000000000000001"
    assert shortfall_text(1e-18, 2e-18) == "1e-18"


@pytest.mark.parametrize("gate, value, valid", [
    ("min_concept", 1.0, True), ("min_concept", -1.0, True), ("min_concept", math.nextafter(1.0, 2), False),
    ("min_concept", math.nextafter(-1.0, -2), False), ("min_prompt_margin", 0, True), ("min_concept", True, False),
    ("min_concept", math.nan, False), ("min_concept", math.inf, False), ("min_concept", "0.5", False),
    ("min_auc", 0.0, True), ("min_auc", 1.0, True), ("min_auc", -0.01, False), ("min_auc", math.nextafter(1.0, 2), False),
    ("min_alpha_prompt", -1.0, True), ("min_alpha_concept", math.nextafter(1.0, 2), False),
])
def test_a_gate_threshold_is_a_finite_number_in_its_closed_range(gate, value, valid):
    assert valid_gate(gate, value) is valid


@pytest.mark.parametrize("value, valid", [
    (0, True), (4.0, True), (2.5, True), (math.nextafter(4.0, 5), False), (-0.01, False), (False, False),
    (math.nan, False), (None, False),
])
def test_a_human_rating_lies_on_zero_to_four(value, valid):
    assert valid_rating(value) is valid


def test_a_record_reads_a_missing_score_as_nan_and_keys_its_first_check_by_node_id():
    from pytest_masc.report.baseline import baseline_payload
    case = Record(nodeid="test_m.py::test_a", kind="python", suite="test_m.py", concept="dog", case_id="test_a",
                  prompt="a dog", subject=None, image="a.png", scores={"concept": None, "prompt": 0.25})
    assert math.isnan(case.score("concept")) and math.isnan(case.score("global_prompt")) and case.score("prompt") == 0.25
    assert case.check_index == 0 and case.seed is None and case.passed and case.as_dict()["nodeid"] == "test_m.py::test_a"
    entries = baseline_payload([case], settings={})["records"]
    assert [(e["key"], e["CP"], e["PF"]) for e in entries] == [("test_m.py::test_a", None, 0.25)]


def test_the_failure_report_shows_a_gated_score_on_its_side_of_the_threshold():
    case = Record(nodeid="m.toml::c", kind="suite", suite="s", concept="dog", case_id="c", prompt="a dog", subject=None,
                  image="o.png", scores={"concept": 0.949996, "prompt": 0.949996}, gates={"min_concept": 0.95})
    evaluate_gates(case)
    assert "  scores: concept=0.949996, prompt=0.9500" in failure_report(case).splitlines()


def test_nan_to_none():
    assert nan_to_none(math.nan) is None and nan_to_none(None) is None and nan_to_none(1) == 1.0


def test_the_failure_report_names_the_case_scores_prompt_patches_masks_and_panel():
    case = Record(
        nodeid="masc_s.toml::c1", kind="suite", suite="s", concept="dog", case_id="c1", prompt="a sks dog on a beach",
        subject="sks dog", image="out.png",
        scores={"concept": 0.25, "prompt": 0.125, "prompt_margin": None},
        distractor_prompts={"a cat": 0.5, "a fox": 0.75, "a cow": None}, gates={"min_concept": 0.5},
        extras=ScoreDiagnostics(
            prompt_text="on a beach", subject_found=False, prompt_stripped=False, prompt_truncated=True,
            ref_grid=(4, 4), out_grid=(4, 5), ref_patches=16, ref_foreground_patches=4, ref_foreground_fraction=0.25,
            out_patches=20, out_foreground_patches=5, out_foreground_fraction=0.25, background_patches=15,
            ref_mask_reading=None, out_mask_reading=None, fg_threshold=0.5,
        ).as_dict(),
        computed_masks=[{"role": "output", "segmenter": {"kind": "clipseg"}, "text": "dog", "foreground_fraction": 0.25,
                         "flag": "covers nearly everything"},
                        {"role": "reference", "segmenter": {"kind": "sam3"}, "text": "dog", "foreground_fraction": 0.5}],
        panel="panels/c1.png",
    )
    evaluate_gates(case)
    assert failure_report(case).splitlines() == [
        "MaSC gate failed: s / dog / case 'c1'",
        "  concept preservation (CP) 0.2500 < min_concept 0.5000 (short by 0.2500)",
        "  scores: concept=0.2500, prompt=0.1250, prompt_margin=nan",
        "  best distractor: 'a fox' PF 0.7500",
        "  prompt: 'a sks dog on a beach' -> PF text 'on a beach'",
        "  note: subject 'sks dog' does not occur in the prompt, so nothing was stripped",
        "  note: the PF text was longer than the text tower's context and was truncated",
        "  patches: reference 4/16 foreground (4x4), output 5/20 foreground (4x5), 15 background pooled",
        "  image: out.png",
        "  output mask: computed by clipseg from 'dog', 25.0% foreground (covers nearly everything)",
        "  reference mask: computed by sam3 from 'dog', 50.0% foreground",
        "  panel: panels/c1.png",
    ]
    case.extras, case.distractor_prompts, case.computed_masks, case.panel = {}, {"a cat": None}, [], None
    assert failure_report(case).splitlines() == [
        "MaSC gate failed: s / dog / case 'c1'",
        "  concept preservation (CP) 0.2500 < min_concept 0.5000 (short by 0.2500)",
        "  scores: concept=0.2500, prompt=0.1250, prompt_margin=nan",
        "  prompt: 'a sks dog on a beach'",  # no diagnostics recorded: no PF text, notes or patch counts
        "  image: out.png",
    ]
    bare = failure_report(case)
    case.extras = {"prompt_text": "on a beach", "prompt_truncated": True}  # partial diagnostics read as none
    assert failure_report(case) == bare
