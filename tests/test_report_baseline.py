"""Baseline checks and report files: unmatched concepts, other settings, the closing line,
distractors as a list, file modes."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from pytest_masc import report
from pytest_masc.gates import Record
from masc_suites import SUITE, run


def write_baseline(path: Path, model: Path, concepts: dict[str, tuple[float, float]], **settings) -> Path:
    """A version-2 baseline with the given per-concept mean (CP, PF) and the tiny model's settings."""
    payload = {
        "version": 2, "model": str(model), "revision": None, "dtype": "float32", "max_num_patches": 1024,
        **settings, "cases": {},
        "concepts": {key: {"concept": cp, "prompt": pf, "cases": 3} for key, (cp, pf) in concepts.items()},
    }
    path.write_text(json.dumps(payload))
    return path


def test_baseline_sharing_no_concept_fails_and_names_both_sides(pytester, suite_dir, tiny_model_dir):
    """After a suite rename nothing is compared: that fails, and the closing line says so."""
    write_baseline(suite_dir / "baseline.json", tiny_model_dir, {"dog-release-v1::dog": (0.9, -0.3), "cats::cat": (0.9, 0.1)})
    result = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        f"baseline check against {suite_dir / 'baseline.json'} failed:",
        f"  ERROR nothing compared: {suite_dir / 'baseline.json'} shares no concept with this run",
        "  MISSING cats::cat: in the baseline, not in this run",
        "  MISSING dog-release-v1::dog: in the baseline, not in this run",
        "  a concept left out of a run can hide its regression: run its cases, or leave it out on purpose "
        "with --masc-baseline-skip=cats::cat,dog-release-v1::dog",
        "  not in the baseline, not compared: dog-release::dog",
    ])
    assert "no concept dropped" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*= 3 passed, 1 MaSC baseline error, 2 MaSC baseline concepts missing in *"])


def test_baseline_of_other_settings_is_refused_or_compared_with_a_warning(pytester, suite_dir, tiny_model_dir):
    baseline = write_baseline(
        suite_dir / "baseline.json", tiny_model_dir, {"dog-release::dog": (-1.0, -1.0), "cats::cat": (0.9, 0.1)},
        dtype="bfloat16", max_num_patches=256,
    )
    refused = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert refused.ret == 1
    refused.stdout.fnmatch_lines([
        f"  ERROR cannot compare: {baseline} was made with dtype bfloat16, max patches 256; "
        "this run uses dtype float32, max patches 1024 (pass --masc-allow-baseline-mismatch to compare anyway)",
    ])
    allowed = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-allow-baseline-mismatch",
                  "--masc-baseline-skip=cats::*")
    assert allowed.ret == 0
    allowed.stdout.fnmatch_lines([
        f"baseline {baseline}: no concept dropped more than 0.02 (1 concept compared)",
        f"  WARNING {baseline} was made with dtype bfloat16, max patches 256; "
        "this run uses dtype float32, max patches 1024: compared anyway",
        "  skipped as asked, not in this run: cats::cat",
    ])


def test_session_level_failures_are_named_in_the_last_lines(pytester, suite_dir, tiny_model_dir):
    """Every test passes, but the baseline and the alpha gate fail: pytest's last line says so."""
    header = SUITE.split("[[cases]]")[0].replace("min_concept = 0.0", "min_concept = 0.0\nmin_alpha_prompt = 1.0")
    cases = "".join(textwrap.dedent(f"""
        [[cases]]
        id = "case-{index}"
        concept = "dog"
        prompt = "a dog in scene {index}"
        image = "out/{name}.png"
        mask = "out/{name}_mask.png"
        human = {{ prompt = [{index}, {4 - index}] }}
    """) for index, name in enumerate(["beach", "snow", "city"]))
    (suite_dir / "masc_dogs.toml").write_text(header + cases)
    write_baseline(suite_dir / "baseline.json", tiny_model_dir, {"dog-release::dog": (1.0, 1.0)})
    result = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert result.ret == 1
    assert result.parseoutcomes()["passed"] == 3
    last = result.outlines[-1]
    assert " 3 passed, 2 MaSC baseline regressions, 1 MaSC suite gate failed in " in last, last
    tail = "\n".join(result.outlines[-6:])
    assert "REGRESSION dog-release::dog: mean PF" in tail
    assert "SUITE GATE FAILED dog-release: alpha of prompt scores vs humans" in tail


# --------------------------------------------------------------------------- unit level


def _record(nodeid: str, concept: str = "dog", cp: float = 0.8) -> Record:
    return Record(
        nodeid=nodeid, kind="suite", suite="s", concept=concept, case_id=nodeid, prompt="a dog on the beach",
        subject="dog", image="out/beach.png",
        scores={"concept": cp, "prompt": 0.1, "global_concept": 0.5, "global_prompt": 0.2, "prompt_margin": 0.01},
        distractor_prompts={"a dog in the snow": 0.09, "a dog in the city": 0.07},
    )


SETTINGS = {"model": "/models/tiny", "revision": None, "dtype": "float32", "max_num_patches": 1024}


def _report(records) -> report.Report:
    return report.Report(records=records, runs=[{**SETTINGS}], settings=dict(SETTINGS))


def test_distractor_prompts_are_a_list_that_json_normalize_keeps_in_one_column(tmp_path):
    import pandas

    shard = _report([_record("a"), _record("b")])
    report.write_json(tmp_path / "out.json", shard, report.evaluate(shard, n_resamples=10))
    records = json.loads((tmp_path / "out.json").read_text())["records"]
    assert records[0]["distractor_prompts"] == [
        {"prompt": "a dog in the snow", "score": 0.09}, {"prompt": "a dog in the city", "score": 0.07},
    ]
    columns = list(pandas.json_normalize(records).columns)
    assert "distractor_prompts" in columns
    assert not any("a dog in" in column for column in columns)
    assert report.load(tmp_path / "out.json").records[0].distractor_prompts == {"a dog in the snow": 0.09, "a dog in the city": 0.07}


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_json_and_baseline_files_get_the_umask_default_mode(tmp_path, umask, mode):
    shard = _report([_record("a")])
    previous = os.umask(umask)
    try:
        report.write_json(tmp_path / "out.json", shard, report.evaluate(shard, n_resamples=10))
        report.write_baseline(tmp_path / "baseline.json", shard.records, shard.runs, shard.settings)
        report.write_json(tmp_path / "out.json", shard, report.evaluate(shard, n_resamples=10))  # replaced
    finally:
        os.umask(previous)
    for name in ("out.json", "baseline.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "out.json"]  # no temporaries left


def test_compare_names_concepts_on_one_side_only_and_checks_version_1_baselines(tmp_path):
    records = [_record("a", "dog", 0.8), _record("b", "cat", 0.7)]
    baseline = report.baseline_payload(records, settings=SETTINGS)
    assert {k: baseline[k] for k in report.SETTINGS} == SETTINGS and baseline["version"] == 4
    baseline["concepts"]["s::bird"] = {"concept": 0.5, "prompt": 0.1, "cases": 1}
    del baseline["concepts"]["s::cat"]
    result = report.compare_baseline(baseline, records, 0.02, settings=SETTINGS, path="b.json")
    assert (result.compared, result.only_in_run, result.only_in_baseline) == (["s::dog"], ["s::cat"], ["s::bird"])
    assert result.findings == ["MISSING s::bird: in the baseline, not in this run"]  # a vanished concept fails
    result = report.compare_baseline(baseline, records, 0.02, settings=SETTINGS, path="b.json", skip=["s::bird"])
    assert not result.failed and result.skipped == ["s::bird"]
    del baseline["concepts"]["s::bird"]

    version_1 = {"version": 1, "model": "/models/tiny", "revision": None, "concepts": baseline["concepts"], "cases": {}}
    (tmp_path / "old.json").write_text(json.dumps(version_1))
    checked = report.check_baseline(tmp_path / "old.json", records, {**SETTINGS, "dtype": "bfloat16"}, 0.02)
    assert not checked.failed and checked.unchecked == ["dtype", "max patches"]
    assert "  note: the baseline (version 1) records no dtype or max patches: not checked" in checked.lines()
    other_model = report.check_baseline(tmp_path / "old.json", records, {**SETTINGS, "model": "/models/big"}, 0.02)
    assert other_model.error == (
        f"cannot compare: {tmp_path / 'old.json'} was made with model /models/tiny; this run uses model /models/big "
        "(pass --masc-allow-baseline-mismatch to compare anyway)"
    )
    missing = report.check_baseline(tmp_path / "none.json", records, SETTINGS, 0.02)
    assert missing.findings == [f"ERROR cannot compare: {tmp_path / 'none.json'}: baseline file not found (write one with --masc-update-baseline)"]
