"""Score diagnostics: typed on the score, the same JSON keys in records, read back by the gates."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pytest_masc import MaSC, Sample
from pytest_masc.defaults import DEFAULT_THRESHOLD
from pytest_masc.gates import Record, evaluate_gates, failure_report
from pytest_masc.types import ScoreDiagnostics

#: the ``extras`` keys of a scored record in ``--masc-json`` files (and ``extras.<key>`` columns)
EXTRAS_KEYS = {
    "prompt_text", "subject_found", "prompt_stripped", "prompt_truncated", "ref_grid", "out_grid",
    "ref_patches", "ref_foreground_patches", "ref_foreground_fraction", "out_patches",
    "out_foreground_patches", "out_foreground_fraction", "background_patches", "ref_mask_reading",
    "out_mask_reading", "fg_threshold",
}


def diagnostics(**changes) -> ScoreDiagnostics:
    base = ScoreDiagnostics(
        prompt_text="on the beach", subject_found=True, prompt_stripped=True, prompt_truncated=False,
        ref_grid=(4, 6), out_grid=(5, 5), ref_patches=24, ref_foreground_patches=0, ref_foreground_fraction=0.0,
        out_patches=25, out_foreground_patches=9, out_foreground_fraction=0.36, background_patches=16,
        ref_mask_reading={"rule": "reference"}, out_mask_reading={"rule": "reference"}, fg_threshold=0.3,
    )
    return dataclasses.replace(base, **changes)


def record(extras: dict, **scores) -> Record:
    return Record(nodeid="t.py::x", kind="python", suite="s", concept="dog", case_id="c", prompt="a dog on the beach",
                  subject="dog", image="out.png", scores=scores, gates={"min_prompt": 0.1}, extras=extras)


def half_soft_mask(height: int, width: int) -> np.ndarray:
    """Weights 1 on the left half, 0.4 on the right: foreground at 0.3, half of it at 0.5."""
    mask = np.full((height, width), 0.4, np.float32)
    mask[:, : width // 2] = 1.0
    return mask


@pytest.fixture(scope="module")
def sample() -> Sample:
    rng = np.random.default_rng(3)
    return Sample(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), half_soft_mask(64, 64),
                  rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), half_soft_mask(64, 64),
                  "a photo of a dog on the beach", subject="dog")


def test_a_score_carries_the_threshold_it_was_computed_with(tiny_model_dir, tiny_masc, sample):
    lower = MaSC.from_pretrained(tiny_model_dir, device="cpu", local_files_only=True, fg_threshold=0.3)
    (default,), (at_lower,) = tiny_masc.score_many([sample]), lower.score_many([sample])
    assert default.diagnostics.fg_threshold == DEFAULT_THRESHOLD and at_lower.diagnostics.fg_threshold == 0.3
    # the counts follow the threshold: every patch reaches 0.3, only the left half 0.5
    patches = at_lower.diagnostics.ref_patches
    assert at_lower.diagnostics.ref_foreground_patches == patches
    assert patches * 0.4 < default.diagnostics.ref_foreground_patches < patches * 0.6
    assert at_lower.diagnostics.background_patches == 0 < default.diagnostics.background_patches


def test_extras_are_the_diagnostics_json_form_with_the_same_keys(tiny_masc, sample):
    (score,) = tiny_masc.score_many([sample])
    assert set(score.extras) == EXTRAS_KEYS
    assert score.extras["ref_grid"] == list(score.diagnostics.ref_grid) == [32, 32]  # 64 x 64 up to 1024 patches
    assert score.extras["prompt_text"] == "a photo of on the beach" and score.extras["subject_found"] is True
    read_back = json.loads(json.dumps(score.as_dict()))["extras"]
    assert ScoreDiagnostics.from_dict(read_back) == score.diagnostics
    several = dataclasses.replace(score, concept_per_reference=(0.25, None))
    assert several.extras == {**score.extras, "concept_per_reference": [0.25, None]}


def test_old_and_partial_extras_read_back():
    current = diagnostics().as_dict()
    old = {k: v for k, v in current.items() if k not in ("fg_threshold", "ref_mask_reading", "out_mask_reading")}
    read = ScoreDiagnostics.from_dict({**old, "concept_per_reference": [0.1]})  # other keys are ignored
    assert read == diagnostics(fg_threshold=DEFAULT_THRESHOLD, ref_mask_reading=None, out_mask_reading=None)
    assert ScoreDiagnostics.from_dict({k: v for k, v in current.items() if k != "ref_patches"}) is None
    assert record({}).diagnostics is None and record(current).diagnostics == diagnostics()


def test_gate_messages_read_the_threshold_and_counts_from_the_diagnostics():
    scored = record(diagnostics(background_patches=0).as_dict(), concept=None, prompt=None)
    failures = evaluate_gates(scored)
    assert failures[0].startswith("reference mask is empty: no patch of the reference mask reaches the foreground threshold 0.3 ")
    assert "the output mask covers every patch: no background is left to pool for PF" in failures[1]
    report = failure_report(scored)
    assert "prompt: 'a dog on the beach' -> PF text 'on the beach'" in report
    assert "patches: reference 0/24 foreground (4x6), output 9/25 foreground (5x5), 0 background pooled" in report

    unknown = record({}, concept=None, prompt=None)  # scores without diagnostics (a Ray run): no number to quote
    failures = evaluate_gates(unknown)
    assert "reaches the foreground threshold on the patch grid" in failures[0]
    assert failures[1].endswith("gate min_prompt = 0.1: the score is NaN")
    assert "patches:" not in failure_report(unknown)


def test_subject_and_truncation_notes_come_from_the_diagnostics():
    noted = record(diagnostics(subject_found=False, prompt_truncated=True).as_dict(), concept=0.5, prompt=0.0)
    evaluate_gates(noted)
    report = failure_report(noted)
    assert "note: subject 'dog' does not occur in the prompt" in report
    assert "note: the PF text was longer than the text tower's context" in report
