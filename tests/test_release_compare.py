"""Release comparisons through the report (issue #21): ``report.compare``, the ``compare`` and
``plan`` commands, baseline version 4 and older ones, the metric-drift canary, the forest plot,
and ``--masc-baseline`` reaching each verdict."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_masc import report
from pytest_masc.gates import Record
from pytest_masc.report.forest import LEGEND_HEIGHT, VERDICT_COLOURS, forest_image
from masc_suites import run

SETTINGS = {"model": "/models/tiny", "revision": None, "dtype": "float32", "max_num_patches": 1024}
ENVIRONMENT = {"pytest_masc": "0.1.0", "torch": "2.13.0", "transformers": "5.25.0", "device": "cpu",
               "dtype": "float32", "attention": "sdpa"}


def _records(shift: dict[str, float], *, seeds: int = 3, cases: int = 12, noise: float = 0.005,
             seed: int = 0) -> list[Record]:
    """Several records per case (one per seed): score = base + prompt effect (the same in every
    release) + seed noise + ``shift[concept]`` on CP."""
    effects = np.random.default_rng(99).normal(0, 0.05, (3, cases))
    rng = np.random.default_rng(seed)
    records = []
    for c, concept in enumerate(("dog", "cat", "bird")):
        for case in range(cases):
            for s in range(seeds):
                cp = 0.7 + effects[c, case] + rng.normal(0, noise) + shift.get(concept, 0.0)
                pf = 0.3 + effects[c, case] / 2 + rng.normal(0, noise)
                records.append(Record(
                    nodeid=f"masc_zoo.toml::{concept}-{case}", kind="suite", suite="zoo", concept=concept,
                    case_id=f"{concept}-{case}", prompt=f"a {concept}", subject=concept, image=f"out/{concept}.png",
                    scores={"concept": cp, "prompt": pf}, seed=s if seeds > 1 else None, check_index=s,
                ))
    return records


def write_run(path: Path, records: list[Record], canary=None, environment=None) -> Path:
    shard = report.Report(records=records, runs=[dict(SETTINGS)], settings=dict(SETTINGS),
                          environment=dict(environment or {}), canary=canary)
    report.write_json(path, shard, report.evaluate(shard, n_resamples=10))
    return path


@pytest.fixture()
def releases(tmp_path):
    """before.json; after.json with cat's CP 0.06 lower; baseline.json of before (version 4)."""
    before = write_run(tmp_path / "before.json", _records({}))
    after = write_run(tmp_path / "after.json", _records({"cat": -0.06}, seed=1))
    report.write_baseline(tmp_path / "baseline.json", _records({}), settings=SETTINGS)
    return before, after, tmp_path / "baseline.json"


def _verdicts(comparison) -> dict[tuple[str, str], str]:
    return {(row.concept, row.metric): row.verdict for row in comparison.rows}


# --------------------------------------------------------------------------- the API


def test_compare_pairs_cases_averages_seeds_and_names_the_regressed_row(releases):
    before, after, baseline = releases
    comparison = report.compare(before, after)
    verdicts = _verdicts(comparison)
    assert verdicts[("cat", "CP")] == "regressed"
    assert {verdicts[(c, m)] for c in ("dog", "bird") for m in ("CP", "PF")} == {"non-inferior"}
    cat = next(r for r in comparison.rows if (r.concept, r.metric) == ("cat", "CP"))
    assert cat.n_cases == 12 and cat.seeds == 3 and cat.failed and cat.low < -0.06 < cat.high
    assert comparison.failed
    frame = comparison.frame()
    assert {"n_cases", "delta", "low", "high", "verdict", "cases_needed", "failed"} <= set(frame.columns)
    assert len(frame) == 6 and frame.loc[frame["verdict"] == "regressed", "concept"].tolist() == ["cat"]
    # a baseline file and a loaded report are sides too, with the same result
    again = report.compare(baseline, report.load(after))
    assert _verdicts(again) == verdicts and again.rows[0].delta == pytest.approx(comparison.rows[0].delta)


def test_inconclusive_rows_say_how_many_cases_would_decide_them(tmp_path):
    before = write_run(tmp_path / "before.json", _records({}, cases=4, noise=0.02))
    after = write_run(tmp_path / "after.json", _records({"dog": -0.015}, cases=4, noise=0.02, seed=3))
    comparison = report.compare(before, after)
    dog = next(r for r in comparison.rows if (r.concept, r.metric) == ("dog", "CP"))
    assert dog.verdict == "inconclusive" and not dog.failed and dog.cases_needed > 4
    strict = report.compare(before, after, require_noninferior=True)
    assert next(r for r in strict.rows if (r.concept, r.metric) == ("dog", "CP")).failed and strict.failed


def test_unusable_inputs_are_refused_naming_the_file(tmp_path, releases):
    before, _, _ = releases
    (tmp_path / "broken.json").write_text("{nope")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "old.json").write_text(json.dumps({"version": 2, "model": "m", "concepts": {"zoo::dog": {"concept": 0.7}}}))
    (tmp_path / "format1.json").write_text(json.dumps({"records": []}))
    cases = [("broken.json", "file is not valid JSON"), ("missing.json", "file not found"),
             ("other.json", "neither a --masc-json run file nor a pytest-masc baseline"),
             ("old.json", "baseline version 2 holds per-concept means only, too old for the statistical comparison"),
             ("format1.json", "--masc-json format 1 records no run settings")]
    for name, message in cases:
        with pytest.raises(report.ReportError, match=f"{tmp_path / name}: .*{message}".replace("(", r"\(").replace(")", r"\)")):
            report.compare(tmp_path / name, before)


def test_version_3_baselines_compare_with_one_seed_per_case(tmp_path):
    """A version-3 baseline (per-case means keyed by node id) pairs with the run's cases."""
    old = _records({}, seeds=1)
    cases = {r.nodeid: {"concept": r.scores["concept"] + 0.05 * (r.concept == "cat"), "prompt": r.scores["prompt"],
                        "concept_key": f"{r.suite}::{r.concept}"} for r in old}
    version_3 = {"version": 3, **SETTINGS, "checkpoint": None, "cases": cases,
                 "concepts": {f"zoo::{c}": {"concept": 0.7, "prompt": 0.3, "cases": 12} for c in ("dog", "cat", "bird")}}
    (tmp_path / "v3.json").write_text(json.dumps(version_3))
    run_file = write_run(tmp_path / "run.json", old)
    comparison = report.compare(tmp_path / "v3.json", run_file)
    assert _verdicts(comparison)[("cat", "CP")] == "regressed" and _verdicts(comparison)[("dog", "CP")] == "non-inferior"
    assert all(row.n_cases == 12 and row.n_unpaired == 0 for row in comparison.rows)
    checked = report.check_baseline(tmp_path / "v3.json", old, SETTINGS, 0.02)
    assert checked.release is not None and not checked.point_rule
    assert [f.split(": ")[0] for f in checked.findings] == ["REGRESSION zoo::cat"]


def test_version_2_baselines_keep_the_point_rule_and_say_how_to_rewrite_them(tmp_path):
    version_2 = {"version": 2, **SETTINGS, "cases": {},
                 "concepts": {"zoo::dog": {"concept": 0.9, "prompt": 0.0, "cases": 12}}}
    (tmp_path / "v2.json").write_text(json.dumps(version_2))
    checked = report.check_baseline(tmp_path / "v2.json", _records({}), SETTINGS, 0.02, skip=["zoo::*"])
    assert checked.release is None and checked.point_rule == ["zoo::dog"]
    assert checked.regressions and checked.regressions[0].startswith("zoo::dog: mean CP ")
    note = next(line for line in checked.lines() if "too old for the statistical comparison" in line)
    assert f"--masc-update-baseline" in note and str(tmp_path / "v2.json") in note


def test_duplicate_case_and_seed_is_refused_naming_both_checks(tmp_path):
    records = _records({}, seeds=1, cases=2)
    records.append(Record(**{**records[0].as_dict(), "nodeid": "masc_zoo.toml::copy"}))
    with pytest.raises(report.ReportError, match=r"b.json: case 'dog-0' of zoo::dog has no seed twice \(masc_zoo.toml::(dog-0|copy) and masc_zoo.toml::(copy|dog-0)\)"):
        report.compare(write_run(tmp_path / "a.json", records[:-1]), write_run(tmp_path / "b.json", records))


def test_ten_thousand_cases_by_four_seeds_compare_in_under_two_seconds():
    rng = np.random.default_rng(0)
    n, seeds = 10_000, 4
    concept = np.repeat(np.arange(100), n // 100)
    base = {"suite": ["s"] * (n * seeds), "concept": np.repeat([f"c{c}" for c in concept], seeds).tolist(),
            "case_id": np.repeat(np.arange(n), seeds).astype(str).tolist(), "seed": np.tile(np.arange(seeds), n).tolist()}
    rows = [{"suite": "s", "concept": c, "case_id": k, "seed": s, "CP": v, "PF": w}
            for c, k, s, v, w in zip(base["concept"], base["case_id"], base["seed"], rng.normal(0.7, 0.05, n * seeds),
                                     rng.normal(0.3, 0.05, n * seeds))]
    before = {"version": 4, **SETTINGS, "records": rows, "concepts": {}}
    after = {**before, "records": [{**row, "CP": row["CP"] - 0.001} for row in rows]}
    started = time.perf_counter()
    comparison = report.compare(before, after, n_resamples=2000)
    elapsed = time.perf_counter() - started
    assert len(comparison.rows) == 200 and comparison.rows[0].n_cases == 100
    assert elapsed < 2.0, f"{elapsed:.2f} s"


# --------------------------------------------------------------------------- the canary


def test_canary_drift_beyond_a_drop_turns_regressed_into_inconclusive(tmp_path):
    canary = {"items": ["a", "b"], "scores": {"CP": [0.9, 0.8], "PF": [0.1, 0.2]}}
    moved = {"items": ["a", "b"], "scores": {"CP": [0.83, 0.73], "PF": [0.1, 0.2]}}
    before = write_run(tmp_path / "before.json", _records({}), canary, ENVIRONMENT)
    after = write_run(tmp_path / "after.json", _records({"cat": -0.06}, seed=1), moved, {**ENVIRONMENT, "torch": "2.14.0"})
    comparison = report.compare(before, after)
    cat = next(r for r in comparison.rows if (r.concept, r.metric) == ("cat", "CP"))
    assert cat.verdict == "inconclusive" and not cat.failed and "within the metric's own drift 0.0700 CP" in cat.note
    assert comparison.canary.drift == pytest.approx({"CP": 0.07, "PF": 0.0})
    line = comparison.canary.line()
    assert line == "the metric itself moved by 0.0700 CP and 0.0000 PF on the canary between torch 2.13.0 and 2.14.0"
    same_environment = write_run(tmp_path / "same.json", _records({"cat": -0.06}, seed=1), moved, ENVIRONMENT)
    assert _verdicts(report.compare(before, same_environment))[("cat", "CP")] == "regressed"  # no drift check
    small = {"items": ["a", "b"], "scores": {"CP": [0.89, 0.79], "PF": [0.1, 0.2]}}
    slightly = write_run(tmp_path / "slight.json", _records({"cat": -0.06}, seed=1), small, {**ENVIRONMENT, "torch": "2.14.0"})
    assert _verdicts(report.compare(before, slightly))[("cat", "CP")] == "regressed"  # drift 0.01 < drop 0.06


def test_canary_is_deterministic_and_synthetic():
    from pytest_masc.metric.canary import CANARY_ITEMS, canary_samples

    first, second = canary_samples(), canary_samples()
    assert [name for name, _ in first] == [item[0] for item in CANARY_ITEMS]
    for (_, a), (_, b) in zip(first, second):
        assert np.array_equal(a.out_image, b.out_image) and np.array_equal(a.ref_mask, b.ref_mask)
        assert a.ref_mask.any() and (~a.out_mask).any() and a.ref_image.dtype == np.uint8


# --------------------------------------------------------------------------- the forest plot


def test_forest_plot_colours_rows_by_verdict(releases, tmp_path):
    before, after, _ = releases
    comparison = report.compare(before, after)
    image = np.asarray(forest_image(comparison.result, "zoo"))[:-LEGEND_HEIGHT]  # the rows, without the legend
    colours = {tuple(p) for p in image.reshape(-1, 3)}
    assert VERDICT_COLOURS["regressed"] in colours and VERDICT_COLOURS["non-inferior"] in colours
    rows = [i for i, r in enumerate(comparison.rows) if r.verdict == "regressed"]
    assert rows == [next(i for i, r in enumerate(comparison.rows) if (r.concept, r.metric) == ("cat", "CP"))]
    red_rows = np.flatnonzero((image == VERDICT_COLOURS["regressed"]).all(axis=2).sum(axis=1) > 20)
    assert len(red_rows) > 0  # the regressed interval is drawn in its colour, across the plot
    never = report.compare(before, before)
    plain = np.asarray(forest_image(never.result))[:-LEGEND_HEIGHT]
    assert VERDICT_COLOURS["regressed"] not in {tuple(p) for p in plain.reshape(-1, 3)}


# --------------------------------------------------------------------------- the command line


def _cli(capsys, *args) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = report.main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_compare_command_exit_codes_json_and_plot(releases, tmp_path, capsys):
    before, after, baseline = releases
    code, out, _ = _cli(capsys, "compare", before, after, f"--json={tmp_path / 'c.json'}", f"--plot={tmp_path / 'f.png'}")
    assert code == 1
    assert any(line.startswith("  REGRESSION zoo::cat: mean CP dropped 0.06") for line in out), out
    assert out[-1] == "MaSC comparison FAILED: 6 rows: 1 regressed, 5 non-inferior"
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [(r["concept"], r["metric"]) for r in rows if r["failed"]] == [("cat", "CP")]
    assert Image.open(tmp_path / "f.png").size[0] > 600
    code, out, _ = _cli(capsys, "compare", baseline, before)
    assert code == 0 and out[-1] == "MaSC comparison PASSED: 6 rows: 6 non-inferior"
    noisy = write_run(tmp_path / "noisy.json", _records({"dog": -0.015}, cases=4, noise=0.02, seed=3))
    few = write_run(tmp_path / "few.json", _records({}, cases=4, noise=0.02))
    code, out, _ = _cli(capsys, "compare", few, noisy)
    assert code == 0 and any(line.startswith("  WARNING inconclusive zoo::dog CP: ") for line in out)
    code, out, _ = _cli(capsys, "compare", few, noisy, "--require-noninferior")
    assert code == 1 and any(line.startswith("  INCONCLUSIVE zoo::dog: CP ") and "would decide it" in line for line in out)
    code, _, err = _cli(capsys, "compare", tmp_path / "none.json", after)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'none.json'}: file not found"


def test_plan_command_prints_prompts_by_seeds(releases, capsys, tmp_path):
    before, _, _ = releases
    code, out, _ = _cli(capsys, "plan", before, "--max-drop=0.02", "--power=0.8")
    assert code == 0
    assert out[0].startswith(f"release plan from {before}: 6 rows")
    assert any(line.startswith("recommended: ") and "prompts x" in line for line in out)
    option_lines = [line for line in out if line.strip()[:1].isdigit()]
    assert len(option_lines) == 8 and "<- fewest images" in "".join(option_lines)
    one_seed = write_run(tmp_path / "one.json", _records({}, seeds=1))
    code, _, err = _cli(capsys, "plan", one_seed)
    assert code == 2 and "no case has two finite CP scores" in err and str(one_seed) in err


def test_merge_with_a_baseline_gives_the_single_runs_comparison(releases, tmp_path, capsys):
    """Shards split by concept merge into the same comparison the whole run gives."""
    _, _, baseline = releases
    records = _records({"cat": -0.06}, seed=1)
    whole = write_run(tmp_path / "whole.json", records)
    shard_1 = write_run(tmp_path / "s1.json", [r for r in records if r.concept != "bird"])
    shard_2 = write_run(tmp_path / "s2.json", [r for r in records if r.concept == "bird"])
    code_single, single, _ = _cli(capsys, "merge", whole, f"--baseline={baseline}")
    code_merged, merged, _ = _cli(capsys, "merge", shard_1, shard_2, f"--baseline={baseline}", f"--plot={tmp_path / 'p.png'}")
    assert code_single == code_merged == 1
    table = [line for line in single if line.startswith("  zoo::") or "REGRESSION" in line]
    assert table and table == [line for line in merged if line.startswith("  zoo::") or "REGRESSION" in line]
    assert (tmp_path / "p.png").is_file()


# --------------------------------------------------------------------------- --masc-baseline


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_masc_baseline_reaches_each_verdict(pytester, suite_dir, tiny_model_dir):
    baseline = suite_dir / "baseline.json"
    assert run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline").ret == 0
    written = json.loads(baseline.read_text())

    same = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-artifacts=art")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["  dog-release::dog  3 x 1 *non-inferior*non-inferior",
                               f"  forest plot: {suite_dir / 'art' / 'masc-release-forest.png'}"])
    assert Image.open(suite_dir / "art" / "masc-release-forest.png").format == "PNG"

    def spread(data):  # the baseline's cases differ by +0.10, -0.05, 0: a mean drop of 0.017, noisy
        for record, change in zip(data["records"], (0.10, -0.05, 0.0)):
            record["CP"] += change
    _edit(baseline, spread)
    noisy = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert noisy.ret == 0
    noisy.stdout.fnmatch_lines(["  WARNING inconclusive dog-release::dog CP: * would decide it at the observed variance "
                                "(passes; --masc-require-noninferior fails it)"])
    strict = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-require-noninferior")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["  INCONCLUSIVE dog-release::dog: CP *"])
    assert " 3 passed, 1 MaSC baseline comparison inconclusive in " in strict.outlines[-1]
    (suite_dir / "pytest.ini").write_text((suite_dir / "pytest.ini").read_text() + "masc_require_noninferior = true\n")
    assert run(pytester, tiny_model_dir, "--masc-baseline=baseline.json").ret == 1  # the ini key

    baseline.write_text(json.dumps(written))
    _edit(baseline, lambda data: [record.update(CP=record["CP"] + 0.05) for record in data["records"]])
    worse = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert worse.ret == 1
    worse.stdout.fnmatch_lines(["  REGRESSION dog-release::dog: mean CP dropped 0.0500, more than max_drop 0.02 *"])


def test_masc_baseline_from_another_environment_scores_the_canary(pytester, suite_dir, tiny_model_dir):
    """A baseline from 'torch 0.0-old' whose canary scored 0.06 higher: the run's 0.05 drop is the metric's."""
    baseline = suite_dir / "baseline.json"
    assert run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline").ret == 0

    def elsewhere(data):
        data["environment"]["torch"] = "0.0-old"
        data["canary"]["scores"]["CP"] = [value + 0.06 for value in data["canary"]["scores"]["CP"]]
        for record in data["records"]:
            record["CP"] += 0.05
    _edit(baseline, elsewhere)
    result = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-json=run.json")
    assert result.ret == 0, result.stdout.str()
    torch_version = json.loads((suite_dir / "run.json").read_text())["environment"]["torch"]
    result.stdout.fnmatch_lines([
        f"  the metric itself moved by 0.0600 CP and 0.0000 PF on the canary between torch 0.0-old and {torch_version}",
        "  WARNING inconclusive dog-release::dog CP: * the drop 0.0500 is within the metric's own drift 0.0600 CP *",
    ])
    assert json.loads((suite_dir / "run.json").read_text())["canary"]["scores"]["CP"]  # the run carries it for merge


def test_merge_checks_the_canary_the_shards_carry(tmp_path, capsys):
    """Shards scored in another environment carry their canary: the merge turns a drop within
    its drift into inconclusive, as the session would."""
    old = {"items": ["a", "b"], "scores": {"CP": [0.9, 0.8], "PF": [0.1, 0.2]}}
    baseline = report.baseline_payload(_records({}), settings=SETTINGS, environment=ENVIRONMENT, canary=old)
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    new = {"items": ["a", "b"], "scores": {"CP": [0.82, 0.72], "PF": [0.1, 0.2]}}
    records = _records({"cat": -0.06}, seed=1)
    elsewhere = {**ENVIRONMENT, "device": "cuda NVIDIA H100"}
    shards = [write_run(tmp_path / "s1.json", [r for r in records if r.concept != "bird"], new, elsewhere),
              write_run(tmp_path / "s2.json", [r for r in records if r.concept == "bird"], new, elsewhere)]
    code, out, _ = _cli(capsys, "merge", *shards, f"--baseline={tmp_path / 'baseline.json'}")
    assert code == 0, out
    assert ("  the metric itself moved by 0.0800 CP and 0.0000 PF on the canary between device cpu and "
            "cuda NVIDIA H100") in out
    assert any(line.startswith("  WARNING inconclusive zoo::cat CP: ") and "within the metric's own drift 0.0800 CP" in line
               for line in out)
    code, out, _ = _cli(capsys, "merge", *shards, f"--baseline={tmp_path / 'baseline.json'}", "--require-noninferior")
    assert code == 1 and any(line.startswith("  INCONCLUSIVE zoo::cat: CP ") for line in out)


def test_require_noninferior_ini_value_must_be_a_boolean(pytester, suite_dir, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "-o", "masc_require_noninferior=maybe")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*-o masc_require_noninferior: 'maybe' is not true or false*"])
