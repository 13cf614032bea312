"""Protocol suites and suite-level agreement gates through the plugin (pytester, tiny model)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from masc_suites import SUITE, make_images, run  # noqa: F401  (shared builders)


def test_dreambench_protocol_suite_prints_table_and_gates(pytester, tiny_model_dir, tiny_masc):
    """The protocol's alpha gates compare the pooled alphas, worked out here from the loaded
    units' scores and ratings: gates just under them pass, just over them fail."""
    from pytest_masc.stats.agreement import human_alpha
    from pytest_masc.protocols import load_dreambench_plus
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(pytester.path / "data")
    data = load_dreambench_plus(fixture.root, fixture.masks)
    scores = tiny_masc.score_many(data.samples)
    cp = np.array([s.concept for s in scores])
    pf = np.array([s.prompt for s in scores])
    concept, prompt, applies = data.ratings["concept"], data.ratings["prompt"], data.pf_applies
    alpha_concept = human_alpha(cp, concept)
    alpha_prompt = human_alpha(pf[applies], prompt[:, applies])
    gap = min(abs(alpha_prompt - human_alpha(pf[applies], concept[:, applies])),
              abs(alpha_concept - human_alpha(cp[applies], prompt[:, applies])))
    margin = min(0.02, gap / 3)
    assert margin > 1e-3, "the fixture's ratings must tell the two dimensions apart"

    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    for name, sign in (("under", -1), ("over", 1)):
        (pytester.path / f"masc_{name}.toml").write_text(textwrap.dedent(f"""
            [suite]
            name = "{name}"
            min_alpha_concept = {alpha_concept + sign * margin!r}
            min_alpha_prompt = {alpha_prompt + sign * margin!r}

            [protocol]
            kind = "dreambench_plus"
            root = "{fixture.root}"
            masks = "{fixture.masks}"
        """))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*MaSC summary*",
        "protocol dreambench_plus (over):*",
        "*MaSC CP*",
        "*MaSC PF*",
        "*human-human*",
    ])
    result.stdout.fnmatch_lines([
        f"*suite gate failed: min_alpha_concept: {alpha_concept:.3f} < *; min_alpha_prompt: {alpha_prompt:.3f} < *",
        "*SUITE GATE FAILED over: min_alpha_concept*",
    ])
    assert "SUITE GATE FAILED under" not in result.stdout.str()
    protocols = json.loads((pytester.path / "out.json").read_text())["summary"]["protocols"]
    assert [p["kind"] for p in protocols] == ["dreambench_plus"] * 2
    for entry in protocols:
        assert entry["values"]["min_alpha_concept"] == pytest.approx(alpha_concept, abs=1e-4)
        assert entry["values"]["min_alpha_prompt"] == pytest.approx(alpha_prompt, abs=1e-4)


def test_orida_protocol_from_the_command_line(pytester, tiny_model_dir):
    from pytest_masc.testing.datasets import write_orida_fixture

    fixture = write_orida_fixture(pytester.path / "data")
    result = run(
        pytester, tiny_model_dir,
        f"--masc-protocol=orida={fixture.root},split={fixture.split},min_backgrounds=3",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*protocol orida (orida):*", "*same-subject vs * cross-subject pairs*", "*MaSC CP*"])


def test_protocol_option_errors_are_usage_errors(pytester, tiny_model_dir):
    for value, message in (
        ("imagenet=/data", "*expected KIND=DATA_ROOT*"),
        ("dreambench_plus=/data", "*needs ,masks=DIR*"),
        ("orida=/data,colour=red", "*unknown or empty part 'colour=red'*"),
    ):
        result = run(pytester, tiny_model_dir, f"--masc-protocol={value}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])


# Hand-picked ratings, 2 rater groups x 6 cases: concept and prompt ratings disagree, so
# pairing a score with the other dimension's ratings gives another alpha.
CONCEPT_RATINGS = [[0, 1, 4, 4, 2, 1], [1, 0, 4, 3, 2, 1]]
PROMPT_RATINGS = [[4, 3, 0, 1, 2, 4], [3, 3, 1, 0, 2, 4]]
RATED_IMAGES = ["beach", "snow", "city"] * 2


def rated_suite(name: str, gates: str = "") -> str:
    cases = "".join(textwrap.dedent(f"""
        [[cases]]
        id = "case-{index}"
        concept = "dog"
        prompt = "a dog in scene {index}"
        image = "out/{image}.png"
        mask = "out/{image}_mask.png"
        human = {{ concept = [{CONCEPT_RATINGS[0][index]}, {CONCEPT_RATINGS[1][index]}], prompt = [{PROMPT_RATINGS[0][index]}, {PROMPT_RATINGS[1][index]}] }}
    """) for index, image in enumerate(RATED_IMAGES))
    header = textwrap.dedent(f"""
        [suite]
        name = "{name}"
        min_concept = 0.0
        {gates}

        [concepts.dog]
        subject = "dog"
        reference = "refs/dog.png"
        reference_mask = "refs/dog_mask.png"
    """)
    return header + cases


def test_human_ratings_give_alpha_and_gate_the_suite(pytester, tiny_model_dir, tiny_masc):
    """The alpha gates compare the right alpha: the expected values are worked out here from
    the cases' scores and the ratings as written; gates just under them pass, gates just over
    them fail, and the margin is smaller than the gap to the alpha of a score paired with the
    other dimension's ratings."""
    from pytest_masc.stats.agreement import human_alpha

    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    scores = [tiny_masc.score(str(pytester.path / "refs/dog.png"), str(pytester.path / "refs/dog_mask.png"),
                              str(pytester.path / f"out/{image}.png"), str(pytester.path / f"out/{image}_mask.png"),
                              f"a dog in scene {index}", "dog") for index, image in enumerate(RATED_IMAGES)]
    cp = np.array([s.concept for s in scores])
    pf = np.array([s.prompt for s in scores])
    alpha_concept = human_alpha(cp, np.array(CONCEPT_RATINGS, float))
    alpha_prompt = human_alpha(pf, np.array(PROMPT_RATINGS, float))
    gap = min(abs(alpha_prompt - human_alpha(pf, np.array(CONCEPT_RATINGS, float))),
              abs(alpha_concept - human_alpha(cp, np.array(PROMPT_RATINGS, float))))
    margin = min(0.02, gap / 3)
    assert margin > 1e-3, "the ratings must tell the two dimensions apart"

    under = f"min_alpha_concept = {alpha_concept - margin!r}\nmin_alpha_prompt = {alpha_prompt - margin!r}"
    over = f"min_alpha_concept = {alpha_concept + margin!r}\nmin_alpha_prompt = {alpha_prompt + margin!r}"
    (pytester.path / "masc_under.toml").write_text(rated_suite("under", under))
    (pytester.path / "masc_over.toml").write_text(rated_suite("over", over))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=12)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "agreement with human ratings, all suites pooled (Krippendorff's alpha, interval; 95% bootstrap CI):",
        "  concept * [[]*, *[]]  (12 cases)",
        "  prompt * [[]*, *[]]  (12 cases)",
    ])
    result.stdout.fnmatch_lines([
        f"*SUITE GATE FAILED over: alpha of concept scores vs humans {alpha_concept:.3f} < min_alpha_concept*",
        f"*SUITE GATE FAILED over: alpha of prompt scores vs humans {alpha_prompt:.3f} < min_alpha_prompt*",
    ])
    assert "SUITE GATE FAILED under" not in result.stdout.str()
    summary = json.loads((pytester.path / "out.json").read_text())["summary"]
    assert set(summary["agreement"]) == {"concept", "global_concept", "prompt", "global_prompt"}
    for suite in ("under", "over"):
        agreement = summary["suites"][suite]["agreement"]
        assert agreement["concept"]["units"] == 6
        assert agreement["concept"]["alpha"] == pytest.approx(alpha_concept, abs=1e-4)
        assert agreement["prompt"]["alpha"] == pytest.approx(alpha_prompt, abs=1e-4)


def test_clip_and_dino_baselines_join_the_protocol_table(pytester, tiny_model_dir, clip_dir, dino_dir):
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(pytester.path / "data")
    result = run(
        pytester, tiny_model_dir,
        f"--masc-protocol=dreambench_plus={fixture.root},masks={fixture.masks}",
        f"--masc-baselines=clip={clip_dir},dino={dino_dir}",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*| CLIP-I *", "*| DINO-I *", "*| CLIP-T *"])


def test_unknown_baseline_is_a_usage_error(pytester, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "--masc-baselines=clip,blip")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown baseline 'blip'*"])
