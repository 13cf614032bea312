"""Suite files as spreadsheets and editors save them (issue #17): semicolon CSVs with decimal
commas, Excel's empty trailing columns, byte-order marks, UTF-16 text, and keys written at the
wrong level of the TOML file."""
from __future__ import annotations

import json

import pytest

from pytest_masc.errors import SuiteError
from pytest_masc.suite import load_suite
from masc_suites import make_images, run

CONCEPTS = """\
[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"
"""

# What Excel writes for a table of 3 cases in a comma-decimal locale ("CSV UTF-8" in
# Germany or France): a BOM, semicolons, CRLF, decimal commas, and empty columns to the
# right of the table where cells were once formatted.
EXCEL_CSV = (
    "\ufeffid;concept;prompt;image;mask;min_concept;min_prompt_margin;human_concept;;;\r\n"
    "dog-beach;dog;a dog on the beach;out/beach.png;out/beach_mask.png;0,6;-0,5;3,5|4;;;\r\n"
    "dog-snow;dog;a dog in the snow;out/snow.png;out/snow_mask.png;-0,25;;2;;;\r\n"
    ";;;;;;;;;;\r\n"
    "dog-city;dog;a dog in the city;out/city.png;out/city_mask.png;;;;;;\r\n"
)


def write(path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def test_excel_csv_and_a_bom_toml_run_with_their_gates(pytester, tiny_model_dir):
    """The user's way: ``pytest --masc`` on a TOML saved with a BOM whose cases CSV came out of
    Excel; decimal commas are gates and ratings, the empty columns are ignored."""
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    write(pytester.path / "masc_dogs.toml",
          '\ufeffcases = "cases.csv"\r\n\r\n[suite]\r\nname = "excel"\r\n\r\n' + CONCEPTS.replace("\n", "\r\n"))
    write(pytester.path / "cases.csv", EXCEL_CSV)

    result = run(pytester, tiny_model_dir, "--masc-json=report.json")

    result.assert_outcomes(passed=3)
    records = {r["case_id"]: r for r in json.loads((pytester.path / "report.json").read_text())["records"]}
    assert records["dog-beach"]["gates"] == {"min_concept": 0.6, "min_prompt_margin": -0.5}
    assert records["dog-beach"]["human"] == {"concept": [3.5, 4.0]}
    assert records["dog-snow"]["gates"] == {"min_concept": -0.25}
    assert records["dog-city"]["gates"] == {}
    assert records["dog-city"]["distractor_prompts"][0]["prompt"] == "a dog on the beach"


def suite(tmp_path, csv_text: str, encoding: str = "utf-8"):
    for name in ("refs/dog.png", "refs/dog_mask.png", "out/beach.png", "out/beach_mask.png"):
        write(tmp_path / name, "")
    write(tmp_path / "masc_dogs.toml", 'cases = "cases.csv"\n' + CONCEPTS)
    write(tmp_path / "cases.csv", csv_text, encoding)
    return tmp_path / "masc_dogs.toml"


def test_excel_unicode_text_is_read(tmp_path):
    """Excel's "Unicode Text" (UTF-16 with a BOM, tab-separated) with decimal commas."""
    text = ("concept\tprompt\timage\tmask\tmin_concept\thuman_concept\t\r\n"
            "dog\ta dog on the beach\tout/beach.png\tout/beach_mask.png\t0,55\t2,5\t\r\n")
    (case,) = load_suite(suite(tmp_path, text, "utf-16")).cases
    assert (case.prompt, case.gates, case.human) == ("a dog on the beach", {"min_concept": 0.55}, {"concept": (2.5,)})


def test_a_toml_in_utf16_is_read(tmp_path):
    """Notepad's "Unicode": UTF-16 with a BOM."""
    path = suite(tmp_path, "concept,prompt,image,mask\ndog,a dog on the beach,out/beach.png,out/beach_mask.png\n")
    path.write_bytes(('cases = "cases.csv"\n[suite]\nname = "unicode"\n' + CONCEPTS).encode("utf-16"))
    assert load_suite(path).name == "unicode"


@pytest.mark.parametrize("csv_text, expected", [
    pytest.param(
        "concept,prompt,,image,mask\ndog,a dog on the beach,x,out/beach.png,out/beach_mask.png\n",
        ["cases.csv, line 2", "'x' is in column 3, whose header cell (line 1) is empty",
         "name the column or delete its cells"],
        id="data under an empty header"),
    pytest.param(
        "concept;prompt;image;mask;\ndog;a dog on the beach;out/beach.png;out/beach_mask.png;;0.5\n",
        ["cases.csv, line 2", "6 cells but the header has 5 columns"],
        id="data beyond the header"),
    pytest.param(
        'concept,prompt,image,mask,min_concept\ndog,a dog on the beach,out/beach.png,out/beach_mask.png,"0,6"\n',
        ["cases.csv, line 2", "min_concept must be a number, got '0,6'",
         "a decimal comma is read only in semicolon- or tab-separated files"],
        id="decimal comma in a comma-separated file"),
    pytest.param(
        "concept;prompt;image;mask;subject\ndog;a dog on the beach;out/beach.png;out/beach_mask.png;dog\n",
        ["cases.csv, line 1", "unknown column 'subject': 'subject' is a key of a [concepts.<name>] table "
                              "in the suite file, not a cases CSV column"],
        id="a concept key as a column"),
    pytest.param(
        "concept,prompt,image,mask\ndog,caf\xe9 dog,out/beach.png,out/beach_mask.png\n",
        ["cases.csv", "not UTF-8 text", "save it as UTF-8 (in Excel: Save As > 'CSV UTF-8')"],
        id="Windows-1252"),
])
def test_spreadsheet_csv_errors_say_what_to_do(tmp_path, csv_text, expected):
    encoding = "cp1252" if "\xe9" in csv_text else "utf-8"
    with pytest.raises(SuiteError) as error:
        load_suite(suite(tmp_path, csv_text, encoding))
    missing = [part for part in expected if part not in str(error.value)]
    assert not missing, f"{missing} not in {error.value}"


CASE = """
[[cases]]
concept = "dog"
prompt = "a dog on the beach"
image = "out/beach.png"
mask = "out/beach_mask.png"
"""


@pytest.mark.parametrize("toml_text, expected", [
    pytest.param('[suite]\nname = "dogs"\ncases = "cases.csv"\n\n' + CONCEPTS,
                 "masc_dogs.toml, [suite]: unknown key 'cases': 'cases' is a top-level key; write it above the "
                 "first [table] header (in TOML every key below the [suite] header belongs to that table)",
                 id="cases under [suite]"),
    pytest.param(CONCEPTS + 'cases = "cases.csv"\n',
                 "concept 'dog': unknown key 'cases': 'cases' is a top-level key; write it above the first "
                 "[table] header (in TOML every key below the [concepts.dog] header belongs to that table)",
                 id="cases under a concept"),
    pytest.param("min_concept = 0.5\n" + CONCEPTS + CASE,
                 "masc_dogs.toml: unknown top-level key 'min_concept': 'min_concept' is a key of [suite] or of "
                 "a [[cases]] table",
                 id="a gate without [suite]"),
    pytest.param(CONCEPTS + CASE + 'reference = "refs/dog.png"\n',
                 "case #1 (line 6): unknown key 'reference': 'reference' is a key of a [concepts.<name>] table",
                 id="a concept key in a case"),
    pytest.param(CONCEPTS + CASE.replace("mask =", "name = \"x\"\nmask ="),
                 "unknown key 'name': 'name' is a key of [suite]", id="a suite key in a case"),
    pytest.param(CONCEPTS.replace("subject", "prompt") + CASE,
                 "concept 'dog': unknown key 'prompt': 'prompt' is a key of a [[cases]] table",
                 id="a case key in a concept"),
    pytest.param('concept = "dog"\n' + CONCEPTS + CASE,
                 "unknown top-level key 'concept' (did you mean 'concepts'?): 'concept' is a key of a [[cases]] table",
                 id="close to a known key and valid elsewhere"),
])
def test_a_key_at_the_wrong_level_says_where_it_belongs(tmp_path, toml_text, expected):
    suite(tmp_path, "concept,prompt,image,mask\ndog,a dog on the beach,out/beach.png,out/beach_mask.png\n")
    (tmp_path / "masc_dogs.toml").write_text(toml_text)
    with pytest.raises(SuiteError) as error:
        load_suite(tmp_path / "masc_dogs.toml")
    assert expected in str(error.value)


def test_cases_under_suite_is_a_collection_error_that_says_where_it_belongs(pytester, tiny_model_dir):
    """The issue's file, run the user's way."""
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_dogs.toml").write_text('[suite]\nname = "dogs"\ncases = "cases.csv"\n\n' + CONCEPTS)
    (pytester.path / "cases.csv").write_text("concept,prompt,image,mask\ndog,a dog,out/beach.png,out/beach_mask.png\n")
    result = run(pytester, tiny_model_dir)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*masc_dogs.toml, [[]suite]: unknown key 'cases': 'cases' is a top-level key; "
                                 "write it above the first [[]table] header*"])
