"""The pytest plugin, end to end with ``pytester`` on a tiny random-weight checkpoint."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masc_suites import SUITE, make_images, run, write_png


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- switch


def test_without_masc_gates_are_skipped_and_torch_is_not_imported(pytester, suite_dir):
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.5)
        def test_gate(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog")

        def test_plain():
            assert True
    """))
    pytester.makeconftest(textwrap.dedent("""
        import sys

        def pytest_terminal_summary(terminalreporter):
            heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
            terminalreporter.write_line(f"HEAVY-MODULES={heavy}")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*MaSC gates are off: pass --masc to run them*"])
    assert "HEAVY-MODULES=[]" in result.stdout.lines
    collected = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert "masc_dogs.toml" not in collected.stdout.str()


def test_the_gates_plugin_is_registered_only_under_masc_and_unregistered_at_the_end(pytester):
    """The ``--masc`` hooks live on a plugin object that ``pytest_configure`` registers under
    ``--masc`` only, and ``pytest_unconfigure`` unregisters (as junitxml does with its LogXML)."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    pytester.makeconftest(textwrap.dedent("""
        import pytest

        SEEN = []

        def pytest_sessionstart(session):
            SEEN.append(type(session.config.pluginmanager.get_plugin("masc-gates")).__name__)

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            SEEN.append(type(config.pluginmanager.get_plugin("masc-gates")).__name__)
            with open("seen.txt", "a") as seen:
                seen.write(" ".join(SEEN) + "\\n")
            SEEN.clear()
    """))
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    pytester.runpytest("--masc", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (pytester.path / "seen.txt").read_text().splitlines() == ["MascGatesPlugin NoneType", "NoneType NoneType"]


NOTHING_TO_GATE = ("masc: --masc collected nothing to gate. pytest-masc collects suite files named masc_*.toml "
                   "(under testpaths or the paths given), tests marked @pytest.mark.masc, and the protocol of "
                   "--masc-protocol.")


def test_masc_with_nothing_to_gate_says_what_it_collects(pytester):
    """``pytest --masc`` in a folder with no suite file, no marked test and no protocol: next to
    pytest's "no tests ran" (exit 5), a line says what pytest-masc would have collected."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    empty = pytester.runpytest("--masc", "-p", "no:cacheprovider")
    assert empty.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert NOTHING_TO_GATE in empty.outlines
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    plain = pytester.runpytest("--masc", "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    assert NOTHING_TO_GATE in plain.outlines
    without_masc = pytester.runpytest("-p", "no:cacheprovider")
    assert "nothing to gate" not in without_masc.stdout.str()


def test_nothing_to_gate_under_xdist_comes_from_what_the_workers_collected(pytester):
    pytest.importorskip("xdist")
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    plain = pytester.runpytest_subprocess("--masc", "-p", "no:cacheprovider", "-n", "2")
    plain.assert_outcomes(passed=1)
    assert NOTHING_TO_GATE in plain.outlines
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.5)
        def test_gate(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog")
    """))
    marked = pytester.runpytest_subprocess("--masc", "-p", "no:cacheprovider", "-n", "2", "--collect-only")
    assert "nothing to gate" not in marked.stdout.str()


def test_a_collected_suite_is_something_to_gate(pytester, suite_dir):
    suite = pytester.runpytest("--masc", "--masc-model=unused", "-p", "no:cacheprovider", "--collect-only")
    suite.stdout.fnmatch_lines(["*masc_dogs.toml*"])
    assert "nothing to gate" not in suite.stdout.str()


def test_suite_cases_collected_with_masc(pytester, suite_dir, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*masc_dogs.toml::dog-beach",
        "*masc_dogs.toml::dog-2",
        "*masc_dogs.toml::dog-self",
    ])


# --------------------------------------------------------------------------- suites


def test_toml_suite_pass_fail_and_summary(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE + textwrap.dedent("""
        [[cases]]
        id = "dog-strict"
        concept = "dog"
        prompt = "a dog in the city"
        image = "out/city.png"
        mask = "out/city_mask.png"
        min_concept = 0.999
    """))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == 1
    output = result.stdout.str()
    assert "MaSC gate failed: dog-release / dog / case 'dog-strict'" in output
    assert "concept preservation (CP)" in output and "< min_concept 0.9990" in output
    assert "PF text 'in the city'" in output
    assert "patches: reference" in output and "background pooled" in output
    result.stdout.fnmatch_lines([
        "*MaSC summary*",
        "model *tiny-siglip2-naflex*device cpu, dtype float32, 1024 patches",
        "images encoded 4, *",
        "suite*concept*cases*pass*mean CP*min CP*mean PF*min margin",
        "dog-release*dog*4*3*",
    ])
    data = read_json(suite_dir / "out.json")
    records = {r["case_id"]: r for r in data["records"]}
    assert set(records) == {"dog-beach", "dog-2", "dog-self", "dog-strict"}
    assert records["dog-self"]["scores"]["concept"] == pytest.approx(1.0, abs=1e-5)
    assert records["dog-self"]["passed"] is True
    assert records["dog-strict"]["passed"] is False
    assert records["dog-strict"]["gates"] == {"min_concept": 0.999}
    assert records["dog-beach"]["gates"] == {"min_concept": 0.0}


def test_all_passing_suite_exits_zero(pytester, suite_dir, tiny_model_dir):
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=3)
    assert result.ret == 0


def test_csv_suite_matches_toml_suite(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "cases.csv").write_text(textwrap.dedent("""\
        id,concept,prompt,image,mask,min_concept,distractors
        dog-beach,dog,a dog on the beach,out/beach.png,out/beach_mask.png,,
        dog-2,dog,a dog in the snow,out/snow.png,out/snow_mask.png,,
        dog-self,dog,a dog in the city,refs/dog.png,refs/dog_mask.png,0.999,
    """))
    (suite_dir / "masc_csv.toml").write_text(textwrap.dedent("""
        cases = "cases.csv"
        [suite]
        name = "dog-release-csv"
        min_concept = 0.0
        [concepts.dog]
        subject = "dog"
        reference = "refs/dog.png"
        reference_mask = "refs/dog_mask.png"
    """))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=6)
    records = read_json(suite_dir / "out.json")["records"]
    by_suite = {}
    for record in records:
        by_suite.setdefault(record["suite"], {})[record["case_id"]] = record
    assert set(by_suite) == {"dog-release", "dog-release-csv"}
    for case_id, record in by_suite["dog-release"].items():
        twin = by_suite["dog-release-csv"][case_id]
        assert twin["scores"] == record["scores"]  # the same images scored in one run: the same floats
        assert twin["gates"] == record["gates"]


def test_margin_uses_other_prompts_of_the_concept(pytester, suite_dir, tiny_model_dir, reference_masc):
    """The beach case's margin is its PF minus the best PF of the concept's other two prompts on
    the same image, each PF computed by the reference implementation (masc-metric, same
    checkpoint, same 1024-patch budget)."""
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    assert result.ret == 0
    records = {r["case_id"]: r for r in read_json(suite_dir / "out.json")["records"]}
    beach = records["dog-beach"]
    assert {d["prompt"] for d in beach["distractor_prompts"]} == {"a dog in the snow", "a dog in the city"}
    ref_image, ref_mask, out_image, out_mask = (
        Image.open(suite_dir / name) for name in ("refs/dog.png", "refs/dog_mask.png", "out/beach.png", "out/beach_mask.png"))
    reference_pf = {
        prompt: reference_masc.score(ref_image, np.asarray(ref_mask), out_image, np.asarray(out_mask), prompt,
                                     object_name="dog").pf
        for prompt in ("a dog on the beach", "a dog in the snow", "a dog in the city")
    }
    expected = reference_pf["a dog on the beach"] - max(reference_pf["a dog in the snow"], reference_pf["a dog in the city"])
    assert abs(expected) > 1e-4  # a margin the check can tell from zero
    assert beach["scores"]["prompt_margin"] == pytest.approx(expected, abs=1e-4)  # across implementations
    assert beach["extras"]["prompt_text"] == "on the beach"


def test_margin_gate_with_explicit_distractors(pytester, suite_dir, tiny_model_dir):
    """A margin gate of +0.5 cannot pass here: cosines of one image to two prompts differ far less."""
    suite = SUITE + textwrap.dedent("""
        [[cases]]
        id = "dog-margin"
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach.png"
        mask = "out/beach_mask.png"
        distractors = ["a dog in a kitchen"]
        min_prompt_margin = 0.5
    """)
    (suite_dir / "masc_dogs.toml").write_text(suite)
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=3, failed=1)
    output = result.stdout.str()
    assert "prompt-following margin" in output and "< min_prompt_margin 0.5000" in output
    assert "best distractor: 'a dog in a kitchen'" in output


def test_several_references_average_concept(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE.replace(
        'reference = "refs/dog.png"\nreference_mask = "refs/dog_mask.png"',
        'reference = ["refs/dog.png", "refs/dog2.png"]\nreference_mask = ["refs/dog_mask.png", "refs/dog2_mask.png"]',
    ).replace("min_concept = 0.999", "min_concept = 0.0"))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=3)
    for record in read_json(suite_dir / "out.json")["records"]:
        per_reference = record["concept_per_reference"]
        assert len(per_reference) == 2
        assert record["scores"]["concept"] == pytest.approx(sum(per_reference) / 2, abs=1e-6)


def test_several_references_gate_the_mean_global_concept(pytester, suite_dir, tiny_model_dir, tiny_masc):
    """``min_global_concept`` gates the mean over the references, worked out here from each
    reference alone: a gate just under it passes, one just over it fails, and either
    reference's own value lies beyond that margin."""
    root = suite_dir
    write_png(root / "refs/flat.png", np.full((64, 96, 3), 120, np.uint8))  # unlike noise, to the tiny model
    per_reference = [
        tiny_masc.score(str(root / f"refs/{name}.png"), str(root / "refs/dog_mask.png"), str(root / "out/beach.png"),
                        str(root / "out/beach_mask.png"), "a dog on the beach", "dog").global_concept
        for name in ("dog", "flat")
    ]
    mean = sum(per_reference) / 2
    margin = abs(per_reference[0] - per_reference[1]) / 4  # each reference is 2 margins from the mean
    assert margin > 1e-3
    cases = "".join(textwrap.dedent(f"""
        [[cases]]
        id = "{case_id}"
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach.png"
        mask = "out/beach_mask.png"
        min_global_concept = {minimum!r}
    """) for case_id, minimum in (("under", mean - margin), ("over", mean + margin)))
    header = SUITE.split("[[cases]]")[0].replace(
        'reference = "refs/dog.png"\nreference_mask = "refs/dog_mask.png"',
        'reference = ["refs/dog.png", "refs/flat.png"]\nreference_mask = ["refs/dog_mask.png", "refs/dog_mask.png"]',
    )
    (suite_dir / "masc_dogs.toml").write_text(header + cases)
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*case 'over'*", f"*global concept similarity {mean:.4f} < min_global_concept*"])
    for record in read_json(suite_dir / "out.json")["records"]:
        assert record["scores"]["global_concept"] == pytest.approx(mean, abs=1e-5)
        assert record["passed"] == (record["case_id"] == "under")


def test_bad_image_errors_that_case_and_others_still_run(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "out/snow.png").write_bytes(b"not a png at all")
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*MaSC error in *dog-2*snow.png*not an image*"])


def test_empty_reference_mask_fails_every_case_with_reason(pytester, suite_dir, tiny_model_dir):
    write_png(suite_dir / "refs/dog_mask.png", np.zeros((64, 96), np.uint8))
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(failed=3)
    assert "reference mask is empty" in result.stdout.str()


def test_full_output_mask_explains_nan_prompt_following(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE + textwrap.dedent("""
        [[cases]]
        id = "dog-full"
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach.png"
        mask = "out/full_mask.png"
        min_prompt = -1.0
    """))
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=3, failed=1)
    assert "no background is left to pool for PF" in result.stdout.str()


def test_collection_error_names_file_case_and_field(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE.replace('id = "dog-beach"', 'id = "dog-beach"\nmin_concpet = 0.3'))
    result = run(pytester, tiny_model_dir)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*masc_dogs.toml*dog-beach*min_concpet*did you mean 'min_concept'*"])


def test_artifacts_panel_written_for_failing_case(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE.replace("min_concept = 0.999", "min_concept = 1.0").replace(
        'image = "refs/dog.png"', 'image = "out/city.png"').replace('mask = "refs/dog_mask.png"\nmin', 'mask = "out/city_mask.png"\nmin'))
    result = run(pytester, tiny_model_dir, "--masc-artifacts", "panels")
    result.assert_outcomes(passed=2, failed=1)
    panels = list((suite_dir / "panels").glob("*.png"))
    assert len(panels) == 1 and "dog-self" in panels[0].name
    with Image.open(panels[0]) as panel:
        assert panel.height > 200 and panel.width > 3 * 100
    assert f"panel: {panels[0]}" in result.stdout.str()


# --------------------------------------------------------------------------- python tests


def test_marker_tests_pass_fail_and_return_score(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import math
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog",
                          min_concept=0.0, distractors=["a dog in the snow"])
        def test_passes(masc):
            score = masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")
            assert -1 <= score.concept <= 1
            assert math.isclose(score.prompt_margin, score.prompt - score.distractor_prompts["a dog in the snow"], abs_tol=1e-6)

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.9999)
        def test_fails(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")

        def test_override_in_check(masc):
            score = masc.check(image="refs/dog.png", mask="refs/dog_mask.png", prompt="a dog",
                               reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.999)
            assert score.concept == pytest.approx(1.0, abs=1e-5)
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*MaSC gate failed: *test_gates.py / dog / case 'test_fails'*"])
    kinds = {r["case_id"]: r["kind"] for r in read_json(suite_dir / "out.json")["records"]}
    assert kinds == {"test_passes": "python", "test_fails": "python", "test_override_in_check": "python"}


def test_unknown_marker_kwarg_is_a_usage_error(pytester, tiny_model_dir):
    pytester.makepyfile(test_typo=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="r.png", reference_mask="m.png", min_concpt=0.5)
        def test_typo(masc):
            pass
    """))
    for args in ([], ["--masc", f"--masc-model={tiny_model_dir}"]):
        result = pytester.runpytest("-p", "no:cacheprovider", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*unknown @pytest.mark.masc argument 'min_concpt' (did you mean 'min_concept'?)*"])


def test_check_overrides_are_validated_like_marker_arguments(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_overrides=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png")
        @pytest.mark.parametrize("override", [{"min_concept": float("nan")}, {"min_concept": 2}, {"min_cocept": 0.1},
                                              {"human": {"concept": 7}}])
        def test_override(masc, override):
            with pytest.raises(TypeError) as error:
                masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog", **override)
            print("MESSAGE", error.value)

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        def test_scalar_human_rating(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog", human={"concept": 3})
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    result = run(pytester, tiny_model_dir, "-s", "--masc-json", "out.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        "*MESSAGE masc.check(): min_concept=nan must be a number in *",
        "*MESSAGE masc.check(): min_concept=2 must be a number in *",
        "*MESSAGE masc.check(): unknown @pytest.mark.masc argument 'min_cocept' (did you mean 'min_concept'?)*",
        "*MESSAGE masc.check(): human*'concept'*rating 7 must be a number in 0..4",
    ])
    human = [r["human"] for r in read_json(suite_dir / "out.json")["records"]]
    assert human == [{"concept": [3.0]}]


def test_segmenter_fixture_supplies_masks(pytester, suite_dir, tiny_model_dir):
    pytester.makeconftest(textwrap.dedent("""
        import numpy as np
        import pytest
        from PIL import Image

        CALLS = []

        @pytest.fixture
        def masc_segmenter():
            def segment(image):
                CALLS.append(str(image))
                width, height = Image.open(image).size
                mask = np.zeros((height, width), np.uint8)
                mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
                return mask
            return segment
    """))
    pytester.makepyfile(test_seg=textwrap.dedent("""
        import pytest
        from conftest import CALLS

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        def test_segmented(masc):
            score = masc.check(image="out/beach.png", prompt="a dog on the beach")
            assert len(CALLS) == 1 and CALLS[0].endswith("beach.png")
            assert score.extras["out_foreground_patches"] > 0
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    run(pytester, tiny_model_dir).assert_outcomes(passed=1)


def test_missing_model_gives_clear_error(pytester, suite_dir, tmp_path):
    result = pytester.runpytest("--masc", f"--masc-model={tmp_path / 'no-such-model'}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*cannot load the SigLIP2 checkpoint*no-such-model*"])


def test_ini_options(pytester, suite_dir, tiny_model_dir):
    (pytester.path / "pytest.ini").write_text(textwrap.dedent(f"""
        [pytest]
        masc_model = {tiny_model_dir}
        masc_max_patches = 256
        masc_json = from-ini.json
    """))
    result = pytester.runpytest("--masc", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    data = read_json(suite_dir / "from-ini.json")
    assert data["runs"][0]["max_num_patches"] == 256
    assert data["runs"][0]["model"] == str(tiny_model_dir)


# --------------------------------------------------------------------------- baselines and xdist


def test_baseline_update_then_regression_fails_the_session(pytester, suite_dir, tiny_model_dir):
    baseline = suite_dir / "baseline.json"
    first = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert first.ret == 0
    data = read_json(baseline)
    assert data["version"] == 4
    assert {(r["key"], r["case_id"], r["seed"]) for r in data["records"]} == {
        ("masc_dogs.toml::dog-beach", "dog-beach", None), ("masc_dogs.toml::dog-2", "dog-2", None),
        ("masc_dogs.toml::dog-self", "dog-self", None),
    }
    assert "dog-release::dog" in data["concepts"]
    assert data["environment"]["dtype"] == "float32" and data["environment"]["device"] == "cpu"
    assert len(data["canary"]["scores"]["CP"]) == 4  # the canary, scored in this environment
    first.stdout.fnmatch_lines(["*baseline written to*baseline.json (3 cases, 1 concept)*"])

    same = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*no concept regressed by more than 0.02 (1 concept compared, case by case*",
                               "*dog-release::dog  3 x 1 *+0.0000 ?+0.0000, +0.0000? *non-inferior*"])

    for record in data["records"]:  # every case 0.05 better in the baseline: a drop of 0.05 now
        record["CP"] += 0.05
    baseline.write_text(json.dumps(data))
    worse = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    worse.assert_outcomes(passed=3)
    assert worse.ret == 1
    worse.stdout.fnmatch_lines(["*REGRESSION dog-release::dog: mean CP dropped 0.0500, more than max_drop 0.02 *"])
    tolerant = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-max-drop", "0.1")
    assert tolerant.ret == 0


def test_update_baseline_refused_with_several_workers(pytester, suite_dir, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "-n", "2", "--masc-baseline", "b.json", "--masc-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--masc-update-baseline is refused with 2 xdist workers*"])


def test_xdist_two_workers_give_the_same_records(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0)
        def test_gate(masc):
            masc.check(image="out/city.png", mask="out/city_mask.png", prompt="a dog in the city")
    """))
    single = run(pytester, tiny_model_dir, "--masc-json", "one.json", subprocess=True)
    single.assert_outcomes(passed=4)
    double = run(pytester, tiny_model_dir, "-n", "2", "--masc-json", "two.json", subprocess=True)
    double.assert_outcomes(passed=4)
    double.stdout.fnmatch_lines(["*MaSC summary*", "dog-release*dog*3*3*"])
    one, two = read_json(suite_dir / "one.json"), read_json(suite_dir / "two.json")
    assert len(two["records"]) == 4
    assert [r["nodeid"] for r in one["records"]] == [r["nodeid"] for r in two["records"]]
    for a, b in zip(one["records"], two["records"]):
        assert a == b  # a score does not depend on the worker or batch: the same floats
    assert len(one["summary"]["concepts"]) == len(two["summary"]["concepts"]) == 2
    assert one["summary"]["concepts"] == two["summary"]["concepts"]


def test_check_with_missing_image_names_the_file_without_scorer_frames(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_missing=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        def test_missing(masc):
            masc.check(image="out/nowhere.png", mask="out/beach_mask.png", prompt="a dog")
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "InputError: " in output and "nowhere.png: output image file not found" in output
    assert "scorer.py" not in output


def test_subject_missing_from_prompt_and_long_prompt_are_reported(pytester, suite_dir, tiny_model_dir):
    long_prompt = "a dog " + "running along a very long and winding sandy beach " * 2
    (suite_dir / "masc_dogs.toml").write_text(SUITE + textwrap.dedent(f"""
        [[cases]]
        id = "dog-absent"
        concept = "dog"
        prompt = "a puppy on the beach"
        image = "out/beach.png"
        mask = "out/beach_mask.png"
        min_concept = 0.9999

        [[cases]]
        id = "dog-long"
        concept = "dog"
        prompt = "{long_prompt}"
        image = "out/snow.png"
        mask = "out/snow_mask.png"
    """))
    result = run(pytester, tiny_model_dir, "-W", "always::pytest_masc.errors.PromptTruncatedWarning")
    result.assert_outcomes(passed=4, failed=1)
    output = result.stdout.str()
    assert "note: subject 'dog' does not occur in the prompt, so nothing was stripped" in output
    result.stdout.fnmatch_lines(["*PromptTruncatedWarning: dog-release / case 'dog-long': prompt * was truncated for PF*"])


@pytest.mark.parametrize(("args", "message"), [
    (["--masc-max-patches=0"], "*--masc-max-patches must be positive, got 0*"),
    (["--masc-max-patches=many"], "*--masc-max-patches / masc_max_patches: 'many' is not a valid int*"),
    (["--masc-max-drop=-0.1"], "*--masc-max-drop must be >= 0*"),
    (["--masc-update-baseline"], "*--masc-update-baseline needs --masc-baseline=PATH*"),
])
def test_bad_option_values_are_usage_errors(pytester, tiny_model_dir, args, message):
    result = run(pytester, tiny_model_dir, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_corrupt_baseline_file_fails_the_session_with_its_name(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "baseline.json").write_text("{not json")
    result = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json")
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*ERROR cannot compare: *baseline.json: baseline file is not valid JSON*"])


@pytest.mark.parametrize(("args", "message"), [
    (["--masc-dtype=float64"], "*--masc-dtype 'float64': choose from float32*"),
    (["--masc-device=gpu"], "*--masc-device 'gpu': expected cpu, cuda, cuda:N or mps*"),
    (["--masc-protocol=,"], "*expected KIND=DATA_ROOT*"),
    (["--masc-protocol=orida=/data,n_subjects=0"], "*n_subjects must be a positive integer*"),
])
def test_bad_device_dtype_and_protocol_values_are_usage_errors(pytester, tiny_model_dir, args, message):
    result = run(pytester, tiny_model_dir, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_missing_protocol_root_fails_before_loading_the_model(pytester, tmp_path):
    result = pytester.runpytest("--masc", f"--masc-model={tmp_path / 'never-loaded'}",
                                f"--masc-protocol=orida={tmp_path / 'no-data'}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "orida root directory" in output and "no-data not found" in output
    assert "cannot load the SigLIP2 checkpoint" not in output


def test_scoring_failure_is_reported_by_every_case_of_the_file(pytester, suite_dir, tiny_model_dir):
    pytester.makeconftest(textwrap.dedent("""
        from pytest_masc.errors import DeviceError
        from pytest_masc.metric.encoders import ImageEncoder

        CALLS = []
        ORIGINAL = ImageEncoder.forward

        def fail(self, batch):
            CALLS.append(len(batch))
            raise DeviceError("out of memory encoding a single image (simulated)")

        def pytest_sessionstart(session):  # suite items use no fixtures: patch for the session
            ImageEncoder.forward = fail

        def pytest_sessionfinish(session):
            ImageEncoder.forward = ORIGINAL

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"FORWARD-CALLS={len(CALLS)}")
    """))
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(failed=3)
    assert result.stdout.str().count("out of memory encoding a single image (simulated)") >= 3
    assert "FORWARD-CALLS=1" in result.stdout.lines


def test_check_with_several_references_returns_their_mean(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_two_refs=textwrap.dedent("""
        import math
        import pytest

        @pytest.mark.masc(reference=["refs/dog.png", "refs/dog2.png"],
                          reference_mask=["refs/dog_mask.png", "refs/dog2_mask.png"], min_concept=0.0)
        def test_two(masc):
            score = masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog")
            one, two = score.extras["concept_per_reference"]
            assert math.isclose(score.concept, (one + two) / 2, abs_tol=1e-7)
            assert one != two and score.concept_map is not None
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    run(pytester, tiny_model_dir).assert_outcomes(passed=1)


SUITE_TWO = """
[suite]
name = "dog2-release"
min_concept = 0.0

[concepts.dog2]
subject = "dog"
reference = "refs/dog2.png"
reference_mask = "refs/dog2_mask.png"

[[cases]]
id = "city"
concept = "dog2"
prompt = "a dog in the city"
image = "out/city.png"
mask = "out/city_mask.png"

[[cases]]
id = "city-again"
concept = "dog2"
prompt = "a dog downtown"
image = "out/city.png"
mask = "out/city_mask.png"

[[cases]]
id = "self"
concept = "dog2"
prompt = "a dog"
image = "refs/dog2.png"
mask = "refs/dog2_mask.png"
"""


def workers_by_file(result) -> dict[str, set[str]]:
    """From ``-v`` output under xdist ("[gw1] PASSED a/masc_dogs.toml::dog-beach"): the workers
    that ran each suite file's cases."""
    workers: dict[str, set[str]] = {}
    for line in result.outlines:
        if line.startswith("[gw") and "PASSED" in line and ".toml::" in line:
            path = line.split("PASSED", 1)[1].strip().split("::")[0]
            workers.setdefault(path, set()).add(line.split("]")[0].strip("["))
    return workers


def test_xdist_keeps_each_suite_file_on_one_worker(pytester, suite_dir, tiny_model_dir):
    """Plain ``-n 2`` (xdist's own default --dist load): each suite file's cases run on one worker,
    so across both workers every distinct image is encoded exactly once. The two suite files share
    no image: masc_dogs.toml has dog, beach, snow; masc_dogs2.toml has dog2, city. Were a file's
    cases split over the workers, its reference would be encoded on both."""
    pytest.importorskip("xdist")
    (suite_dir / "masc_dogs2.toml").write_text(SUITE_TWO)
    single = run(pytester, tiny_model_dir, "--masc-json", "one.json", subprocess=True)
    single.assert_outcomes(passed=6)
    distinct = sum(int(r.get("images_encoded", 0)) for r in read_json(suite_dir / "one.json")["runs"])
    assert distinct == 5
    double = run(pytester, tiny_model_dir, "-n", "2", "-v", "--masc-json", "two.json", subprocess=True)
    double.assert_outcomes(passed=6)
    double.stdout.fnmatch_lines(["*scheduling tests via LoadFileScheduling*"])
    workers = workers_by_file(double)
    assert set(workers) == {"masc_dogs.toml", "masc_dogs2.toml"}, double.outlines
    assert all(len(w) == 1 for w in workers.values()), workers
    runs = read_json(suite_dir / "two.json")["runs"]
    assert sum(int(r.get("images_encoded", 0)) for r in runs) == distinct, runs
    assert [r["nodeid"] for r in read_json(suite_dir / "two.json")["records"]] == \
        [r["nodeid"] for r in read_json(suite_dir / "one.json")["records"]]


def test_xdist_same_named_suite_files_in_two_folders_are_two_batches(pytester, suite_dir, tiny_model_dir):
    """A suite file's batch is keyed by its path from rootdir, not its bare name: under ``-n 2``
    a/masc_dogs.toml and b/masc_dogs.toml are two batches, one per worker, each whole on its worker."""
    pytest.importorskip("xdist")
    for folder in ("a", "b"):
        make_images(suite_dir / folder)  # one file name, two suite names: one suite name is one suite
        (suite_dir / folder / "masc_dogs.toml").write_text(SUITE.replace('"dog-release"', f'"dog-release-{folder}"'))
    (suite_dir / "masc_dogs.toml").unlink()
    result = run(pytester, tiny_model_dir, "-n", "2", "-v", subprocess=True)
    result.assert_outcomes(passed=6)
    workers = workers_by_file(result)
    assert set(workers) == {"a/masc_dogs.toml", "b/masc_dogs.toml"}, result.outlines
    assert all(len(w) == 1 for w in workers.values()), workers
    assert workers["a/masc_dogs.toml"] != workers["b/masc_dogs.toml"], workers


def test_xdist_explicit_dist_is_left_to_xdist_and_records_keep_plain_node_ids(pytester, suite_dir, tiny_model_dir):
    """A --dist the user chose is xdist's own scheduler (``--dist load`` included); a python gate
    in an ``xdist_group`` under ``--dist loadgroup`` is recorded under its plain node id."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import pytest

        @pytest.mark.xdist_group("dogs")
        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0)
        def test_gate(masc):
            masc.check(image="out/city.png", mask="out/city_mask.png", prompt="a dog in the city")
    """))
    grouped = run(pytester, tiny_model_dir, "-n", "2", "-v", "--dist", "loadgroup", "--masc-json", "g.json",
                  subprocess=True)
    grouped.assert_outcomes(passed=4)
    grouped.stdout.fnmatch_lines(["*scheduling tests via LoadGroupScheduling*"])
    nodeids = {r["nodeid"] for r in read_json(suite_dir / "g.json")["records"]}
    assert "test_gates.py::test_gate" in nodeids, nodeids
    per_test = run(pytester, tiny_model_dir, "-n", "2", "-v", "--dist", "load", subprocess=True)
    per_test.assert_outcomes(passed=4)
    per_test.stdout.fnmatch_lines(["*scheduling tests via LoadScheduling*"])
