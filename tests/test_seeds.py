"""Several images per prompt (seeds): TOML ``images`` and ``image`` + ``{seed}`` + ``seeds``, CSV
``seed`` rows and ``masc.check(seed=)`` make one case with one record per seed, gated on the
mean over its seeds; the ambiguous spellings are refused, naming the file and the case."""
from __future__ import annotations

import json
import textwrap

import pytest
from masc_suites import DOG_CONCEPT, make_images, make_seed_images, run

from pytest_masc import Sample
from pytest_masc.errors import SuiteError
from pytest_masc.suite import CaseImage, load_suite


def write_suite(root, cases: str, suite: str = "") -> object:
    path = root / "masc_seeds.toml"
    path.write_text(f'[suite]\nname = "seeds"\n{suite}\n{DOG_CONCEPT}\n{textwrap.dedent(cases)}')
    return path


def seed_scores(masc, root, seeds: int = 3) -> list[float]:
    """Each seed image's CP against refs/dog.png, scored directly (what the plugin must average)."""
    samples = [Sample(ref_image=root / "refs/dog.png", ref_mask=root / "refs/dog_mask.png",
                      out_image=root / f"out/beach_{s}.png", out_mask=root / f"out/beach_{s}_mask.png",
                      prompt="a dog on the beach", subject="dog") for s in range(seeds)]
    return [score.concept for score in masc.score_many(samples)]


# --------------------------------------------------------------------------- parsing


def test_both_toml_spellings_give_one_case_with_its_seeds(tmp_path):
    make_images(tmp_path)
    paths = make_seed_images(tmp_path, seeds=3)
    suite = load_suite(write_suite(tmp_path, '''
        [[cases]]
        id = "listed"
        concept = "dog"
        prompt = "a dog on the beach"
        images = ["out/beach_0.png", "out/beach_1.png", "out/beach_2.png"]
        masks = ["out/beach_0_mask.png", "out/beach_1_mask.png", "out/beach_2_mask.png"]

        [[cases]]
        id = "pattern"
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach_{seed}.png"
        mask = "out/beach_{seed}_mask.png"

        [[cases]]
        id = "two"
        concept = "dog"
        prompt = "a dog in the snow"
        image = "out/beach_{seed}.png"
        seeds = 2
    ''', suite="seeds = 3"))
    listed, pattern, two = suite.cases
    expected = tuple(CaseImage(path=p, mask=p.with_name(p.stem + "_mask.png"), seed=s) for s, p in enumerate(paths))
    assert listed.images == expected and pattern.images == expected
    assert listed.seeded and pattern.seeded
    assert two.images == tuple(CaseImage(path=p, mask=None, seed=s) for s, p in enumerate(paths[:2]))  # case wins


def test_a_one_image_case_has_no_seed(tmp_path):
    make_images(tmp_path)
    suite = load_suite(write_suite(tmp_path, '''
        [[cases]]
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach.png"
    '''))
    (case,) = suite.cases
    assert case.images == (CaseImage(path=tmp_path / "out/beach.png", mask=None, seed=None),) and not case.seeded


BEACH = 'concept = "dog"\nprompt = "a dog on the beach"\n'


@pytest.mark.parametrize("case, suite, expected", [
    ('images = ["out/beach_0.png"]\nimage = "out/beach.png"', "", "give image or images, not both"),
    ('image = "out/beach_{seed}.png"', "", "has {seed} but no seeds are given: add seeds = N"),
    ('image = "out/beach.png"\nseeds = 2', "", "seeds = 2 but image 'out/beach.png' has no {seed}"),
    ('image = "out/beach.png"', "seeds = 2", "[suite] seeds = 2 but image 'out/beach.png' has no {seed}"),
    ('image = "out/beach_{seed}.png"\nseeds = 0', "", "seeds = 0 must be at least 1"),
    ('image = "out/beach_{seed}.png"\nseeds = 1.5', "", "seeds must be an integer"),
    ('images = ["out/beach_0.png", "./out/beach_0.png"]', "", "images[1] './out/beach_0.png' is the same file as images[0]"),
    ('image = "out/beach_{seed}.png"\nseeds = 2\nmask = "out/beach_mask.png"', "", "mask 'out/beach_mask.png' has no {seed}"),
    ('image = "out/beach.png"\nmask = "out/beach_{seed}_mask.png"', "", "has {seed} but image 'out/beach.png' has none"),
    ('images = ["out/beach_0.png"]\nmask = "out/beach_mask.png"', "", "mask is for image; with images give masks"),
    ('images = ["out/beach_0.png", "out/beach_1.png"]\nmasks = ["out/beach_mask.png"]', "",
     "images has 2 path(s) but masks has 1"),
    ('images = ["out/beach_0.png"]', "seeds = 2", "images has 1 path(s) but [suite] seeds = 2"),
    ('images = ["out/beach_0.png"]\nseeds = 1', "", "seeds = 1 with images"),
    ('images = ["out/beach_{seed}.png"]', "", "images[0] 'out/beach_{seed}.png' has {seed}"),
])
def test_ambiguous_seed_spellings_are_refused_naming_file_and_case(tmp_path, case, suite, expected):
    make_images(tmp_path)
    make_seed_images(tmp_path, seeds=2)
    path = write_suite(tmp_path, f'[[cases]]\nid = "beach"\n{BEACH}{case}\n', suite=suite)
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    message = str(error.value)
    assert "masc_seeds.toml, case 'beach'" in message and expected in message, message


def test_suite_seeds_with_a_cases_csv_is_refused(tmp_path):
    make_images(tmp_path)
    (tmp_path / "cases.csv").write_text("id,concept,prompt,image\nb,dog,a dog,out/beach.png\n")
    (tmp_path / "masc_seeds.toml").write_text(f'cases = "cases.csv"\n[suite]\nseeds = 2\n{DOG_CONCEPT}')
    with pytest.raises(SuiteError, match=r"masc_seeds.toml, \[suite\]: seeds = 2 is for \[\[cases\]\] tables"):
        load_suite(tmp_path / "masc_seeds.toml")


def csv_suite(root, rows: str):
    make_images(root)
    make_seed_images(root, seeds=3)
    (root / "cases.csv").write_text("id,concept,prompt,image,mask,seed,min_concept\n" + textwrap.dedent(rows))
    (root / "masc_seeds.toml").write_text(f'cases = "cases.csv"\n{DOG_CONCEPT}')
    return root / "masc_seeds.toml"


def test_csv_rows_repeating_a_case_id_with_seeds_are_one_case(tmp_path):
    suite = load_suite(csv_suite(tmp_path, """\
        beach,dog,a dog on the beach,out/beach_0.png,,10,0.1
        snow,dog,a dog in the snow,out/snow.png,,,
        beach,dog,a dog on the beach,out/beach_1.png,out/beach_1_mask.png,11,0.1
    """))
    beach, snow = suite.cases
    assert beach.images == (CaseImage(tmp_path / "out/beach_0.png", None, 10),
                            CaseImage(tmp_path / "out/beach_1.png", tmp_path / "out/beach_1_mask.png", 11))
    assert beach.gates == {"min_concept": 0.1} and beach.location.endswith("case 'beach' (lines 2, 4)")
    assert snow.images == (CaseImage(tmp_path / "out/snow.png", None, None),)


@pytest.mark.parametrize("rows, expected", [
    ("b,dog,a dog,out/beach_0.png,,1,\nb,dog,a dog,out/beach_1.png,,1,\n",
     "cases.csv: case 'b': seed 1 is given twice (line 2 and line 3)"),
    ("b,dog,a dog,out/beach_0.png,,1,\nb,dog,another dog,out/beach_1.png,,2,\n",
     "cases.csv: case 'b': line 3 has prompt 'another dog' but line 2 has 'a dog'"),
    ("b,dog,a dog,out/beach_0.png,,1,0.2\nb,dog,a dog,out/beach_1.png,,2,0.3\n",
     "cases.csv: case 'b': line 3 has min_concept 0.3 but line 2 has 0.2"),
    ("b,dog,a dog,out/beach_0.png,,1,\nb,dog,a dog,out/beach_1.png,,,\n",
     "cases.csv: case 'b': line 2 and line 3 repeat its id, but only one has a seed"),
    (",dog,a dog,out/beach_0.png,,1,\n", "cases.csv, line 2: seed 1 but no id"),
    ("b,dog,a dog,out/beach_0.png,,-1,\n", "cases.csv, line 2: seed must be a non-negative integer, got '-1'"),
    ("b,dog,a dog,out/beach_0.png,,1,\nb,dog,a dog,out/beach_0.png,,2,\n",
     "is the same file as image (line 2, seed 1)"),
])
def test_csv_seed_rows_that_do_not_make_one_case_are_refused(tmp_path, rows, expected):
    with pytest.raises(SuiteError) as error:
        load_suite(csv_suite(tmp_path, rows))
    assert expected in str(error.value), str(error.value)


# --------------------------------------------------------------------------- pytest --masc


SEEDED_CASE = '''
[[cases]]
id = "beach"
concept = "dog"
prompt = "a dog on the beach"
image = "out/beach_{{seed}}.png"
mask = "out/beach_{{seed}}_mask.png"
seeds = 3
min_concept = {minimum}
'''


def records_of(path) -> list[dict]:
    return json.loads(path.read_text())["records"]


@pytest.fixture
def seeded_dir(pytester, tiny_masc):
    make_images(pytester.path)
    make_seed_images(pytester.path, seeds=3)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    scores = seed_scores(tiny_masc, pytester.path)
    assert max(scores) - min(scores) > 1e-3, scores  # the seeds differ, so a mean can pass where one seed fails
    return pytester.path, scores


def run_seeded_case(pytester, model, root, minimum: float):
    """``pytest --masc`` on one case of seeds 0..2 gated at ``min_concept = minimum``."""
    (root / "masc_seeds.toml").write_text(f'[suite]\nname = "seeds"\n{DOG_CONCEPT}' + SEEDED_CASE.format(minimum=minimum))
    return run(pytester, model, "--masc-json=out.json")


def test_a_toml_case_with_seeds_is_one_item_one_record_per_seed_gated_on_the_mean(pytester, tiny_model_dir, seeded_dir):
    root, scores = seeded_dir
    mean = sum(scores) / 3

    result = run_seeded_case(pytester, tiny_model_dir, root, (min(scores) + mean) / 2)  # lowest seed below, mean above

    result.assert_outcomes(passed=1)
    records = records_of(root / "out.json")
    assert [(r["case_id"], r["seed"], r["check_index"], r["passed"]) for r in records] == [
        ("beach", 0, 0, True), ("beach", 1, 1, True), ("beach", 2, 2, True)]
    assert [r["scores"]["concept"] for r in records] == pytest.approx(scores, abs=1e-4)
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == ["beach_0.png", "beach_1.png", "beach_2.png"]


def test_a_case_failing_on_its_mean_fails_although_one_seed_is_above(pytester, tiny_model_dir, seeded_dir):
    root, scores = seeded_dir
    mean = sum(scores) / 3

    result = run_seeded_case(pytester, tiny_model_dir, root, (max(scores) + mean) / 2)  # highest seed above, mean below

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*mean over 3 seeds: concept preservation (CP) {mean:.4f} < min_concept*",
                                 "*seed 0: concept=*", "*seed 2: concept=*"])
    records = records_of(root / "out.json")
    assert [r["passed"] for r in records] == [False, False, False]
    assert all(r["failures"][0].startswith("mean over 3 seeds: concept preservation (CP)") for r in records)


def test_a_csv_case_with_seed_rows_makes_one_record_per_seed(pytester, tiny_model_dir, seeded_dir):
    root, _ = seeded_dir
    (root / "cases.csv").write_text(
        "id,concept,prompt,image,mask,seed\n"
        + "".join(f"beach,dog,a dog on the beach,out/beach_{s}.png,out/beach_{s}_mask.png,{40 + s}\n" for s in range(3))
        + "snow,dog,a dog in the snow,out/snow.png,out/snow_mask.png,\n")
    (root / "masc_seeds.toml").write_text(f'cases = "cases.csv"\n[suite]\nname = "seeds"\n{DOG_CONCEPT}')

    result = run(pytester, tiny_model_dir, "--masc-json=out.json")

    result.assert_outcomes(passed=2)
    records = records_of(root / "out.json")
    assert sorted((r["case_id"], r["seed"]) for r in records) == [
        ("beach", 40), ("beach", 41), ("beach", 42), ("snow", None)]


def test_a_seed_that_cannot_be_read_fails_its_case_naming_the_seed(pytester, tiny_model_dir, seeded_dir):
    root, _ = seeded_dir
    (root / "out/beach_1.png").unlink()

    result = run_seeded_case(pytester, tiny_model_dir, root, 0)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*image (seed 1) file 'out/beach_1.png' not found*"])
    assert [(r["seed"], r["passed"], r["error"] is not None) for r in records_of(root / "out.json")] == [
        (0, False, True), (1, False, True), (2, False, True)]


PYTHON_TEST = '''
import pytest

@pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept={minimum})
def test_beach(masc):
    for seed in range(3):
        masc.check(f"out/beach_{{seed}}.png", mask=f"out/beach_{{seed}}_mask.png", prompt="a dog on the beach", seed=seed)
    {after}
'''


@pytest.mark.parametrize("side", ["pass", "fail"])
def test_masc_check_with_seeds_is_one_case_gated_on_the_mean_at_the_test_end(pytester, tiny_model_dir, seeded_dir, side):
    root, scores = seeded_dir
    mean = sum(scores) / 3
    minimum = (min(scores) + mean) / 2 if side == "pass" else (max(scores) + mean) / 2
    pytester.makepyfile(test_gen=PYTHON_TEST.format(minimum=minimum, after="masc.check('out/beach.png', "
                                                    "mask='out/beach_mask.png', prompt='a dog', min_concept=-1)"))

    result = run(pytester, tiny_model_dir, "--masc-json=out.json")

    records = records_of(root / "out.json")
    assert [(r["case_id"], r["seed"], r["check_index"]) for r in records] == [
        ("test_beach", 0, 0), ("test_beach", 1, 1), ("test_beach", 2, 2), ("test_beach#4", None, 3)]
    if side == "pass":
        result.assert_outcomes(passed=1)
        assert all(r["passed"] for r in records)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"*mean over 3 seeds: concept preservation (CP) {mean:.4f} < min_concept*"])
        assert [r["passed"] for r in records] == [False, False, False, True]


@pytest.mark.parametrize("after, expected", [
    ("masc.check('out/beach_0.png', mask='out/beach_0_mask.png', prompt='a dog on the beach', seed=1)",
     "masc.check(seed=1): seed 1 was checked already in this test"),
    ("masc.check('out/beach_0.png', mask='out/beach_0_mask.png', prompt='a cat', seed=5)",
     "masc.check(seed=5): prompt 'a cat' differs from 'a dog on the beach'"),
    ("masc.check('out/beach_0.png', mask='out/beach_0_mask.png', prompt='a dog on the beach', seed=5, min_prompt=0.1)",
     "masc.check(seed=5): min_prompt=0.1 differs from None"),
    ("masc.check('out/beach_0.png', mask='out/beach_0_mask.png', prompt='a dog on the beach', seed=-2)",
     "masc.check(seed=-2): a seed is a non-negative integer"),
])
def test_masc_check_seeds_that_do_not_make_one_case_are_type_errors(pytester, tiny_model_dir, seeded_dir, after,
                                                                     expected):
    pytester.makepyfile(test_gen=PYTHON_TEST.format(minimum=-1, after=after))

    result = run(pytester, tiny_model_dir)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*TypeError: {expected}*"])


def test_a_seed_that_cannot_be_scored_fails_its_case_and_the_other_seeds_say_why(pytester, tiny_model_dir, seeded_dir):
    root, _ = seeded_dir
    (root / "out/beach_1.png").write_bytes(b"not a png")

    result = run_seeded_case(pytester, tiny_model_dir, root, 0)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*MaSC error in *case 'beach'*: seed 1 (*beach_1.png): *"])
    records = records_of(root / "out.json")
    assert [(r["seed"], r["passed"], r["error"] is not None) for r in records] == [
        (0, False, False), (1, False, True), (2, False, False)]
    assert records[0]["failures"] == ["seed 1 could not be scored, so the case's mean over 3 seeds is not formed"]
    assert records[0]["scores"]["concept"] is not None  # the seeds that scored keep their scores


def test_a_nan_score_in_one_seed_fails_the_mean_naming_the_seed(pytester, tiny_model_dir, seeded_dir):
    root, _ = seeded_dir
    (root / "out/beach_1_mask.png").write_bytes((root / "out/full_mask.png").read_bytes())  # no background: PF NaN
    (root / "masc_seeds.toml").write_text(f'[suite]\nname = "seeds"\n{DOG_CONCEPT}'
                                          + SEEDED_CASE.format(minimum=-1) + "min_prompt = -1\n")

    result = run(pytester, tiny_model_dir, "--masc-json=out.json")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*mean over 3 seeds: prompt following (PF) is NaN, gate min_prompt = -1: the output mask covers every patch*",
        "*prompt is NaN for seed 1, so its mean is NaN*"])
    assert [r["scores"]["prompt"] is None for r in records_of(root / "out.json")] == [False, True, False]
