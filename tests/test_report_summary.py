"""The merge prints what the session printed (issue #17): the same summary, line for line but
timing, from one ``--masc-json`` file or from shards; each gated suite's alpha is shown; and no
gate or score value is printed so that it looks as if it passed when it failed (or the reverse)."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from pytest_masc import report
from pytest_masc.gates import Record, evaluate_gates
from masc_suites import make_images
from masc_suites import run as run_masc
from test_plugin_segmenter import write_images
from test_report_merge import masc_section, merge_cli


def _case(case_id: str, prompt: str, image: str, mask: str = "", extra: str = "") -> str:
    mask_line = f'mask = "{mask}"\n' if mask else ""
    return f'\n[[cases]]\nid = "{case_id}"\nconcept = "dog"\nprompt = "{prompt}"\nimage = "{image}"\n{mask_line}{extra}\n'


SUITE = textwrap.dedent("""
    [suite]
    name = "dogs"
    min_concept = 0.0
    min_alpha_concept = -1.0

    [concepts.dog]
    subject = "dog"
    reference = "refs/dog.png"
    reference_mask = "refs/dog_mask.png"
""") + "".join([
    _case("dog-beach", "a dog on the beach", "out/beach.png", extra="human = { concept = [4, 3] }"),  # mask segmented
    _case("dog-snow", "a dog in the snow", "out/snow.png", "out/snow_mask.png", "human = { concept = [1, 2] }"),
    _case("cat-city", "a cat in the city", "out/city.png", "out/city_mask.png", "human = { concept = [3, 3] }"),
    _case("dog-gone", "a dog at home", "out/gone.png", "out/city_mask.png"),  # no such image: not scored
    _case("dog-strict", "a dog in the city", "out/city.png", "out/city_mask.png", "min_concept = 0.9999"),
])


def _without_timing(lines: list[str]) -> list[str]:
    """Summary lines with encode counts (per process) and seconds left out."""
    return [re.sub(r", \d+\.\d s$", ", <seconds>", line) for line in lines if not line.startswith("images encoded ")]


def test_merging_a_sessions_json_prints_the_sessions_summary(pytester, tiny_model_dir, clipseg_dir, capsys):  # noqa: F811
    root = pytester.path
    write_images(root)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "masc_dogs.toml").write_text(SUITE)
    baseline = {"version": 2, "model": str(tiny_model_dir), "revision": None, "dtype": "float32", "max_num_patches": 1024,
                "cases": {}, "concepts": {"dogs::dog": {"concept": 0.0, "prompt": -1.0, "cases": 4},
                                          "old::gone": {"concept": 0.5, "prompt": 0.1, "cases": 1}}}
    (root / "baseline.json").write_text(json.dumps(baseline))
    options = ["--masc-baseline=baseline.json", "--masc-baseline-skip=old::*", f"--masc-segmenter=clipseg={clipseg_dir}"]

    single = run_masc(pytester, tiny_model_dir, *options, "--masc-json=single.json")
    single.assert_outcomes(passed=3, failed=2)
    lines = masc_section(single.outlines)
    # what the merge used to leave out, and each gated suite's alpha
    assert lines[1].startswith(f"segmenter clipseg {clipseg_dir}, threshold 0.5: 1 masks computed, ")
    assert re.fullmatch(r"  dogs  min_alpha_concept -1: alpha -?\d\.\d+ \[.*\] over 3 rated cases: passed", lines[lines.index(
        "suite-level gates (each suite's Krippendorff's alpha vs humans; 95% bootstrap CI):") + 1])
    assert "  skipped as asked, not in this run: old::gone" in lines
    tail = lines[lines.index("1 case(s) could not be scored:") + 1:]
    assert tail[0].startswith("  dogs / dog-gone: ") and "out/gone.png" in tail[0]  # listed: pytest shows it far above
    assert tail[1:] == [
        "1 case(s) below their gates",
        "note: in 1 case(s) the subject does not occur in the prompt, so nothing was stripped for PF:",
        "  dogs / cat-city: subject 'dog', prompt 'a cat in the city'",
    ]

    # One file: the very same lines, timing included (it is the same run).
    merge_options = [f"--baseline={root / 'baseline.json'}", "--baseline-skip=old::*"]
    code, out, err = merge_cli(capsys, root / "single.json", *merge_options)
    assert (code, err) == (1, "")
    assert out[1:-1] == lines
    assert out[-1] == "MaSC FAILED: 5 cases from 1 shard(s): 3 passed, 1 failed, 1 error"

    # Two shards of the same run: the same lines but the per-process encode counts and seconds.
    shard_a = run_masc(pytester, tiny_model_dir, *options, "-k", "dog-beach or dog-snow or dog-gone", "--masc-json=a.json")
    shard_b = run_masc(pytester, tiny_model_dir, *options, "-k", "cat-city or dog-strict", "--masc-json=b.json")
    assert shard_a.ret == shard_b.ret == 1
    code, out, err = merge_cli(capsys, root / "a.json", root / "b.json", *merge_options)
    assert (code, err) == (1, "")
    assert _without_timing(out[1:-1]) == _without_timing(lines)


def _threshold_between(value: float, digits: int) -> float:
    """A threshold between ``value`` and ``value`` printed with ``digits`` decimals: printed that
    way, the value falls on the wrong side of it (or onto it)."""
    shown = float(f"{value:.{digits}f}")
    assert shown != value
    return (value + shown) / 2


def test_failing_and_passing_values_print_on_their_side_of_the_gate(pytester, tiny_model_dir):
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    suite = textwrap.dedent("""
        [suite]
        name = "edge"

        [concepts.dog]
        subject = "dog"
        reference = "refs/dog.png"
        reference_mask = "refs/dog_mask.png"

        [[cases]]
        id = "dog-beach"
        concept = "dog"
        prompt = "a dog on the beach"
        image = "out/beach.png"
        mask = "out/beach_mask.png"
        distractors = ["a dog in the snow"]
    """)
    (pytester.path / "masc_edge.toml").write_text(suite)
    first = run_masc(pytester, tiny_model_dir, "--masc-json=first.json")
    assert first.ret == 0
    scores = json.loads((pytester.path / "first.json").read_text())["records"][0]["scores"]
    cp, margin, global_cp = scores["concept"], scores["prompt_margin"], scores["global_concept"]
    # Thresholds the table's 3 decimals put on the wrong side of the score, and one (global CP) that
    # 4 decimals print equal to the score, which it fails by less than 0.00005.
    gates = {"min_concept": _threshold_between(cp, 3), "min_prompt_margin": _threshold_between(margin, 3),
             "min_global_concept": global_cp + 1e-9}
    assert f"{gates['min_global_concept']:.4f}" == f"{global_cp:.4f}"
    (pytester.path / "masc_edge.toml").write_text(suite + "".join(f"{k} = {v!r}\n" for k, v in gates.items()))
    second = run_masc(pytester, tiny_model_dir, "--masc-json=second.json")
    assert second.ret == 1

    row = next(line for line in masc_section(second.outlines) if line.startswith("edge "))
    cells = row.split()
    for cell, value, gate in ((cells[5], cp, "min_concept"), (cells[7], margin, "min_prompt_margin")):
        threshold = gates[gate]
        assert (float(cell) < threshold) == (value < threshold) and float(cell) != threshold, (row, gate, threshold)

    text = second.stdout.str()
    printed = re.search(r"global concept similarity (\S+) < min_global_concept (\S+) \(short by (\S+)\)", text)
    assert printed, text
    shown, limit, short = map(float, printed.groups())
    assert limit == gates["min_global_concept"] and shown < limit and short > 0
    shown_score = float(re.search(r"scores: .*global_concept=(\S+?),", text).group(1))
    assert shown_score < gates["min_global_concept"]


def test_gate_messages_show_the_digits_a_verdict_needs():
    record = Record(nodeid="m.toml::a", kind="suite", suite="s", concept="dog", case_id="a", prompt="a dog",
                    subject="dog", image="a.png", scores={"concept": 0.94995, "prompt": 0.1},
                    concept_per_reference=[0.94995], gates={"min_concept": 0.95})
    assert evaluate_gates(record) == ["concept preservation (CP) 0.9499 < min_concept 0.9500 (short by 0.00005)"]

    finding = report.suite_gate_finding({"suite": "s", "gate": "min_alpha_prompt", "minimum": 0.2, "score": "prompt",
                                         "alpha": 0.19996, "ci": [0.1, 0.3], "used": 4, "rated": 6, "verdict": "failed"})
    assert finding == "s: alpha of prompt scores vs humans 0.19996 < min_alpha_prompt 0.2 (over 4 of 6 rated cases)"

    records = [Record(nodeid="m.toml::a", kind="suite", suite="s", concept="dog", case_id="a", prompt="a dog",
                      subject="dog", image="a.png", scores={"concept": 0.67999999, "prompt": 0.1})]
    baseline = {"version": 3, "concepts": {"s::dog": {"concept": 0.7, "prompt": 0.1, "cases": 1}}}
    result = report.compare_baseline(baseline, records, 0.02)
    assert result.regressions == ["s::dog: mean CP 0.6800 dropped 0.02000001 below the baseline 0.7000 (allowed 0.02)"]
