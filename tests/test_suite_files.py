"""Suite files (``masc_*.toml`` + cases CSV): parsing, every validation error, the demo suite."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_masc.errors import SuiteError
from pytest_masc.protocols.spec import ProtocolSpec
from pytest_masc.suite import GATE_KEYS, SUITE_GATE_KEYS, Case, CaseImage, Suite, is_suite_file, load_suite

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "suites" / "demo"

IMAGE_FILES = (
    "refs/dog.png", "refs/dog_mask.png",
    "refs/cat1.png", "refs/cat1_mask.png", "refs/cat2.png", "refs/cat2_mask.png",
    "out/dog_beach.png", "out/dog_beach_mask.png", "out/dog_snow.png", "out/dog_snow_mask.png",
    "out/cat_sofa.png", "out/cat_sofa_mask.png",
)

GOOD_TOML = '''\
[suite]
name = "dog-release"
min_concept = 0.5
min_prompt_margin = 0.0
min_alpha_concept = 0.7

[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"

[concepts.cat]
reference = ["refs/cat1.png", "refs/cat2.png"]
reference_mask = ["refs/cat1_mask.png", "refs/cat2_mask.png"]

[[cases]]
id = "dog-beach"
concept = "dog"
prompt = "a dog on the beach"
image = "out/dog_beach.png"
mask = "out/dog_beach_mask.png"
min_concept = 0.6
human = { concept = [3, 4], prompt = [4] }

[[cases]]
concept = "dog"
prompt = "a dog in the snow"
image = "out/dog_snow.png"
mask = "out/dog_snow_mask.png"

[[cases]]
concept = "cat"
prompt = "a cat on a sofa"
image = "out/cat_sofa.png"
mask = "out/cat_sofa_mask.png"
min_global_prompt = -0.25
distractors = ["a cat in a box", "a cat in a box"]

[[cases]]
concept = "dog"
prompt = "a dog on the beach"
image = "out/dog_beach.png"
mask = "out/dog_beach_mask.png"
'''

CSV_TOML = '''\
cases = "data/cases.csv"

[suite]
min_prompt = 0.1

[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"

[concepts.cat]
reference = ["refs/cat1.png", "refs/cat2.png"]
reference_mask = ["refs/cat1_mask.png", "refs/cat2_mask.png"]
'''

GOOD_CSV = (
    "\ufeffid, concept ,prompt,image,mask,min_prompt,min_concept,distractors,human_concept,human_prompt\n"
    "dog-beach,dog,\"a dog on the beach, at dawn\",out/dog_beach.png,out/dog_beach_mask.png,0.2,,,3|4,4\n"
    "\n"
    ",dog,a dog in the snow,out/dog_snow.png,out/dog_snow_mask.png,,0.55,,,\n"
    ",cat, a cat on a sofa ,out/cat_sofa.png,out/cat_sofa_mask.png,,,a cat in a box|a cat on a roof,2.5,\n"
)


def write_suite(root: Path, text: str, name: str = "masc_test.toml", csv: str | None = None) -> Path:
    """Write a suite file, the image files it names (empty placeholders) and an optional CSV."""
    for relative in IMAGE_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    if csv is not None:
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / "cases.csv").write_text(csv, encoding="utf-8")
    suite = root / name
    suite.write_text(text, encoding="utf-8")
    return suite


def suite_error(path: Path, **kwargs) -> str:
    """The message of the ``SuiteError`` that loading ``path`` raises."""
    with pytest.raises(SuiteError) as info:
        load_suite(path, **kwargs)
    return str(info.value)


def assert_mentions(message: str, *parts: str) -> None:
    missing = [part for part in parts if part not in message]
    assert not missing, f"{missing} not in message: {message}"


# --------------------------------------------------------------------------- good suites


def test_toml_suite_parses_cases_with_defaults(tmp_path):
    """Default ids, resolved paths, gate overrides, default distractors, human ratings."""
    suite = load_suite(write_suite(tmp_path, GOOD_TOML))
    assert isinstance(suite, Suite)
    assert suite.path == tmp_path / "masc_test.toml"
    assert suite.name == "dog-release"
    assert suite.gates == {"min_concept": 0.5, "min_prompt_margin": 0.0}
    assert suite.suite_gates == {"min_alpha_concept": 0.7}
    assert suite.protocol is None

    dog, cat = suite.concepts["dog"], suite.concepts["cat"]
    assert dog.subject == "dog" and cat.subject is None
    assert dog.references == (tmp_path / "refs" / "dog.png",)
    assert cat.reference_masks == (tmp_path / "refs" / "cat1_mask.png", tmp_path / "refs" / "cat2_mask.png")

    assert [case.id for case in suite.cases] == ["dog-beach", "dog-2", "cat-1", "dog-3"]
    beach, snow, sofa, beach_again = suite.cases
    assert beach == Case(
        id="dog-beach",
        concept="dog",
        prompt="a dog on the beach",
        images=(CaseImage(path=tmp_path / "out" / "dog_beach.png", mask=tmp_path / "out" / "dog_beach_mask.png"),),
        gates={"min_concept": 0.6, "min_prompt_margin": 0.0},
        distractors=("a dog in the snow",),
        human={"concept": (3.0, 4.0), "prompt": (4.0,)},
        location=beach.location,
    )
    assert_mentions(beach.location, "masc_test.toml", "case 'dog-beach'", "line 16")
    assert snow.distractors == ("a dog on the beach",)
    assert snow.gates == {"min_concept": 0.5, "min_prompt_margin": 0.0} and snow.human == {}
    assert sofa.gates == {"min_concept": 0.5, "min_prompt_margin": 0.0, "min_global_prompt": -0.25}
    assert sofa.distractors == ("a cat in a box",)
    assert beach_again.distractors == ("a dog in the snow",)
    assert list(sofa.gates) == [key for key in GATE_KEYS if key in sofa.gates]
    assert suite.concept_cases("dog") == (beach, snow, beach_again)
    assert suite.concept_cases("cat") == (sofa,)
    assert len(set(suite.cases)) == 4 and hash(suite) == hash(load_suite(suite.path))


def test_concept_cases_rejects_unknown_concept(tmp_path):
    """``concept_cases`` raises KeyError with a suggestion rather than returning nothing."""
    suite = load_suite(write_suite(tmp_path, GOOD_TOML))
    with pytest.raises(KeyError, match="did you mean 'dog'"):
        suite.concept_cases("dgo")


def test_default_name_is_stem_without_prefix(tmp_path):
    """Without ``[suite] name`` the name is the file stem minus ``masc_``."""
    text = GOOD_TOML.replace('name = "dog-release"\n', "")
    assert load_suite(write_suite(tmp_path, text, name="masc_pets.toml")).name == "pets"


def test_csv_suite_parses_rows(tmp_path):
    """CSV cells: stripped, BOM and blank rows tolerated, '|' lists, line numbers, defaults."""
    suite = load_suite(write_suite(tmp_path, CSV_TOML, csv=GOOD_CSV))
    assert suite.name == "test"
    assert [case.id for case in suite.cases] == ["dog-beach", "dog-2", "cat-1"]
    beach, snow, sofa = suite.cases
    assert beach.prompt == "a dog on the beach, at dawn"
    assert beach.images[0].path == tmp_path / "out" / "dog_beach.png"  # relative to the suite file
    assert beach.gates == {"min_prompt": 0.2}
    assert beach.human == {"concept": (3.0, 4.0), "prompt": (4.0,)}
    assert beach.distractors == ("a dog in the snow",)
    assert snow.gates == {"min_concept": 0.55, "min_prompt": 0.1}
    assert snow.distractors == ("a dog on the beach, at dawn",)
    assert sofa.prompt == "a cat on a sofa"
    assert sofa.distractors == ("a cat in a box", "a cat on a roof")
    assert sofa.human == {"concept": (2.5,)}
    assert_mentions(beach.location, "cases.csv, line 2")
    assert_mentions(snow.location, "cases.csv, line 4")
    assert_mentions(sofa.location, "cases.csv, line 5")


def test_semicolon_separated_cases_csv_is_read(tmp_path):
    semicolons = GOOD_CSV.replace(",", ";").replace('"a dog on the beach; at dawn"', '"a dog on the beach, at dawn"')
    suite = load_suite(write_suite(tmp_path, CSV_TOML, csv=semicolons))
    assert [case.prompt for case in suite.cases] == ["a dog on the beach, at dawn", "a dog in the snow", "a cat on a sofa"]
    assert suite.cases[2].distractors == ("a cat in a box", "a cat on a roof")


def test_explicit_empty_distractors_means_none(tmp_path):
    """``distractors = []`` turns the default (other prompts of the concept) off."""
    text = GOOD_TOML.replace('prompt = "a dog in the snow"\n', 'prompt = "a dog in the snow"\ndistractors = []\n')
    suite = load_suite(write_suite(tmp_path, text))
    assert suite.cases[1].distractors == ()


def test_human_ratings_accept_a_number_and_drop_empty_lists(tmp_path):
    """``human`` values: a single number is a list of one; an empty list is no rating."""
    text = GOOD_TOML.replace("human = { concept = [3, 4], prompt = [4] }", "human = { concept = [], prompt = 2.5 }")
    assert load_suite(write_suite(tmp_path, text)).cases[0].human == {"prompt": (2.5,)}


def test_missing_files_pass_without_check_files(tmp_path):
    """``check_files=False`` skips existence checks but still resolves the paths."""
    suite_path = write_suite(tmp_path, GOOD_TOML.replace("out/dog_snow.png", "out/not_yet.png"))
    suite = load_suite(suite_path, check_files=False)
    assert suite.cases[1].images[0].path == tmp_path / "out" / "not_yet.png"


def test_masks_may_be_left_out_for_a_segmenter(tmp_path):
    """Without ``reference_mask`` and ``mask`` a suite parses with ``None`` masks, to be
    segmented with ``segment_prompt`` (else the subject); CSV rows may omit ``mask`` too."""
    text = (GOOD_TOML.replace('reference_mask = "refs/dog_mask.png"\n', 'segment_prompt = "brown dog"\n')
            .replace('mask = "out/dog_beach_mask.png"\n', ""))
    suite = load_suite(write_suite(tmp_path, text))
    dog = suite.concepts["dog"]
    assert dog.reference_masks == (None,) and dog.segmentation_text == "brown dog" and dog.subject == "dog"
    assert suite.concepts["cat"].segmentation_text is None
    by_id = {case.id: case for case in suite.cases}
    assert by_id["dog-beach"].images[0].mask is None and by_id["dog-2"].images[0].mask == tmp_path / "out/dog_snow_mask.png"
    csv_text = "concept,prompt,image,mask\ndog,a dog on the beach,out/dog_beach.png,\ndog,a dog in the snow,out/dog_snow.png,out/dog_snow_mask.png\n"
    toml = GOOD_TOML[: GOOD_TOML.index("[[cases]]")].replace('reference_mask = "refs/dog_mask.png"\n', "")
    suite = load_suite(write_suite(tmp_path, 'cases = "data/cases.csv"\n' + toml, name="masc_csv.toml", csv=csv_text))
    assert [case.images[0].mask for case in suite.cases] == [None, tmp_path / "out/dog_snow_mask.png"]
    assert suite.concepts["dog"].segmentation_text == "dog"


def test_protocol_only_suite(tmp_path):
    """A ``[protocol]`` table stands in for cases; its paths resolve but may lie outside."""
    (tmp_path / "suites").mkdir()
    (tmp_path / "data" / "masks").mkdir(parents=True)
    path = tmp_path / "suites" / "masc_bench.toml"
    path.write_text('[protocol]\nkind = "dreambench_plus"\nroot = "../data"\nmasks = "../data/masks"\n')
    suite = load_suite(path)
    assert suite.cases == () and suite.concepts == {}
    assert suite.protocol == ProtocolSpec(
        kind="dreambench_plus",
        root=str(tmp_path / "data"),
        masks=str(tmp_path / "data" / "masks"),
    )


def test_is_suite_file():
    """Only ``masc_<something>.toml`` names are suites."""
    assert is_suite_file(Path("tests/masc_demo.toml"))
    assert is_suite_file("masc_a.toml")
    assert not is_suite_file(Path("masc_.toml"))
    assert not is_suite_file(Path("demo.toml"))
    assert not is_suite_file(Path("masc_demo.csv"))
    assert not is_suite_file(Path("test_masc_demo.toml"))


def test_suite_module_imports_nothing_heavy():
    """Parsing suites must not pull in torch or transformers."""
    code = "import sys, pytest_masc.suite; print(sorted({'torch', 'transformers', 'pandas'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- TOML errors

TOML_ERRORS = {
    "syntax": (('name = "dog-release"', 'name = "dog-release'), ["invalid TOML", "line 2", "column"]),
    "unknown case key": (
        ("min_concept = 0.6", "min_concpet = 0.6"),
        ["case 'dog-beach'", "unknown key 'min_concpet'", "(did you mean 'min_concept'?)"],
    ),
    "unknown suite key": (
        ("min_prompt_margin = 0.0", "min_prompt_margn = 0.0"),
        ["[suite]", "unknown key 'min_prompt_margn'", "did you mean 'min_prompt_margin'"],
    ),
    "unknown concept key": (
        ('subject = "dog"', 'subjct = "dog"'),
        ["concept 'dog'", "unknown key 'subjct'", "did you mean 'subject'"],
    ),
    "unknown top-level key": (
        ("[suite]", 'concept = "x"\n[suite]'),
        ["unknown top-level key 'concept'", "did you mean 'concepts'"],
    ),
    "unknown human key": (
        ("human = { concept = [3, 4], prompt = [4] }", "human = { concpt = [3] }"),
        ["case 'dog-beach'", "human", "unknown key 'concpt'", "did you mean 'concept'"],
    ),
    "suite gate in a case": (
        ("min_concept = 0.6", "min_auc = 0.6"),
        ["case 'dog-beach'", "min_auc is a suite-level gate"],
    ),
    "missing case field": (
        ('image = "out/dog_beach.png"\nmask = "out/dog_beach_mask.png"\nmin_concept', "mask = \"out/dog_beach_mask.png\"\nmin_concept"),
        ["case 'dog-beach'", "missing required key 'image'"],
    ),
    "missing case field before id is known": (
        ('concept = "cat"\n', ""),
        ["case #3", "line 31", "missing required key 'concept'"],
    ),
    "missing concept field": (
        ('reference = "refs/dog.png"\n', ""),
        ["concept 'dog'", "missing required key 'reference'"],
    ),
    "reference mask left out without a subject": (
        ('reference_mask = ["refs/cat1_mask.png", "refs/cat2_mask.png"]\n', ""),
        ["concept 'cat'", "missing reference_mask", "subject (or segment_prompt)"],
    ),
    "case mask left out without a subject": (
        ('mask = "out/cat_sofa_mask.png"\n', ""),
        ["case 'cat-1'", "no mask, and concept 'cat' has neither subject nor segment_prompt"],
    ),
    "gate not a number": (
        ("min_concept = 0.6", 'min_concept = "high"'),
        ["case 'dog-beach'", "min_concept must be a number", "'high'"],
    ),
    "gate is a boolean": (("min_concept = 0.6", "min_concept = true"), ["min_concept must be a number"]),
    "gate out of range": (
        ("min_concept = 0.6", "min_concept = 1.5"),
        ["case 'dog-beach'", "min_concept = 1.5 is outside [-1, 1]"],
    ),
    "gate is nan": (("min_concept = 0.6", "min_concept = nan"), ["min_concept = nan is outside [-1, 1]"]),
    "suite gate out of range": (
        ("min_prompt_margin = 0.0", "min_prompt_margin = -2"),
        ["[suite]", "min_prompt_margin = -2.0 is outside [-1, 1]"],
    ),
    "alpha out of range": (("min_alpha_concept = 0.7", "min_alpha_concept = -1.5"), ["[suite]", "min_alpha_concept = -1.5 is outside [-1, 1]"]),
    "auc without an ORIDa protocol": (("min_alpha_concept = 0.7", "min_auc = 0.7"), ["[suite]", "min_auc gates the identity AUC of an ORIDa protocol"]),
    "human rating out of range": (
        ("prompt = [4] }", "prompt = [5] }"),
        ["case 'dog-beach'", "human.prompt rating 5 is outside 0..4"],
    ),
    "human rating not a number": (
        ("concept = [3, 4]", 'concept = [3, "good"]'),
        ["case 'dog-beach'", "human.concept must be numbers", "'good'"],
    ),
    "human not a table": (
        ("human = { concept = [3, 4], prompt = [4] }", "human = [3, 4]"),
        ["case 'dog-beach'", "human must be a table"],
    ),
    "unknown concept": (
        ('concept = "dog"\nprompt = "a dog on the beach"\nimage = "out/dog_beach.png"\nmask = "out/dog_beach_mask.png"\nmin',
         'concept = "dgo"\nprompt = "a dog on the beach"\nimage = "out/dog_beach.png"\nmask = "out/dog_beach_mask.png"\nmin'),
        ["case 'dog-beach'", "unknown concept 'dgo'", "did you mean 'dog'"],
    ),
    "duplicate explicit id": (
        ('concept = "cat"', 'id = "dog-beach"\nconcept = "cat"'),
        ["duplicate case id 'dog-beach'", "case 'dog-beach' (line 16)", "case 'dog-beach' (line 31)"],
    ),
    "explicit id clashes with a default id": (
        ('concept = "cat"', 'id = "dog-3"\nconcept = "cat"'),
        ["duplicate case id 'dog-3'", "(line 31)", "(line 40)"],
    ),
    "reference and mask lengths differ": (
        ('reference_mask = ["refs/cat1_mask.png", "refs/cat2_mask.png"]', 'reference_mask = "refs/cat1_mask.png"'),
        ["concept 'cat'", "reference has 2 path(s) but reference_mask has 1"],
    ),
    "empty reference list": (
        ('reference = "refs/dog.png"', "reference = []"),
        ["concept 'dog'", "reference must not be an empty list"],
    ),
    "path escapes with ..": (
        ('image = "out/dog_snow.png"', 'image = "../elsewhere/dog.png"'),
        ["case 'dog-2'", "image '../elsewhere/dog.png' escapes the suite's directory"],
    ),
    "absolute path outside": (
        ('reference = "refs/dog.png"', 'reference = "/etc/hostname"'),
        ["concept 'dog'", "reference '/etc/hostname' escapes the suite's directory"],
    ),
    "missing image file": (
        ('mask = "out/dog_snow_mask.png"', 'mask = "out/missing_mask.png"'),
        ["case 'dog-2'", "mask file 'out/missing_mask.png' not found"],
    ),
    "missing reference in a list": (
        ('"refs/cat2.png"]', '"refs/cat3.png"]'),
        ["concept 'cat'", "reference[1] file 'refs/cat3.png' not found"],
    ),
    "image is a directory": (
        ('image = "out/dog_snow.png"', 'image = "out"'),
        ["case 'dog-2'", "image file 'out' is a directory"],
    ),
    "prompt not a string": (('prompt = "a dog in the snow"', "prompt = 3"), ["case 'dog-2'", "prompt must be a string"]),
    "empty prompt": (('prompt = "a dog in the snow"', 'prompt = "  "'), ["case 'dog-2'", "prompt must not be empty"]),
    "distractors not an array": (
        ('distractors = ["a cat in a box", "a cat in a box"]', 'distractors = "a cat in a box"'),
        ["case #3", "distractors must be an array"],
    ),
    "distractor is the own prompt": (
        ('distractors = ["a cat in a box", "a cat in a box"]', 'distractors = ["a cat in a box", "a cat on a sofa"]'),
        ["case 'cat-1'", "distractors[1] is the case's own prompt"],
    ),
    "concept not a table": (
        ('[concepts.cat]\nreference = ["refs/cat1.png", "refs/cat2.png"]\nreference_mask = ["refs/cat1_mask.png", "refs/cat2_mask.png"]',
         '[concepts]\ncat = "refs/cat1.png"'),
        ["concept 'cat'", "[concepts.cat] must be a table"],
    ),
    "suite name not a string": (('name = "dog-release"', "name = 7"), ["[suite]", "name must be a string"]),
    "unknown protocol kind": (
        ("[suite]", '[protocol]\nkind = "dreambench"\nroot = "refs"\n[suite]'),
        ["[protocol]", "unknown kind 'dreambench'", "did you mean 'dreambench_plus'"],
    ),
    "protocol without root": (("[suite]", '[protocol]\nkind = "orida"\n[suite]'), ["[protocol]", "missing required key 'root'"]),
    "protocol root missing": (
        ("[suite]", '[protocol]\nkind = "orida"\nroot = "no_such_dir"\n[suite]'),
        ["[protocol]", "root directory 'no_such_dir' not found"],
    ),
}


@pytest.mark.parametrize("replace, expected", TOML_ERRORS.values(), ids=TOML_ERRORS.keys())
def test_toml_errors_name_file_place_and_field(tmp_path, replace, expected):
    """Each malformed suite raises a SuiteError naming the file, the case or table, the field."""
    old, new = replace
    assert old in GOOD_TOML
    path = write_suite(tmp_path, GOOD_TOML.replace(old, new, 1), name="masc_bad.toml")
    assert_mentions(suite_error(path), "masc_bad.toml", *expected)


def test_symlink_out_of_the_suite_directory_is_rejected(tmp_path):
    """A symlink inside the suite's directory that points outside it escapes too."""
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"")
    root = tmp_path / "suite"
    path = write_suite(root, GOOD_TOML, name="masc_bad.toml")
    link = root / "out" / "link.png"
    link.symlink_to(outside)
    path.write_text(GOOD_TOML.replace('image = "out/dog_snow.png"', 'image = "out/link.png"'))
    assert_mentions(suite_error(path), "masc_bad.toml", "case 'dog-2'", "image 'out/link.png' escapes",
                    str(outside))


def test_suite_without_cases_is_rejected(tmp_path):
    """No ``[[cases]]``, no CSV and no protocol: an empty suite."""
    text = GOOD_TOML[: GOOD_TOML.index("[[cases]]")]
    assert_mentions(suite_error(write_suite(tmp_path, text, name="masc_empty.toml")),
                    "masc_empty.toml", "the suite has no cases")


def test_cases_of_the_wrong_type_are_rejected(tmp_path):
    """``cases`` is either ``[[cases]]`` tables or one CSV path, nothing else."""
    text = "cases = 3\n" + GOOD_TOML[: GOOD_TOML.index("[[cases]]")]
    assert_mentions(suite_error(write_suite(tmp_path, text, name="masc_bad.toml")),
                    "masc_bad.toml", "cases must be an array of [[cases]] tables or the path of a CSV file, got int")


def test_missing_suite_file(tmp_path):
    """A path with no file behind it."""
    assert_mentions(suite_error(tmp_path / "masc_nowhere.toml"), "masc_nowhere.toml", "suite file not found")


def test_suite_file_not_utf8(tmp_path):
    """Bytes that are not UTF-8 are reported as such, not as a TOML error."""
    path = tmp_path / "masc_latin1.toml"
    path.write_bytes('[suite]\nname = "caf\u00e9"\n'.encode("latin-1"))
    assert_mentions(suite_error(path), "masc_latin1.toml", "not UTF-8")


# --------------------------------------------------------------------------- CSV errors

CSV_HEADER = "id,concept,prompt,image,mask,min_concept,distractors,human_concept,human_prompt\n"
CSV_ROW = "dog-beach,dog,a dog on the beach,out/dog_beach.png,out/dog_beach_mask.png,0.6,,3|4,4\n"

CSV_ERRORS = {
    "unknown column": (
        CSV_HEADER.replace("prompt,image", "promt,image") + CSV_ROW,
        ["cases.csv, line 1", "unknown column 'promt'", "did you mean 'prompt'"],
    ),
    "missing required column": (
        "id,concept,prompt,mask\ndog-beach,dog,a dog,out/dog_beach_mask.png\n",
        ["cases.csv", "missing required column 'image'"],
    ),
    "duplicate column": (CSV_HEADER.replace("\n", ",id\n") + CSV_ROW, ["cases.csv, line 1", "column 'id' appears more than once"]),
    "empty required cell": (CSV_HEADER + CSV_ROW.replace("out/dog_beach.png,", ","), ["cases.csv, line 2", "empty cell in required column 'image'"]),
    "gate not a number": (CSV_HEADER + CSV_ROW.replace(",0.6,", ",high,"), ["cases.csv, line 2", "min_concept must be a number", "'high'"]),
    "gate out of range": (CSV_HEADER + CSV_ROW.replace(",0.6,", ",-1.5,"), ["cases.csv, line 2", "min_concept = -1.5 is outside [-1, 1]"]),
    "rating not a number": (CSV_HEADER + CSV_ROW.replace("3|4", "3|x"), ["cases.csv, line 2", "human_concept must be '|'-separated numbers", "'x'"]),
    "rating out of range": (CSV_HEADER + CSV_ROW.replace(",4\n", ",4.5\n"), ["cases.csv, line 2", "human_prompt rating 4.5 is outside 0..4"]),
    "empty list item": (CSV_HEADER + CSV_ROW.replace("3|4", "3||4"), ["cases.csv, line 2", "human_concept has an empty item"]),
    "too many cells": (CSV_HEADER + CSV_ROW.replace("a dog on the beach", "a dog, on the beach"), ["cases.csv, line 2", "10 cells but the header has 9 columns"]),
    "unknown concept on a later line": (
        CSV_HEADER + CSV_ROW + "\n" + CSV_ROW.replace("dog-beach,dog,", "cat-x,cta,"),
        ["cases.csv, line 4", "unknown concept 'cta'", "did you mean 'cat'"],
    ),
    "duplicate ids across lines": (
        CSV_HEADER + CSV_ROW + CSV_ROW,
        ["duplicate case id 'dog-beach'", "cases.csv, line 2 and", "cases.csv, line 3"],
    ),
    "missing file in a row": (CSV_HEADER + CSV_ROW.replace("out/dog_beach.png", "out/gone.png"), ["cases.csv, line 2", "image file 'out/gone.png' not found"]),
    "header only": (CSV_HEADER, ["cases.csv", "has a header but no case rows"]),
    "empty file": ("", ["cases.csv", "the cases CSV is empty"]),
}


@pytest.mark.parametrize("csv_text, expected", CSV_ERRORS.values(), ids=CSV_ERRORS.keys())
def test_csv_errors_name_file_line_and_column(tmp_path, csv_text, expected):
    """Each malformed cases CSV raises a SuiteError naming the CSV, the line and the column."""
    path = write_suite(tmp_path, CSV_TOML, csv=csv_text)
    assert_mentions(suite_error(path), *expected)


def test_missing_csv_file(tmp_path):
    """``cases = "..."`` naming no file is an error even with ``check_files=False``."""
    path = write_suite(tmp_path, CSV_TOML.replace("data/cases.csv", "data/nope.csv"))
    assert_mentions(suite_error(path, check_files=False), "masc_test.toml", "cases CSV 'data/nope.csv' not found")


def test_csv_path_may_not_escape(tmp_path):
    """The CSV itself must lie inside the suite's directory."""
    path = write_suite(tmp_path / "inner", CSV_TOML.replace("data/cases.csv", "../cases.csv"))
    (tmp_path / "cases.csv").write_text(CSV_HEADER + CSV_ROW)
    assert_mentions(suite_error(path), "masc_test.toml", "cases '../cases.csv' escapes the suite's directory")


# --------------------------------------------------------------------------- the demo suite


@pytest.fixture(scope="module")
def demo_script():
    """``scripts/make_demo_suite.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("make_demo_suite", REPO / "scripts" / "make_demo_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def regenerated(demo_script, tmp_path_factory) -> Path:
    """The demo suite written afresh into a temporary directory."""
    out = tmp_path_factory.mktemp("demo")
    demo_script.write_demo_suite(out)
    return out


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_demo_suites_load(tmp_path):
    """Both demo suites load with files checked and describe the same cases."""
    toml_suite = load_suite(DEMO / "masc_demo.toml")
    csv_suite = load_suite(DEMO / "masc_demo_csv.toml")
    ids = ["robot-beach", "robot-snow", "robot-city", "teapot-forest", "teapot-beach", "teapot-3"]
    assert [case.id for case in toml_suite.cases] == ids
    assert [case.id for case in csv_suite.cases] == ids
    assert toml_suite.gates == csv_suite.gates == {"min_concept": 0.5, "min_prompt_margin": -0.05}
    assert toml_suite.concepts == csv_suite.concepts
    assert len(toml_suite.concepts["robot"].references) == 2
    for ours, theirs in zip(toml_suite.cases, csv_suite.cases):
        assert (ours.prompt, ours.images, ours.gates, ours.distractors) == (
            theirs.prompt, theirs.images, theirs.gates, theirs.distractors)
    by_id = {case.id: case for case in toml_suite.cases}
    assert by_id["robot-snow"].gates["min_concept"] == 0.6
    assert by_id["robot-city"].human == {"concept": (4.0, 3.0), "prompt": (3.0, 4.0)}
    assert by_id["teapot-forest"].distractors == ("a teapot on a kitchen table", "a teapot in the city")


def test_demo_suite_is_reproducible(regenerated):
    """Regenerating writes the committed files: same text bytes, same PNG pixels."""
    assert _files(regenerated) == _files(DEMO) - {"README.md"}
    for name in sorted(_files(regenerated)):
        fresh, committed = regenerated / name, DEMO / name
        if name.endswith(".png"):
            with Image.open(fresh) as a, Image.open(committed) as b:
                assert (a.mode, a.size) == (b.mode, b.size), name
                assert np.array_equal(np.asarray(a), np.asarray(b)), name
        else:
            assert fresh.read_bytes() == committed.read_bytes(), name


def test_demo_generator_is_byte_deterministic(demo_script, regenerated, tmp_path):
    """Two runs in one environment write identical bytes."""
    demo_script.write_demo_suite(tmp_path)
    for name in _files(regenerated):
        assert (tmp_path / name).read_bytes() == (regenerated / name).read_bytes(), name


def test_demo_masks_are_exact(demo_script):
    """Outside its mask an output equals its bare background; inside, the object covers it."""
    for output in demo_script.OUTPUTS:
        background = np.asarray(demo_script.render_background(output.background, *output.size))
        with Image.open(DEMO / "out" / f"{output.file}.png") as image, \
                Image.open(DEMO / "out" / f"{output.file}_mask.png") as mask_file:
            pixels, mask = np.asarray(image.convert("RGB")), np.asarray(mask_file)
        assert mask_file.mode == "L" and set(np.unique(mask)) == {0, 255}, output.file
        foreground = mask == 255
        assert 0.02 < foreground.mean() < 0.5, output.file
        assert np.array_equal(pixels[~foreground], background[~foreground]), output.file
        changed = np.any(pixels != background, axis=-1)
        assert changed[foreground].mean() > 0.9, output.file


def test_demo_files_are_small():
    """The committed demo stays well under 300 KB."""
    assert sum((DEMO / name).stat().st_size for name in _files(DEMO)) < 300_000


def test_gate_key_tuples_match_the_documented_api():
    """The gate names the plugin is written against."""
    assert GATE_KEYS == ("min_concept", "min_prompt", "min_prompt_margin", "min_global_concept", "min_global_prompt")
    assert SUITE_GATE_KEYS == ("min_alpha_concept", "min_alpha_prompt", "min_auc")
