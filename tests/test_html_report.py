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

    summary = re.search(r'<div class="masc-summary"><h2>MaSC summary</h2>.*?<pre[^>]*>(.*?)</pre>', page, re.DOTALL)
    assert summary, "no MaSC summary block in the report"
    text = html.unescape(summary.group(1))
    assert re.search(r"^dog-release  dog +4 +3 ", text, re.MULTILINE)
    assert "1 case(s) below their gates" in text

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
