"""Sharded runs: merging ``--masc-json`` shards reproduces the single run; pandas reading; refusals."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_masc import report
from pytest_masc.gates import Record
from masc_suites import make_images, run

HEADER = """
[suite]
name = "dog-release"
min_concept = 0.0
min_alpha_concept = -1.0

[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"
"""


def _case(case_id: str, prompt: str, image: str, mask: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        [[cases]]
        id = "{case_id}"
        concept = "dog"
        prompt = "{prompt}"
        image = "{image}"
        mask = "{mask}"
    """) + extra + "\n"


# One suite ("dog-release") whose cases the shards split (-k), so its concept mean and its alpha need both.
SUITE = HEADER + "".join([
    _case("a-beach", "a dog on the beach", "out/beach.png", "out/beach_mask.png", "human = { concept = [3, 4] }"),
    _case("a-snow", "a dog in the snow", "out/snow.png", "out/snow_mask.png", "human = { concept = [1, 2] }"),
    _case("a-strict", "a dog in the city", "out/city.png", "out/city_mask.png", "min_concept = 0.999"),
    _case("b-city", "a dog in the city", "out/city.png", "out/city_mask.png", "human = { concept = [2, 2] }"),
    _case("b-self", "a dog at home", "refs/dog.png", "refs/dog_mask.png", "human = { concept = [4, 3] }"),
])
MARKER_TESTS = """
import pytest

GATE = dict(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0,
            distractors=["a dog in the snow"])

@pytest.mark.masc(**GATE)
def test_one(masc):
    masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")

@pytest.mark.masc(**GATE)
def test_two(masc):
    masc.check(image="out/city.png", mask="out/city_mask.png", prompt="a dog in the city")

def test_plain():
    assert True
"""


def masc_section(lines: list[str]) -> list[str]:
    """The lines under pytest's ``MaSC summary`` separator, up to the next separator."""
    start = next(i for i, line in enumerate(lines) if re.match(r"^=+ MaSC summary =+$", line)) + 1
    end = next(i for i in range(start, len(lines)) if re.match(r"^([=_-])\1+ [^=_ -].* \1+$", lines[i]) or lines[i].startswith("FAILED "))
    return lines[start:end]


def comparable(lines: list[str]) -> list[str]:
    """Summary lines without the encode counts and times, which differ between processes."""
    return [line for line in lines if not line.startswith("images encoded ")]


def merge_cli(capsys, *args) -> tuple[int, list[str], str]:
    capsys.readouterr()  # drop what earlier (inline pytester) runs printed
    code = report.main(["merge", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_merged_shards_reproduce_the_single_run(pytester, tiny_model_dir, capsys):
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_a.toml").write_text(SUITE)
    pytester.makepyfile(test_gates=MARKER_TESTS)

    # Two CI shards, split with -k inside the suite file and the marker test file; no baseline there.
    shard_a = run(pytester, tiny_model_dir, "-k", "test_one or a-", "--masc-json=shard-a.json")
    shard_b = run(pytester, tiny_model_dir, "-k", "test_two or b- or plain", "--masc-json=shard-b.json")
    shard_a.assert_outcomes(passed=3, failed=1)
    shard_b.assert_outcomes(passed=4)
    assert shard_b.ret == 0
    for shard in (shard_a, shard_b):  # 2 of the 4 rated cases per shard: too few for an alpha, and not a failure
        shard.stdout.fnmatch_lines(["  dog-release  min_alpha_concept -1: not checked, only 2 of its 4 rated cases ran, too few for an alpha"])
        assert "SUITE GATE FAILED" not in shard.stdout.str() and "REGRESSION" not in shard.stdout.str()
    a_json = json.loads((pytester.path / "shard-a.json").read_text())
    assert a_json["format"] == report.FORMAT
    checkpoint = a_json["settings"].pop("checkpoint")
    assert a_json["settings"] == {"model": str(tiny_model_dir), "revision": None, "dtype": "float32", "max_num_patches": 1024}
    assert checkpoint["kind"] == "local" and checkpoint["path"] == str(tiny_model_dir.resolve())
    assert a_json["suite_gates"] == {"dog-release": {"min_alpha_concept": -1.0}}
    assert a_json["collected"] == {"dog-release": {"file": "masc_a.toml", "concepts": {"dog": 5}, "rated": {"concept": 4, "prompt": 0}}}
    assert a_json["exitstatus"] == 1  # pytest's own status: a-strict failed

    # A baseline in which dog-release::dog (spread over both shards) was 0.03 better: only the
    # union of the shards gives the mean that regressed.
    shards = [pytester.path / "shard-a.json", pytester.path / "shard-b.json"]
    merged = report.merge([report.load(p) for p in shards])
    baseline = report.baseline_payload(merged.records, merged.runs, merged.settings)
    for record in baseline["records"]:  # the same images score the same: every dog case drops by 0.03
        if (record["suite"], record["concept"]) == ("dog-release", "dog"):
            record["CP"] += 0.03
    (pytester.path / "baseline.json").write_text(json.dumps(baseline))

    single = run(pytester, tiny_model_dir, "--masc-json=single.json", "--masc-baseline=baseline.json")
    single.assert_outcomes(passed=7, failed=1)
    assert single.ret == 1
    code, out, err = merge_cli(
        capsys, *shards, f"--baseline={pytester.path / 'baseline.json'}", f"--json={pytester.path / 'merged.json'}",
    )
    assert (code, err) == (1, "")

    single_lines = masc_section(single.outlines)
    merged_lines = out[1:out.index(f"merged report written to {pytester.path / 'merged.json'}")]
    assert comparable(merged_lines) == comparable(single_lines)
    assert merged_lines[0].startswith(f"model {tiny_model_dir} (revision default), device cpu, dtype float32")
    assert merged_lines[1].endswith("over 2 processes")
    assert [line for line in merged_lines if "REGRESSION" in line] == [
        line for line in single_lines if "REGRESSION" in line
    ] and any(line.startswith("  REGRESSION dog-release::dog: mean CP dropped 0.0300") for line in merged_lines)
    assert [line for line in merged_lines if "dog-release::dog" in line and "regressed" in line] == [
        line for line in single_lines if "dog-release::dog" in line and "regressed" in line
    ] != []  # the comparison table of the merge is the single run's
    assert "agreement with human ratings, all suites pooled (Krippendorff's alpha, interval; 95% bootstrap CI):" in merged_lines
    assert not any("SUITE GATE FAILED" in line for line in merged_lines)  # 4 rated cases together give an alpha
    assert any(re.fullmatch(r"  dog-release  min_alpha_concept -1: alpha -?\d\.\d+ \[.*\] over 4 rated cases: passed", line)
               for line in merged_lines), merged_lines
    assert out[-1] == "MaSC FAILED: 7 cases from 2 shard(s): 6 passed, 1 failed, 1 MaSC baseline regression"

    one = json.loads((pytester.path / "single.json").read_text())
    both = json.loads((pytester.path / "merged.json").read_text())
    assert [r["nodeid"] for r in both["records"]] == [r["nodeid"] for r in one["records"]]
    for a, b in zip(one["records"], both["records"]):  # gates, failures, verdicts identical
        assert a == b, (a, b)  # the same floats: a score does not depend on its batch
    for key in ("concepts", "agreement", "suites", "suite_gates", "suite_findings", "baseline_regressions"):
        assert both["summary"][key] == one["summary"][key], key
    assert [s["source"] for s in both["shards"]] == [str(p) for p in shards]

    frame = report.read(shards)  # the DataFrame of the shards is the single run's
    assert list(frame["nodeid"]) == [r["nodeid"] for r in one["records"]]
    assert list(frame["verdict"]) == ["failed" if r["case_id"] == "a-strict" else "passed" for r in one["records"]]
    assert set(frame["source"]) == {str(p) for p in shards}

    # The command line (python -m) gives the same verdict; without the baseline only a-strict fails.
    cli = subprocess.run(
        [sys.executable, "-m", "pytest_masc.report", "merge", *map(str, shards)],
        capture_output=True, text=True, cwd=pytester.path,
    )
    assert cli.returncode == 1, cli.stderr
    assert cli.stdout.splitlines()[-1] == "MaSC FAILED: 7 cases from 2 shard(s): 6 passed, 1 failed"


# --------------------------------------------------------------------------- synthetic shards


def _record(nodeid: str, concept_score: float = 0.8, passed: bool = True) -> Record:
    return Record(
        nodeid=nodeid, kind="suite", suite="s", concept="dog", case_id=nodeid.split("::")[-1],
        prompt="a dog on the beach", subject="dog", image="out/beach.png",
        scores={"concept": concept_score, "prompt": 0.1, "global_concept": 0.5, "global_prompt": 0.2, "prompt_margin": 0.01},
        distractor_prompts={"a dog in the snow": 0.09, "a dog in the city": 0.07},
        gates={"min_concept": 0.5}, passed=passed, failures=[] if passed else ["below"],
        extras={"prompt_text": "on the beach", "ref_grid": [4, 6]},
    )


SETTINGS = {"model": "/models/tiny", "revision": None, "dtype": "float32", "max_num_patches": 1024}


def write_shard(path: Path, records: list[Record], exitstatus: int = 0, suite_gates=None, **settings) -> Path:
    shard = report.Report(
        records=records, runs=[{**SETTINGS, **settings, "device": "cpu"}], settings={**SETTINGS, **settings},
        suite_gates=suite_gates or {}, exitstatus=exitstatus,
    )
    report.write_json(path, shard, report.evaluate(shard, n_resamples=10))
    return path


@pytest.mark.parametrize(("setting", "value", "label"), [
    ("model", "/models/other", "model /models/other"),
    ("revision", "v2", "revision v2"),
    ("dtype", "bfloat16", "dtype bfloat16"),
    ("max_num_patches", 256, "max patches 256"),
])
def test_shards_of_different_runs_are_refused(tmp_path, capsys, setting, value, label):
    first = write_shard(tmp_path / "shard-1.json", [_record("m.toml::a")])
    second = write_shard(tmp_path / "shard-2.json", [_record("m.toml::b")], **{setting: value})
    with pytest.raises(report.ReportError) as error:
        report.merge([report.load(first), report.load(second)])
    message = str(error.value)
    assert "shards from different runs refused" in message
    assert f"{second}: {label}" in message and str(first) in message
    code, out, err = merge_cli(capsys, first, second)
    assert code == 2 and out == [] and err.startswith("error: shards from different runs refused")


def test_overlapping_shards_and_conflicting_suite_gates_are_refused(tmp_path):
    gates = {"s": {"min_alpha_concept": 0.1}}
    first = write_shard(tmp_path / "shard-1.json", [_record("m.toml::a")], suite_gates=gates)
    again = write_shard(tmp_path / "again.json", [_record("m.toml::a")], suite_gates=gates)
    with pytest.raises(report.ReportError, match=r"shards overlap: case m.toml::a is in .*shard-1.json and in .*again.json"):
        report.merge([report.load(first), report.load(again)])
    other = tmp_path / "other-gates.json"
    data = json.loads(write_shard(other, [_record("m.toml::b")], suite_gates=gates).read_text())
    data["suite_gates"] = {"s": {"min_alpha_concept": 0.5}}
    other.write_text(json.dumps(data))
    with pytest.raises(report.ReportError, match=r"suite 's' has gates .*0.1.* in .*shard-1.json but .*0.5.* in .*other-gates.json"):
        report.merge([report.load(first), report.load(other)])


def test_format_1_files_are_read_but_not_merged(tmp_path):
    old = tmp_path / "old.json"
    record = _record("m.toml::a").as_dict()  # format 1: no "format", distractors as a dict
    old.write_text(json.dumps({"pytest_masc": "0.1.0", "runs": [{**SETTINGS}], "records": [record], "summary": {}}))
    loaded = report.load(old)
    assert loaded.format == 1 and loaded.settings == {**SETTINGS, "checkpoint": None} and loaded.suite_gates is None
    assert loaded.records[0].distractor_prompts == {"a dog in the snow": 0.09, "a dog in the city": 0.07}
    assert report.read(old)["distractor_prompts"][0] == [
        {"prompt": "a dog in the snow", "score": 0.09}, {"prompt": "a dog in the city", "score": 0.07},
    ]
    new = write_shard(tmp_path / "new.json", [_record("m.toml::b")])
    with pytest.raises(report.ReportError, match=r"old.json: --masc-json format 1 records no run settings or suite-level gates"):
        report.merge([report.load(old), report.load(new)])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(report.ReportError, match=r"broken.json: report file is not valid JSON"):
        report.load(tmp_path / "broken.json")
    (tmp_path / "future.json").write_text(json.dumps({"format": 99, "records": []}))
    with pytest.raises(report.ReportError, match=r"future.json: --masc-json format 99"):
        report.load(tmp_path / "future.json")


def test_read_gives_one_row_per_case_with_flat_columns(tmp_path):
    first = write_shard(tmp_path / "shard-1.json", [_record("m.toml::b", 0.9), _record("m.toml::a", 0.4, passed=False)])
    second = write_shard(tmp_path / "shard-2.json", [_record("m.toml::c", 0.7)])
    frame = report.read([first, second])
    assert list(frame.columns) == [
        "source", "nodeid", "check_index", "kind", "suite", "concept", "case_id", "seed", "prompt", "subject", "image",
        "scores.concept", "scores.prompt", "scores.global_concept", "scores.global_prompt", "scores.prompt_margin",
        "gates.min_concept", "gates.min_prompt", "gates.min_prompt_margin", "gates.min_global_concept",
        "gates.min_global_prompt", "verdict", "passed", "error", "failures", "panel", "concept_per_reference",
        "distractor_prompts", "human.concept", "human.prompt", "extras.prompt_text", "extras.ref_grid",
    ]
    assert list(frame["nodeid"]) == ["m.toml::a", "m.toml::b", "m.toml::c"]  # sorted like a single run
    assert list(frame["verdict"]) == ["failed", "passed", "passed"]
    assert list(frame["source"]) == [str(first), str(first), str(second)]
    assert frame["scores.concept"].tolist() == [0.4, 0.9, 0.7]
    assert frame["gates.min_concept"].tolist() == [0.5] * 3 and frame["gates.min_prompt"].isna().all()
    assert str(frame["scores.concept"].dtype) == "float64" and str(frame["passed"].dtype) == "bool"
    assert frame.attrs["settings"] == {**SETTINGS, "checkpoint": None} and frame.attrs["suite_gates"] == {}
    table = report.concept_table(frame)  # the summary table is computed from the frame
    assert [(row["suite"], row["concept"], row["cases"], row["passed"]) for row in table] == [("s", "dog", 3, 2)]
    assert table[0]["mean_concept"] == pytest.approx((0.4 + 0.9 + 0.7) / 3)


def test_a_shard_whose_pytest_run_failed_outside_masc_fails_the_merge(tmp_path, capsys):
    first = write_shard(tmp_path / "shard-1.json", [_record("m.toml::a")])
    second = write_shard(tmp_path / "shard-2.json", [_record("m.toml::b")], exitstatus=1)
    code, out, _ = merge_cli(capsys, first, second)
    assert code == 1
    assert f"SHARD FAILED {second}: pytest exited with status 1 (tests failed) although its MaSC cases passed" in out
    passing = write_shard(tmp_path / "shard-3.json", [_record("m.toml::c")], exitstatus=5)  # collected nothing
    code, out, _ = merge_cli(capsys, first, passing)
    assert code == 0 and out[-1] == "MaSC PASSED: 2 cases from 2 shard(s): 2 passed"


def test_merge_writes_a_baseline_of_the_whole_run_that_a_later_merge_checks(tmp_path, capsys):
    first = write_shard(tmp_path / "shard-1.json", [_record("m.toml::a", 0.8)])
    second = write_shard(tmp_path / "shard-2.json", [_record("m.toml::b", 0.6)])
    code, out, _ = merge_cli(capsys, first, second, f"--write-baseline={tmp_path / 'baseline.json'}")
    assert code == 0 and f"baseline written to {tmp_path / 'baseline.json'} (2 cases, 1 concept)" in out
    baseline = report.read_baseline(tmp_path / "baseline.json")
    assert baseline["concepts"]["s::dog"]["concept"] == pytest.approx(0.7) and baseline["dtype"] == "float32"
    code, out, _ = merge_cli(capsys, first, second, f"--baseline={tmp_path / 'baseline.json'}")
    assert code == 0 and (f"baseline {tmp_path / 'baseline.json'}: no concept regressed by more than 0.02 (1 concept "
                          "compared, case by case: paired by case, seeds averaged)") in out
    worse = [write_shard(tmp_path / "shard-3.json", [_record("m.toml::a", 0.75)]),
             write_shard(tmp_path / "shard-4.json", [_record("m.toml::b", 0.55)])]  # both cases 0.05 lower
    code, out, _ = merge_cli(capsys, *worse, f"--baseline={tmp_path / 'baseline.json'}", "--max-drop=0.04")
    assert code == 1 and any(line.startswith("  REGRESSION s::dog: mean CP dropped 0.0500, more than max_drop 0.04 (95% CI "
                                             "of the change [-0.0500, -0.0500], 2 cases") for line in out), out


def test_plain_pytest_and_importing_the_report_module_leave_pandas_unloaded(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    pytester.makeconftest(textwrap.dedent("""
        import sys

        import pytest_masc.report  # the public module itself imports no pandas either

        def pytest_terminal_summary(terminalreporter):
            heavy = sorted(m for m in ("pandas", "torch") if m in sys.modules)
            terminalreporter.write_line(f"HEAVY-MODULES={heavy}")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "HEAVY-MODULES=[]" in result.stdout.lines
