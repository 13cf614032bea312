"""Suites as Ray samples tables (``python -m pytest_masc.ray export``), and a Ray address with
no cluster behind it failing in one line (issue #17)."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pytest_masc.errors import SuiteError
from pytest_masc.ray import SCORE_COLUMNS, read_table
from pytest_masc.ray.cli import main
from pytest_masc.ray.export import EXPORT_COLUMNS, case_scores, suite_samples
from masc_suites import run
from test_ray import outcome, require_ray, run_on_ray

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "suites" / "demo"
ATOL = 1e-5

ONE_CASE_CONCEPT = """
[concepts.cup]
reference = "refs/teapot.png"
reference_mask = "refs/teapot_mask.png"

[[cases]]
id = "cup-alone"
concept = "cup"
prompt = "a cup on the beach"
image = "out/teapot_beach.png"
mask = "out/teapot_beach_mask.png"
"""


@pytest.fixture
def demo(tmp_path) -> Path:
    """The demo suites copied, plus a concept without subject whose one case has no distractors."""
    root = tmp_path / "suites" / "demo"
    shutil.copytree(DEMO, root)
    (root / "masc_demo.toml").write_text((root / "masc_demo.toml").read_text() + ONE_CASE_CONCEPT)
    return root


# --------------------------------------------------------------------------- the table


def test_export_resolves_the_suite_defaults(demo):
    table = suite_samples(demo)
    assert list(table.columns) == list(EXPORT_COLUMNS)
    cases = table.drop_duplicates(["suite_file", "case_id"])
    assert len(cases) == 13 and len(table) == 13 + 3 * 2  # the robot has two references: two rows per case
    beach = table[(table["suite"] == "demo") & (table["case_id"] == "robot-beach")]
    assert beach["reference_index"].tolist() == [0, 1]
    assert beach["ref_image"].tolist() == [str(demo / "refs/robot.png"), str(demo / "refs/robot_side.png")]
    assert beach["out_mask"].tolist() == [str(demo / "out/robot_beach_mask.png")] * 2
    assert beach["subject"].tolist() == ["toy robot"] * 2
    # distractors: the concept's other prompts, or the case's own list
    assert beach["distractors"].iloc[0] == ["a toy robot in the snow", "a toy robot in the city"]
    forest = table[(table["suite"] == "demo") & (table["case_id"] == "teapot-forest")].iloc[0]
    assert forest["distractors"] == ["a teapot on a kitchen table", "a teapot in the city"]
    alone = table[table["case_id"] == "cup-alone"].iloc[0]
    assert alone["subject"] is None and alone["distractors"] == []
    csv_beach = table[(table["suite"] == "demo-csv") & (table["case_id"] == "robot-beach")]
    assert csv_beach["suite_file"].tolist() == [str(demo / "masc_demo_csv.toml")] * 2


def test_export_command_writes_relative_paths_that_score_from_the_table_folder(demo, tmp_path, capsys):
    out = demo / "samples.csv"
    code = main(["export", str(demo / "masc_demo_csv.toml"), "--out", str(out), f"--base-dir={demo}"])
    assert code == 0
    assert "exported 6 case(s) of 1 suite file(s) as 9 row(s)" in capsys.readouterr().err
    back = read_table(out)
    assert back["ref_image"].tolist()[:2] == ["refs/robot.png", "refs/robot_side.png"]
    assert back["suite_file"].unique().tolist() == ["masc_demo_csv.toml"]
    assert back["distractors"].iloc[0] == "a toy robot in the snow|a toy robot in the city"


def drop_a_mask(root: Path) -> Path:
    suite = root / "masc_demo.toml"
    suite.write_text(suite.read_text().replace('mask = "out/robot_snow_mask.png"\n', ""))
    return root


def drop_an_image(root: Path) -> Path:
    (root / "out/robot_city.png").unlink()
    return root


def empty_folder(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


@pytest.mark.parametrize("change, expected", [
    (drop_a_mask, "case 'robot-snow' (line 31): no mask (pytest segments it with --masc-segmenter); "
                  "a samples table needs mask files"),
    (drop_an_image, "masc_demo.toml, case 'robot-city' (line 39): image file 'out/robot_city.png' not found"),
    (empty_folder, "empty: no suite file (masc_*.toml) in this directory"),
])
def test_export_errors_name_the_suite_and_case(demo, capsys, change, expected):
    assert main(["export", str(change(demo)), "--out", str(demo / "samples.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (demo / "samples.parquet").exists()


def test_case_scores_fold_references_as_the_plugin_does():
    table = pd.DataFrame({
        "suite": "s", "suite_file": "masc_s.toml", "case_id": ["a", "a", "b"], "concept_name": "c",
        "reference_index": [0, 1, 0], "concept": [0.5, 0.7, math.nan], "prompt": [0.1, 0.1, 0.2],
        "global_concept": [0.2, 0.4, 0.3], "global_prompt": [0.3, 0.3, 0.1], "prompt_margin": [0.01, 0.01, math.nan],
        "error": [None, None, "image not found"],
    })
    folded = case_scores(table)
    assert folded["case_id"].tolist() == ["a", "b"] and folded["references"].tolist() == [2, 1]
    assert folded["concept"][0] == pytest.approx(0.6) and folded["global_concept"][0] == pytest.approx(0.3)
    assert math.isnan(folded["concept"][1]) and folded["error"].tolist() == [None, "image not found"]
    with pytest.raises(ValueError, match="not a scored export: missing column"):
        case_scores(table.drop(columns=["reference_index"]))


# --------------------------------------------------------------------------- scored on Ray


def test_exported_suites_score_on_ray_as_pytest_scores_them(pytester, demo, tiny_model_dir, tmp_path):
    """Every case's CP, PF, globals and margin (NaN where the suite has no distractor) equal
    the suite run's, with the references' CP averaged as the plugin averages them."""
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    result = run(pytester, tiny_model_dir, str(demo), "--masc-device=cpu", "--masc-json=run.json")
    result.assert_outcomes(passed=12, failed=1)  # cup-alone: a NaN margin fails min_prompt_margin
    records = {(r["suite"], r["case_id"]): r for r in json.loads((pytester.path / "run.json").read_text())["records"]}

    table = suite_samples(demo, base_dir=demo)  # suite-relative paths, read against base_dir
    assert table["ref_image"].iloc[0] == "refs/robot.png"
    calls = [("export", "score", dict(table=table, model=tiny_model_dir, device="cpu", local_files_only=True,
                                      actors=1, base_dir=demo))]
    scored, _info = outcome(run_on_ray(calls, tmp_path), "export")  # Ray in a fresh interpreter (tests/conftest.py)
    folded = case_scores(scored)

    assert len(folded) == len(records) == 13
    margins = 0
    for case in folded.to_dict("records"):
        record = records[(case["suite"], case["case_id"])]
        assert case["error"] is None
        for name in SCORE_COLUMNS:
            want = record["scores"][name]
            if want is None:
                assert math.isnan(case[name]), (case["case_id"], name)
            else:
                assert case[name] == pytest.approx(want, abs=ATOL), (case["case_id"], name)
        margins += record["scores"]["prompt_margin"] is not None
    assert margins == 12  # all but the concept with one case
    assert math.isnan(folded.set_index("case_id").loc["cup-alone", "prompt_margin"])


# --------------------------------------------------------------------------- no cluster


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_processes(marker: str) -> list[str]:
    """Command lines of running processes that mention ``marker`` (a Ray temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "pytest" not in command:
                found.append(command)
    return found


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://localhost:{port}"])
def test_no_cluster_at_the_address_is_one_line_and_exit_2(tmp_path, address):
    """Nothing listens at HOST:PORT: one line at once (Ray alone retries for minutes), exit 2,
    nothing left running. README's ``--address=auto`` is run in tests/test_readme.py."""
    require_ray()
    address = address.format(port=free_port())
    pd.DataFrame([dict(ref_image="r.png", ref_mask="m.png", out_image="o.png", out_mask="n.png", prompt="p",
                       subject="s")]).to_csv(tmp_path / "samples.csv", index=False)
    ray_dir = tmp_path / "ray"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_dir), RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest_masc.ray", "samples.csv", "--out",
         "scores.parquet", f"--address={address}", "--num-gpus=1"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Ray cluster"), done.stderr
    assert f"no Ray cluster answers at --address={address}" in lines[0] and "Connection refused" in lines[0]
    assert "ray start --head" in lines[0] and "--address=local" in lines[0]
    assert not (tmp_path / "scores.parquet").exists()
    assert not list(ray_dir.glob("session_*")) and not ray_processes(str(ray_dir))
