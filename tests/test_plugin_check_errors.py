"""``masc.check()`` that cannot score: every gated call leaves one record (the JSON row, the
summary's count), errors included, as suite cases do; argument mistakes (``TypeError``) leave none."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
from masc_suites import run

GATES = """
import pytest

MARK = dict(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0)


@pytest.mark.masc(**MARK)
def test_good(masc):
    masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")


@pytest.mark.masc(**MARK)
def test_truncated_png(masc):
    masc.check(image="out/truncated.png", mask="out/beach_mask.png", prompt="a dog on the beach")


@pytest.mark.masc(**MARK)
def test_missing_mask(masc):
    masc.check(image="out/beach.png", mask="out/no_such_mask.png", prompt="a dog on the beach")


@pytest.mark.masc(reference="refs/no_such_dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
def test_missing_reference(masc):
    masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")


@pytest.mark.masc(**MARK)
def test_second_check_fails(masc):
    masc.check(image="out/snow.png", mask="out/snow_mask.png", prompt="a dog in the snow")
    masc.check(image="out/city.png", mask="out/no_such_mask.png", prompt="a dog in the city")


@pytest.mark.masc(**MARK)
def test_no_prompt(masc):
    masc.check(image="out/beach.png", mask="out/beach_mask.png")
"""

SEGMENTED = """
import pytest


@pytest.fixture
def masc_segmenter():
    def segment(image):
        raise RuntimeError(f"segmenter exploded on {image}")
    return segment


@pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
def test_segmenter_fails(masc):
    masc.check(image="out/city.png", prompt="a dog in the city")
"""


def _records(path) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for record in json.loads(path.read_text())["records"]:
        records.setdefault(record["nodeid"].split("::")[-1], []).append(record)
    return records


def test_every_failed_check_leaves_one_error_record(pytester, suite_dir, tiny_model_dir):
    (suite_dir / "masc_dogs.toml").unlink()
    beach = (suite_dir / "out/beach.png").read_bytes()
    (suite_dir / "out/truncated.png").write_bytes(beach[: len(beach) // 2])
    pytester.makepyfile(test_gates=GATES, test_segmented=SEGMENTED)
    result = run(pytester, tiny_model_dir, "--masc-json=shard.json")
    result.assert_outcomes(passed=1, failed=6)
    records = _records(suite_dir / "shard.json")

    def only_error(name: str) -> str:
        (record,) = records[name]
        assert record["passed"] is False and record["scores"] == {}, record
        return record["error"]

    assert "truncated.png" in only_error("test_truncated_png")
    assert "no_such_mask.png" in only_error("test_missing_mask")
    assert "no_such_dog.png" in only_error("test_missing_reference")
    assert only_error("test_segmenter_fails").startswith("RuntimeError: segmenter exploded on ")
    first, second = records["test_second_check_fails"]
    assert first["passed"] is True and first["error"] is None and first["check_index"] == 0
    assert second["passed"] is False and "no_such_mask.png" in second["error"] and second["check_index"] == 1
    assert second["case_id"] == "test_second_check_fails#2"
    # an argument mistake raises TypeError before anything is read: a broken test, not a gate
    assert "test_no_prompt" not in records
    result.stdout.fnmatch_lines(["*TypeError: masc.check() needs the prompt*"])
    result.stdout.fnmatch_lines(["*5 case(s) could not be scored*"])

    merged = pytester.run(sys.executable, "-m", "pytest_masc.report", "merge", "shard.json")
    assert "although its MaSC cases passed" not in merged.stdout.str()
    assert merged.ret == 1


def test_a_model_that_does_not_load_leaves_a_record_per_check(pytester, suite_dir, tmp_path):
    (suite_dir / "masc_dogs.toml").unlink()
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        @pytest.mark.parametrize("image", ["beach", "snow"])
        def test_gate(masc, image):
            masc.check(image=f"out/{image}.png", mask=f"out/{image}_mask.png", prompt="a dog")
    """))
    result = run(pytester, tmp_path / "no-such-model", "--masc-json=shard.json")
    result.assert_outcomes(failed=2)
    first, second = (records[0] for records in _records(suite_dir / "shard.json").values())
    assert first["passed"] is False and "cannot load the SigLIP2 checkpoint" in first["error"]
    assert "no-such-model" in first["error"]
    assert second["passed"] is False and "is not loaded" in second["error"]  # ModelNotLoaded


def test_a_segmenter_that_does_not_load_leaves_a_record(pytester, suite_dir, tiny_model_dir, tmp_path):
    (suite_dir / "masc_dogs.toml").unlink()
    pytester.makepyfile(test_gates=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0)
        def test_gate(masc):
            masc.check(image="out/beach.png", prompt="a dog on the beach")
    """))
    result = run(pytester, tiny_model_dir, f"--masc-segmenter=clipseg={tmp_path / 'no-such-checkpoint'}",
                 "--masc-json=shard.json")
    result.assert_outcomes(failed=1)
    ((record,),) = _records(suite_dir / "shard.json").values()
    assert record["passed"] is False and "no-such-checkpoint" in record["error"]


@pytest.mark.parametrize("call", [
    'masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog", min_concpet=0.5)',
    'masc.check(image="out/beach.png", prompt="a dog")',
    'masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog", reference_mask=[])',
])
def test_argument_mistakes_raise_type_error_and_leave_no_record(pytester, suite_dir, tiny_model_dir, call):
    (suite_dir / "masc_dogs.toml").unlink()
    pytester.makepyfile(test_gates=textwrap.dedent(f"""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", min_concept=0.0)
        def test_gate(masc):
            {call}
    """))
    result = run(pytester, tiny_model_dir, "--masc-json=shard.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TypeError*"])
    assert json.loads((suite_dir / "shard.json").read_text())["records"] == []
