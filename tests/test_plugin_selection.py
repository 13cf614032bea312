"""What a run collects does not depend on the order of its paths: suite names are unique
within a run (a name is one summary row per concept, one baseline entry, one set of suite gates)."""
from __future__ import annotations

import textwrap

import pytest
from masc_suites import SUITE, make_images


def _suite(name: str | None, extra: str = "") -> str:
    named = SUITE.replace('name = "dog-release"', f'name = "{name}"' if name else "")
    return named.replace("min_concept = 0.0\n", "min_concept = 0.0\n" + extra, 1)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may load a model; were one tried, fail fast instead of asking the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def two_versions(pytester: pytest.Pytester):
    """gates/v1 and gates/v2, each a suite file with its images; v2 adds a suite gate."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    for version in ("v1", "v2"):
        make_images(pytester.path / "gates" / version)

    def write(name_v1: str | None, name_v2: str | None, file_name: str = "masc_dogs.toml") -> None:
        (pytester.path / "gates/v1" / file_name).write_text(_suite(name_v1))
        (pytester.path / "gates/v2" / file_name).write_text(_suite(name_v2, "min_alpha_concept = 0.9\n"))

    return write


def _collect(pytester: pytest.Pytester, *args: str):
    return pytester.runpytest("--masc", "--masc-model=never-loaded", "-p", "no:cacheprovider", *args)


def _errors(result) -> list[str]:
    return sorted(line for line in result.outlines if line.startswith("MaSC suite error:"))


@pytest.mark.parametrize(("name_v1", "name_v2", "name"), [
    ("release", "release", "release"),
    (None, None, "dogs"),  # masc_dogs.toml without [suite] name is "dogs"
    ("dogs", None, "dogs"),
], ids=["both-named", "both-default", "one-default"])
def test_one_suite_name_in_two_files_is_the_same_collection_error_in_any_order(pytester, two_versions, name_v1, name_v2, name):
    two_versions(name_v1, name_v2)
    runs = [_collect(pytester, "gates"), _collect(pytester, "gates/v2", "gates/v1"), _collect(pytester, "gates/v1", "gates/v2")]
    for result in runs:
        assert result.ret == pytest.ExitCode.INTERRUPTED, result.outlines
        result.assert_outcomes(errors=2)
    errors = _errors(runs[0])
    assert len(errors) == 2 and all(_errors(result) == errors for result in runs[1:])
    for own, other in (("gates/v1", "gates/v2"), ("gates/v2", "gates/v1")):
        (error,) = [e for e in errors if e.startswith(f"MaSC suite error: {own}/masc_dogs.toml: ")]
        assert f"suite name {name!r} is also used by {other}/masc_dogs.toml" in error
        assert 'Give each suite file its own name: [suite] name = "..."' in error
    assert ("named after its file: masc_dogs.toml -> 'dogs'" in errors[0]) == (name == "dogs")


def test_the_error_does_not_depend_on_the_selection_either(pytester, two_versions):
    two_versions("release", "release")
    result = _collect(pytester, "gates", "-k", "dog-beach and v1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert len(_errors(result)) == 2


def test_cases_of_same_named_files_do_not_run_with_continue_on_collection_errors(pytester, two_versions):
    two_versions("release", "release")
    (pytester.path / "gates/v1/masc_other.toml").write_text(_suite("other"))  # runs: its name is its own
    result = pytester.runpytest("--masc", "--masc-model=no-such-model-dir/", "-p", "no:cacheprovider",
                                "--continue-on-collection-errors", "--collect-only", "-q", "gates")
    collected = [line for line in result.outlines if "::" in line]
    assert collected and all(line.startswith("gates/v1/masc_other.toml::") for line in collected), result.outlines
    assert len(_errors(result)) == 2


def test_distinct_names_in_two_folders_are_fine(pytester, two_versions):
    two_versions("release-v1", "release-v2")
    result = _collect(pytester, "gates", "--collect-only", "-q")
    assert not _errors(result) and "error" not in result.outlines[-1]
    assert sum("masc_dogs.toml::" in line for line in result.outlines) == 6


def test_a_suite_named_like_the_protocol_option_or_a_python_gate_file(pytester):
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    make_images(pytester.path)
    (pytester.path / "masc_dogs.toml").write_text(_suite("orida"))
    result = _collect(pytester, "--masc-protocol=orida=no-data")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    (error,) = _errors(result)
    assert "masc_dogs.toml: suite name 'orida' is also used by --masc-protocol=orida" in error

    (pytester.path / "masc_dogs.toml").write_text(_suite("test_gates.py"))
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png")
        def test_gate(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog")
    """))
    result = _collect(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    (error,) = _errors(result)
    assert "suite name 'test_gates.py' is also used by the python gates of test_gates.py" in error
