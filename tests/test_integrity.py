"""Gate integrity: a gate that checks nothing fails, one bad input fails only its case, and
setup mistakes (model, suite path, option spelling) are explained once and clearly."""
from __future__ import annotations

import json
import textwrap

import pytest
from masc_suites import SUITE, run

from pytest_masc.errors import ModelLoadError

# --------------------------------------------------------------------------- gates that check nothing


def test_marked_test_that_never_checks_fails_saying_so(pytester, suite_dir, tiny_model_dir):
    pytester.makepyfile(test_unchecked=textwrap.dedent("""
        import pytest

        GATE = dict(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)

        @pytest.mark.masc(**GATE)
        def test_forgets_to_check(masc):
            assert masc is not None

        @pytest.mark.masc(**GATE)
        def test_without_the_fixture():
            pass

        @pytest.mark.masc(**GATE)
        def test_checks(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")
    """))
    (suite_dir / "masc_dogs.toml").unlink()
    result = run(pytester, tiny_model_dir, "--masc-json=out.json")
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert "test_forgets_to_check is marked @pytest.mark.masc but never called masc.check()" in output
    assert "test_without_the_fixture is marked @pytest.mark.masc but does not use the masc fixture" in output
    records = json.loads((suite_dir / "out.json").read_text())["records"]
    assert [r["case_id"] for r in records] == ["test_checks"]


def test_subject_missing_from_a_passing_prompt_is_noted_in_the_summary(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").write_text(SUITE + textwrap.dedent("""
        [[cases]]
        id = "dog-absent"
        concept = "dog"
        prompt = "a puppy on the beach"
        image = "out/beach.png"
        mask = "out/beach_mask.png"
    """))
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "*MaSC summary*",
        "note: in 1 case(s) the subject does not occur in the prompt, so nothing was stripped for PF:",
        "  dog-release / dog-absent: subject 'dog', prompt 'a puppy on the beach'",
    ])


# --------------------------------------------------------------------------- one bad input, one failed case


def test_missing_image_fails_its_case_alone_and_the_session_finishes(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "out/snow.png").unlink()
    result = run(pytester, tiny_model_dir, "--masc-json=out.json")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*MaSC error in masc_dogs.toml, case 'dog-2'*: image file 'out/snow.png' not found (looked for *snow.png)*",
        "*MaSC summary*",
    ])
    records = json.loads((suite_dir / "out.json").read_text())["records"]
    errors = {r["case_id"]: r["error"] for r in records}
    assert "not found" in errors["dog-2"] and errors["dog-beach"] is None and errors["dog-self"] is None


def failure_reports(result) -> str:
    """The run's failure reports: the output up to the MaSC summary (which lists each case that
    could not be scored in one line) and pytest's short test summary (whose lines repeat each
    failure's message, in full under ``CI=true``, cut to the terminal's width elsewhere)."""
    return result.stdout.str().split("short test summary info")[0].split(" MaSC summary ")[0]


def test_missing_reference_fails_the_cases_of_its_concept_not_the_collection(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "refs/dog_mask.png").unlink()
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(failed=3)
    assert failure_reports(result).count("concept 'dog' reference_mask file 'refs/dog_mask.png' not found") == 3


def test_suite_file_named_without_masc_is_skipped(pytester, suite_dir):
    result = pytester.runpytest("masc_dogs.toml", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*MaSC gates are off: pass --masc to run them*"])
    (suite_dir / "pytest.ini").write_text("[pytest]\ntestpaths = masc_dogs.toml\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=3)


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("model", ["missing-directory", "google/siglip2-so400m-patch16-naflex"])
def test_model_that_cannot_load_is_explained_once(pytester, suite_dir, tmp_path, monkeypatch, model):
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        def test_zz_gate(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")
    """))
    runner = pytester.runpytest
    if model == "missing-directory":
        model, explanation = str(tmp_path / "no-such-model"), f"the directory {tmp_path / 'no-such-model'} does not exist"
    else:  # in a subprocess, so that the hub library reads the empty cache and offline mode
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        runner, explanation = pytester.runpytest_subprocess, f"`hf download {model}`"
    result = runner("--masc", f"--masc-model={model}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    output = result.stdout.str()
    reports = failure_reports(result)
    assert reports.count(explanation) == 1
    assert reports.count(f"MaSC model {model!r} is not loaded: ModelLoadError at the first MaSC test") == 3
    assert "Repo id must be in the form" not in output and "couldn't connect" not in output
    assert "MaSC error in masc_dogs.toml" not in output  # the model's fault is not blamed on a case
    assert "TypeError" not in output  # the marker test re-raises the session's error as it is


def test_offline_load_error_says_offline_not_connection(tmp_path, monkeypatch):
    from pytest_masc.metric.loading import load_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as raised:
        load_backbone("google/siglip2-so400m-patch16-naflex", device="cpu", cache_dir=tmp_path)
    message = str(raised.value)
    assert "the hub is switched off (HF_HUB_OFFLINE=1 or local_files_only)" in message
    assert "couldn't connect" not in message and ".." not in message
    assert "`hf download google/siglip2-so400m-patch16-naflex`" in message


# --------------------------------------------------------------------------- paths and options


def test_marker_reference_outside_the_test_directory_is_refused_like_a_suite_path(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "tests").mkdir()
    (suite_dir / "tests" / "test_outside.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="../refs/dog.png", reference_mask="../refs/dog_mask.png")
        def test_outside(masc):
            masc.check(image="../out/beach.png", mask="../out/beach_mask.png", prompt="a dog")
    """))
    (suite_dir / "masc_dogs.toml").write_text(SUITE.replace('"refs/dog.png"', '"../refs/dog.png"', 1))
    (suite_dir / "suite").mkdir()
    (suite_dir / "masc_dogs.toml").rename(suite_dir / "suite" / "masc_dogs.toml")
    marker = run(pytester, tiny_model_dir, "tests")
    marker.assert_outcomes(failed=1)
    marker.stdout.fnmatch_lines(["*reference '../refs/dog.png' escapes the test file's directory*copy or move the file under*"])
    suite = run(pytester, tiny_model_dir, "suite")
    suite.stdout.fnmatch_lines([
        "*reference '../refs/dog.png' escapes the suite's directory*suite paths must stay inside the suite file's "
        "directory: copy or move the file under*",
    ])


# --------------------------------------------------------------------------- the paper table's normalisation


def test_pooled_column_normalises_over_all_units_and_says_so(tmp_path):
    import numpy as np

    from pytest_masc import Score
    from pytest_masc.stats.agreement import human_alpha, krippendorff_alpha
    from pytest_masc.protocols import evaluate_dreambench, format_table, load_dreambench_plus
    from pytest_masc.protocols.tables import POOLED
    from pytest_masc.testing.datasets import write_dreambench_fixture

    tree = write_dreambench_fixture(tmp_path)
    data = load_dreambench_plus(tree.root, tree.masks)
    rng = np.random.default_rng(0)
    # emu2 scores sit far above blip_diffusion's: per-method and pooled normalisations differ
    cp = np.nanmean(data.ratings["concept"], axis=0) / 4 + rng.normal(0, 0.2, len(data)) + (data.method_of == "emu2")
    scores = [Score(concept=float(c), prompt=0.0, global_concept=0.0, global_prompt=0.0) for c in cp]
    rows = evaluate_dreambench(data, scores, n_resamples=50)
    cell = {(r.dimension, r.metric, r.column): r.estimate.value for r in rows}
    ratings = data.ratings["concept"]
    everything = (cp - cp.min()) / (cp.max() - cp.min())  # the paper: over all samples
    assert cell[("concept", "MaSC CP", POOLED)] == pytest.approx(human_alpha(everything, ratings))
    emu2 = data.method_of == "emu2"
    assert cell[("concept", "MaSC CP", "emu2")] == pytest.approx(human_alpha(cp[emu2], ratings[:, emu2]))
    globally = np.mean([krippendorff_alpha(np.vstack([everything[emu2], group[emu2] / 4])) for group in ratings])
    assert cell[("concept", "MaSC CP", "emu2")] != pytest.approx(globally)  # what the column does not do
    table = format_table(rows)
    assert table.endswith(
        "metric min-max normalised over all of a table's units in the pooled column, as in the paper; "
        "within the method's units in a method's column"
    )


def test_progress_line_is_cleared_when_scoring_fails(pytester, suite_dir, tiny_model_dir):
    pytester.makeconftest(textwrap.dedent("""
        from pytest_masc.errors import DeviceError
        from pytest_masc.metric.scorer import MaSC

        ORIGINAL = MaSC.score_many

        def half_then_fail(self, samples, progress=None, **kwargs):
            progress(1, 2)
            raise DeviceError("out of memory halfway (simulated)")

        class Terminal:
            # pytest's isatty: a bool that can be called

            def __bool__(self):
                return True

            def __call__(self):
                return True

        def pytest_sessionstart(session):
            session.config.pluginmanager.get_plugin("terminalreporter").isatty = Terminal()  # draw the progress line
            MaSC.score_many = half_then_fail

        def pytest_sessionfinish(session):
            MaSC.score_many = ORIGINAL
    """))
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(failed=3)
    lines = result.stdout.lines  # split at each "\r" too
    drawn = next(n for n, line in enumerate(lines) if line.endswith("MaSC masc_dogs.toml: [############............] 1/2 images"))
    assert lines[drawn + 1] == " " * 80  # "\r", blanks, "\r": the line is wiped
