"""pytest-html: the MaSC summary and the failing cases' panels in the HTML report."""
from __future__ import annotations

import base64
import html
import io
import re
import textwrap

import pytest
from PIL import Image

from oracle import require_oracle
from masc_suites import SUITE, make_images, run

require_oracle("pytest_html", 'pip install -e ".[test]"', "pytest-html")


def test_html_report_has_the_summary_and_an_embedded_panel(pytester, tiny_model_dir):
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_dogs.toml").write_text(SUITE + textwrap.dedent("""
        [[cases]]
        id = "dog-strict"
        concept = "dog"
        prompt = "a dog in the city"
        image = "out/city.png"
        mask = "out/city_mask.png"
        min_concept = 0.999
    """))
    result = run(pytester, tiny_model_dir, "--html=report/index.html", "--self-contained-html")
    result.assert_outcomes(passed=3, failed=1)
    page = (pytester.path / "report/index.html").read_text(encoding="utf-8")

    summary = re.search(r'<div class="masc-summary"><style>.*?</style><h2>MaSC summary</h2>(.*?)<pre[^>]*>(.*?)</pre>',
                        page, re.DOTALL)
    assert summary, "no MaSC summary block in the report"
    table, text = summary.group(1), html.unescape(summary.group(2))
    # the concept table is a table, its short pass count marked; the rest of the summary is text
    assert re.search(r'<tr><td class="masc-key">dog-release</td><td class="masc-key">dog</td><td>4</td>'
                     r'<td class="masc-fail">3</td><td>0\.\d{3}</td>', table), table
    assert "1 case(s) below their gates" in text and "dog-release  dog" not in text

    # The failing case's row carries its panel as an inline PNG (the rows are a JSON blob).
    blob = html.unescape(page)
    panels = re.findall(r'"name": "MaSC panel: dog-release / dog-strict", "format_type": "image", '
                        r'"content": "data:image/png;base64,([A-Za-z0-9+/=]+)"', blob)
    assert len(panels) == 1
    with Image.open(io.BytesIO(base64.b64decode(panels[0]))) as panel:
        assert panel.height > 200 and panel.width > 300
    assert "MaSC panel: dog-release / dog-beach" not in blob  # passing cases have none
    written = list((pytester.path / "report/masc-panels").glob("*.png"))  # no --masc-artifacts: beside the report
    assert [p.name for p in written] == ["masc_dogs.toml_dog-strict.png"]


def test_html_report_shows_the_baseline_comparison_as_a_table_with_its_forest_plot(pytester, tiny_model_dir, tmp_path):
    import json

    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_dogs.toml").write_text(SUITE)
    assert run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--masc-update-baseline").ret == 0
    baseline = json.loads((pytester.path / "baseline.json").read_text())
    for record in baseline["records"]:
        record["CP"] += 0.05  # every case 0.05 lower now: regressed
    (pytester.path / "baseline.json").write_text(json.dumps(baseline))
    result = run(pytester, tiny_model_dir, "--masc-baseline=baseline.json", "--html=report/index.html",
                 "--self-contained-html")
    assert result.ret == 1
    page = (pytester.path / "report/index.html").read_text(encoding="utf-8")
    table = re.search(r'<table class="masc-comparison">(.*?)</table>', page, re.DOTALL)
    assert table, "no comparison table"
    cells = re.findall(r'<td class="([^"]*)">([^<]*)</td>', table.group(1))
    assert ("masc-regressed masc-fail", "regressed") in cells and ("masc-non-inferior", "non-inferior") in cells
    assert ("masc-fail", "-0.0500 [-0.0500, -0.0500]") in cells  # the failing interval is marked too
    forest = re.search(r'<img class="masc-forest" alt="forest plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert forest
    with Image.open(io.BytesIO(base64.b64decode(forest.group(1)))) as image:
        colours = {tuple(p) for p in image.convert("RGB").getdata()}
    assert (192, 38, 38) in colours  # a regressed row
    assert (pytester.path / "report/masc-panels/masc-release-forest.png").is_file()
