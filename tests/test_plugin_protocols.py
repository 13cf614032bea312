"""Protocol suites and suite-level agreement gates through the plugin (pytester, tiny model)."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from test_plugin import SUITE, make_images, run  # noqa: F401  (shared builders)


def test_dreambench_protocol_suite_prints_table_and_gates(pytester, tiny_model_dir):
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(pytester.path / "data")
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    suite = textwrap.dedent(f"""
        [suite]
        name = "dbpp"
        min_alpha_concept = -1.0

        [protocol]
        kind = "dreambench_plus"
        root = "{fixture.root}"
        masks = "{fixture.masks}"
    """)
    (pytester.path / "masc_dbpp.toml").write_text(suite)
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*MaSC summary*",
        "protocol dreambench_plus (dbpp):*",
        "*MaSC CP*",
        "*MaSC PF*",
        "*human-human*",
    ])
    protocols = json.loads((pytester.path / "out.json").read_text())["summary"]["protocols"]
    assert protocols[0]["kind"] == "dreambench_plus"
    assert -1.0 <= protocols[0]["values"]["min_alpha_concept"] <= 1.0

    (pytester.path / "masc_dbpp.toml").write_text(suite.replace("min_alpha_concept = -1.0", "min_alpha_concept = 1.0"))
    failing = run(pytester, tiny_model_dir)
    failing.assert_outcomes(failed=1)
    assert failing.ret == 1
    failing.stdout.fnmatch_lines(["*suite gate failed: min_alpha_concept: * < 1*", "*SUITE GATE FAILED dbpp: min_alpha_concept*"])


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


def test_human_ratings_give_alpha_and_gate_the_suite(pytester, tiny_model_dir):
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    rng = np.random.default_rng(1)
    cases = []
    for index, name in enumerate(["beach", "snow", "city"] * 2):
        concept, prompt = rng.integers(0, 5, 2)
        cases.append(textwrap.dedent(f"""
            [[cases]]
            id = "case-{index}"
            concept = "dog"
            prompt = "a dog in scene {index}"
            image = "out/{name}.png"
            mask = "out/{name}_mask.png"
            human = {{ concept = [{concept}, {(concept + 1) % 5}], prompt = [{prompt}] }}
        """))
    header = SUITE.split("[[cases]]")[0]
    (pytester.path / "masc_rated.toml").write_text(header + "".join(cases))
    result = run(pytester, tiny_model_dir, "--masc-json", "out.json")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines([
        "agreement with human ratings (Krippendorff's alpha, interval; 95% bootstrap CI):",
        "  concept * [[]*, *[]]  (6 cases)",
        "  prompt * [[]*, *[]]  (6 cases)",
    ])
    agreement = json.loads((pytester.path / "out.json").read_text())["summary"]["agreement"]
    assert set(agreement) == {"concept", "global_concept", "prompt", "global_prompt"}
    assert agreement["concept"]["units"] == 6

    gated = header.replace("min_concept = 0.0", "min_concept = 0.0\nmin_alpha_prompt = 1.0")
    (pytester.path / "masc_rated.toml").write_text(gated + "".join(cases))
    failing = run(pytester, tiny_model_dir)
    failing.assert_outcomes(passed=6)
    assert failing.ret == 1
    failing.stdout.fnmatch_lines(["*SUITE GATE FAILED dog-release: alpha of prompt scores vs humans * < min_alpha_prompt 1*"])


def test_clip_and_dino_baselines_join_the_protocol_table(pytester, tiny_model_dir, tmp_path):
    from pytest_masc.testing.datasets import write_dreambench_fixture
    from pytest_masc.testing import tiny_clip_checkpoint, tiny_dino_checkpoint

    fixture = write_dreambench_fixture(pytester.path / "data")
    clip = tiny_clip_checkpoint(tmp_path / "tiny-clip")
    dino = tiny_dino_checkpoint(tmp_path / "tiny-dino")
    result = run(
        pytester, tiny_model_dir,
        f"--masc-protocol=dreambench_plus={fixture.root},masks={fixture.masks}",
        f"--masc-baselines=clip={clip},dino={dino}",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*| CLIP-I *", "*| DINO-I *", "*| CLIP-T *"])


def test_unknown_baseline_is_a_usage_error(pytester, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "--masc-baselines=clip,blip")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown baseline 'blip'*"])
