"""Selections, partial runs and shards against suite-level gates and baselines (issues #16, #17):
a gate or a baseline concept is judged on what ran, a partial run never shrinks a baseline,
a concept that vanishes from a run fails the check, and the merge says what pytest says."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_masc import report
from masc_suites import make_images, run
from test_report_merge import masc_section, merge_cli

STUDIO = """
cases = "cases.csv"

[suite]
name = "studio"
min_concept = 0.0
min_alpha_prompt = -1.0

[concepts.corgi]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"

[concepts.teapot]
subject = "teapot"
reference = "refs/dog2.png"
reference_mask = "refs/dog2_mask.png"
"""
CORGI_ROWS = """id,concept,prompt,image,mask,min_concept,human_prompt
corgi-beach,corgi,a dog on the beach,out/beach.png,out/beach_mask.png,,
corgi-snow,corgi,a dog in the snow,out/snow.png,out/snow_mask.png,,
"""
TEAPOT_ROWS = """teapot-beach,teapot,a teapot on the beach,out/beach.png,out/beach_mask.png,,4|3
teapot-snow,teapot,a teapot in the snow,out/snow.png,out/snow_mask.png,,1|2
teapot-city,teapot,a teapot in the city,out/city.png,out/city_mask.png,,2|4
"""
GARDEN = """
[suite]
name = "garden"
min_concept = 0.0
min_alpha_concept = -1.0

[concepts.rose]
subject = "rose"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"
""" + "".join(textwrap.dedent(f"""
    [[cases]]
    id = "rose-{index}"
    concept = "rose"
    prompt = "a rose {where}"
    image = "{image}.png"
    mask = "{image}_mask.png"
    human = {{ concept = [{rating}, {4 - rating}] }}
""") for index, (where, image, rating) in enumerate([
    ("on the beach", "out/beach", 4), ("in the snow", "out/snow", 1), ("in the city", "out/city", 3),
    ("at home", "refs/dog2", 2),
], start=1))


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_studio.toml").write_text(STUDIO)
    (pytester.path / "cases.csv").write_text(CORGI_ROWS + TEAPOT_ROWS)
    (pytester.path / "masc_garden.toml").write_text(GARDEN)
    return pytester.path


GATES_HEADER = "suite-level gates (each suite's Krippendorff's alpha vs humans; 95% bootstrap CI):"


def test_suite_gates_are_judged_on_the_cases_that_ran(pytester, project, tiny_model_dir):
    """#16: `-k corgi` ran no rated case of studio and no case of garden: neither fails."""
    corgi = run(pytester, tiny_model_dir, "-k", "corgi", "--masc-json=corgi.json")
    corgi.assert_outcomes(passed=2)
    assert corgi.ret == 0, corgi.stdout.str()
    assert "SUITE GATE FAILED" not in corgi.stdout.str()
    corgi.stdout.fnmatch_lines([
        GATES_HEADER,
        "  garden  min_alpha_concept -1: not checked, none of its cases ran",
        "  studio  min_alpha_prompt -1: not checked, none of its 3 rated cases ran",
    ])

    # Some rated cases deselected: the alpha of those that ran, saying how many; too few: no verdict.
    some = run(pytester, tiny_model_dir, "-k", "not rose-4 and not teapot-city")
    assert some.ret == 0, some.stdout.str()
    some.stdout.re_match_lines([
        r"  garden  min_alpha_concept -1: alpha -?\d\.\d+ \[-?\d\.\d+, -?\d\.\d+\] over 3 of 4 rated cases: passed",
        r"  studio  min_alpha_prompt -1: not checked, only 2 of its 3 rated cases ran, too few for an alpha",
    ])
    everything = run(pytester, tiny_model_dir, "--masc-json=all.json")
    assert everything.ret == 0
    everything.stdout.re_match_lines([
        r"agreement with human ratings, all suites pooled \(Krippendorff's alpha, interval; 95% bootstrap CI\):",
        r"  garden  min_alpha_concept -1: alpha -?\d\.\d+ \[.*\] over 4 rated cases: passed",
        r"  studio  min_alpha_prompt -1: alpha -?\d\.\d+ \[.*\] over 3 rated cases: passed",
    ])
    gates = json.loads((project / "all.json").read_text())["summary"]["suite_gates"]
    assert [(g["suite"], g["used"], g["rated"], g["verdict"]) for g in gates] == [
        ("garden", 4, 4, "passed"), ("studio", 3, 3, "passed"),
    ]

    # A suite whose rated cases all ran but cannot give an alpha still fails, selection or not.
    (project / "cases.csv").write_text(CORGI_ROWS + TEAPOT_ROWS.replace(",2|4\n", ",\n"))
    short = run(pytester, tiny_model_dir, "-k", "studio")
    assert short.ret == 1
    short.stdout.fnmatch_lines([
        "SUITE GATE FAILED studio: min_alpha_prompt = -1 but no human-rated cases give an alpha "
        "(2 scored rated case(s); an alpha needs at least 3)",
    ])


def _concepts(path: Path) -> dict:
    return json.loads(path.read_text())["concepts"]


def test_a_partial_or_failing_run_never_shrinks_the_baseline(pytester, project, tiny_model_dir):
    """#16: `-k corgi --masc-update-baseline` updates corgi and keeps teapot and rose."""
    baseline = project / "baseline.json"
    full = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert full.ret == 0
    full.stdout.fnmatch_lines([f"baseline written to {baseline} (9 cases, 3 concepts)"])
    written = _concepts(baseline)
    assert sorted(written) == ["garden::rose", "studio::corgi", "studio::teapot"]

    corgi = run(pytester, tiny_model_dir, "-k", "corgi", "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert corgi.ret == 0
    corgi.stdout.fnmatch_lines([
        f"baseline {baseline} updated with this run's 1 concept (2 cases); "
        "the concepts it did not score in full are left as they were",
        "  kept, not in this run: garden::rose, studio::teapot",
    ])
    assert _concepts(baseline) == written  # the same scores: nothing dropped, nothing changed
    assert len(json.loads(baseline.read_text())["records"]) == 9

    one_teapot = run(pytester, tiny_model_dir, "-k", "corgi or teapot-beach", "--masc-baseline=baseline.json",
                     "--masc-update-baseline")
    one_teapot.stdout.fnmatch_lines(["  not written, only part of its cases ran: studio::teapot (1 of 3 cases ran)"])
    assert _concepts(baseline)["studio::teapot"] == written["studio::teapot"]

    # A failing run writes nothing: its failures would become what later runs are held to.
    (project / "cases.csv").write_text(CORGI_ROWS.replace("out/snow_mask.png,,", "out/snow_mask.png,0.9999,") + TEAPOT_ROWS)
    before = baseline.read_text()
    failing = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert failing.ret == 1
    failing.stdout.fnmatch_lines([
        f"baseline NOT written to {baseline}: this run failed (1 case(s) below their gates); a baseline is what "
        "later runs are held to, so only a passing run writes one: fix or deselect (-k) the failing cases and run again",
    ])
    assert baseline.read_text() == before


def test_a_concept_that_vanishes_from_the_run_fails_the_baseline_check(pytester, project, tiny_model_dir, capsys):
    """#16: teapot left out (deselected, its rows deleted, or declared without cases) is not a pass."""
    baseline = project / "baseline.json"
    assert run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline").ret == 0

    corgi = run(pytester, tiny_model_dir, "-k", "corgi", "--masc-baseline=baseline.json", "--masc-json=corgi.json")
    assert corgi.ret == 1
    corgi.stdout.fnmatch_lines([
        f"baseline check against {baseline} failed:",
        "  MISSING garden::rose: in the baseline, not in this run",
        "  MISSING studio::teapot: in the baseline, not in this run",
        "  a concept left out of a run can hide its regression: run its cases, or leave it out on purpose "
        "with --masc-baseline-skip=garden::rose,studio::teapot",
    ])
    assert " 2 passed, 7 deselected, 2 MaSC baseline concepts missing in " in corgi.outlines[-1]
    skipped = run(pytester, tiny_model_dir, "-k", "corgi", "--masc-baseline=baseline.json",
                  "--masc-baseline-skip=studio::teapot,garden::*")
    assert skipped.ret == 0, skipped.stdout.str()
    skipped.stdout.fnmatch_lines([
        f"baseline {baseline}: no concept regressed by more than 0.02 (1 concept compared, case by case: "
        "paired by case, seeds averaged)",
        "  skipped as asked, not in this run: garden::rose, studio::teapot",
    ])
    bad_skip = run(pytester, tiny_model_dir, "--masc-baseline-skip=teapot")
    assert bad_skip.ret == 4
    bad_skip.stderr.fnmatch_lines(["*--masc-baseline-skip / masc_baseline_skip: 'teapot' is not SUITE::CONCEPT*"])

    # The merge of that shard says the same, naming its own option.
    code, out, err = merge_cli(capsys, project / "corgi.json", f"--baseline={baseline}")
    assert (code, err) == (1, "")
    assert ("  a concept left out of a run can hide its regression: run its cases, or leave it out on purpose "
            "with --baseline-skip=garden::rose,studio::teapot") in out
    code, out, _ = merge_cli(capsys, project / "corgi.json", f"--baseline={baseline}", "--baseline-skip=studio::*,garden::rose")
    assert code == 0 and out[-1] == "MaSC PASSED: 2 cases from 1 shard(s): 2 passed"

    # Its rows deleted, the concept still declared (with no cases): missing, not passing. (Studio's
    # alpha gate goes too: with no rated case left it would fail on its own.)
    (project / "cases.csv").write_text(CORGI_ROWS)
    (project / "masc_studio.toml").write_text(STUDIO.replace("min_alpha_prompt = -1.0\n", ""))
    deleted = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert deleted.ret == 1
    deleted.stdout.fnmatch_lines(["  MISSING studio::teapot: in the baseline, not in this run"])
    # ... and an update keeps it; once its suite no longer declares it, an update drops it.
    kept = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline")
    kept.stdout.fnmatch_lines(["  kept, not in this run: studio::teapot"])
    assert "studio::teapot" in _concepts(baseline)
    (project / "masc_studio.toml").write_text(STUDIO.replace("min_alpha_prompt = -1.0\n", "").split("[concepts.teapot]")[0])
    dropped = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline")
    dropped.stdout.fnmatch_lines(["  dropped, no longer declared in its suite: studio::teapot"])
    assert sorted(_concepts(baseline)) == ["garden::rose", "studio::corgi"]
    assert not any(entry["concept"] == "teapot" for entry in json.loads(baseline.read_text())["records"])


def test_merge_names_its_own_options_and_exits_2_on_unreadable_input(pytester, project, tiny_model_dir, capsys):
    """#17: a missing --baseline is unreadable input (2), and every hint names merge's options."""
    shard = run(pytester, tiny_model_dir, "-k", "corgi", "--masc-json=corgi.json")
    assert shard.ret == 0
    code, out, err = merge_cli(capsys, project / "corgi.json", f"--baseline={project / 'missing.json'}")
    assert (code, out) == (2, [])
    assert err.strip() == f"error: {project / 'missing.json'}: baseline file not found (write one with --write-baseline=FILE)"
    assert "--masc-" not in err

    # A baseline of other settings: refused, with merge's flag to compare anyway.
    baseline = project / "baseline.json"
    code, out, _ = merge_cli(capsys, project / "corgi.json", f"--write-baseline={baseline}")
    assert code == 0 and f"baseline written to {baseline} (2 cases, 1 concept)" in out
    data = json.loads(baseline.read_text())
    data["max_num_patches"] = 256
    baseline.write_text(json.dumps(data))
    code, out, _ = merge_cli(capsys, project / "corgi.json", f"--baseline={baseline}")
    assert code == 1
    assert (f"  ERROR cannot compare: {baseline} was made with max patches 256; this run uses max patches 1024 "
            "(pass --allow-baseline-mismatch to compare anyway)") in out
    assert not any("--masc-" in line for line in out)
    # ... and not updated either: its other concepts could not be kept beside this run's.
    code, out, err = merge_cli(capsys, project / "corgi.json", f"--write-baseline={baseline}")
    assert code == 2 and out == []
    assert "cannot update: " in err and "delete it to start a new baseline from a full run" in err


def test_merge_updates_a_baseline_only_from_a_passing_run_and_keeps_the_rest(pytester, project, tiny_model_dir, capsys):
    baseline = project / "baseline.json"
    assert run(pytester, tiny_model_dir, "--masc-json=all.json").ret == 0
    code, out, _ = merge_cli(capsys, project / "all.json", f"--write-baseline={baseline}")
    assert code == 0
    written = _concepts(baseline)
    assert run(pytester, tiny_model_dir, "-k", "corgi", "--masc-json=corgi.json").ret == 0
    code, out, _ = merge_cli(capsys, project / "corgi.json", f"--write-baseline={baseline}")
    assert code == 0 and "  kept, not in this run: garden::rose, studio::teapot" in out
    assert _concepts(baseline) == written

    (project / "cases.csv").write_text(CORGI_ROWS.replace("out/snow_mask.png,,", "out/snow_mask.png,0.9999,") + TEAPOT_ROWS)
    assert run(pytester, tiny_model_dir, "-k", "corgi", "--masc-json=failing.json").ret == 1
    before = baseline.read_text()
    code, out, _ = merge_cli(capsys, project / "failing.json", f"--write-baseline={baseline}")
    assert code == 1
    assert (f"baseline NOT written to {baseline}: this run failed (1 case(s) below their gates); a baseline is what "
            "later runs are held to, so only a passing run writes one: merge the shards of a passing run") in out
    assert baseline.read_text() == before


def test_merge_refuses_one_suite_name_from_two_suite_files(pytester, tiny_model_dir, capsys):
    """#16: shards are separate runs, so only the merge can see two files naming one suite."""
    from masc_suites import SUITE

    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    for folder in ("release", "nightly"):
        make_images(pytester.path / folder)
        (pytester.path / folder / "masc_dogs.toml").write_text(SUITE)  # both: name = "dog-release"
        run(pytester, tiny_model_dir, folder, f"--masc-json={folder}.json").assert_outcomes(passed=3)
    code, out, err = merge_cli(capsys, pytester.path / "release.json", pytester.path / "nightly.json")
    assert (code, out) == (2, [])
    assert err.strip() == (
        f"error: shards refused: suite 'dog-release' comes from two suite files, release/masc_dogs.toml "
        f"({pytester.path / 'release.json'}) and nightly/masc_dogs.toml ({pytester.path / 'nightly.json'}); "
        "suites of one run need distinct names (rename one)"
    )
