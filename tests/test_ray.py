"""Ray Data scoring (``pytest_masc.ray``): a local Ray on 2 CPUs and the tiny checkpoint.

Every Ray run of the module is made once, on one local Ray, by tests/ray_driver.py in a fresh
interpreter (never in the pytest process: tests/conftest.py says why); the tests check what
each run returned or raised.
"""
from __future__ import annotations

import importlib.util
import math
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oracle import require_oracle
from pytest_masc import Sample
from pytest_masc import ray as masc_ray
from pytest_masc.errors import DeviceError, InputError, ModelLoadError
from pytest_masc.ray.schema import cell_text

ATOL = 1e-5
PROMPTS = ["a photo of a dog on the beach", "a dog in the snow", "a dog on a wooden table in a kitchen"]


def write_pair(folder, name, size, seed):
    """An RGB PNG and its rectangle mask PNG; returns their names relative to ``folder``."""
    rng = np.random.default_rng(seed)
    width, height = size
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: 3 * height // 4, width // 5: 3 * width // 5] = 255
    Image.fromarray(mask).save(folder / f"{name}_mask.png")
    return f"{name}.png", f"{name}_mask.png"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two references and three outputs (PNG + mask) in one folder."""
    folder = tmp_path_factory.mktemp("ray-samples")
    pairs = {"ref0": (96, 64), "ref1": (64, 96), "out0": (80, 80), "out1": (112, 64), "out2": (64, 64)}
    for seed, (name, size) in enumerate(pairs.items()):
        write_pair(folder, name, size, seed)
    return folder


def make_table(rows=9, missing_at=None):
    """Rows alternate references, so grouping by reference reorders them inside the scorer."""
    records = []
    for row in range(rows):
        ref, out = f"ref{row % 2}", f"out{row % 3}"
        if row == missing_at:
            out = "missing"
        prompt = PROMPTS[row % 3]
        records.append({
            "id": f"s{row}",
            "concept": f"dog{row % 2}",  # a concept-name column: must come back as input_concept
            "ref_image": f"{ref}.png", "ref_mask": f"{ref}_mask.png",
            "out_image": f"{out}.png", "out_mask": f"{out}_mask.png",
            "prompt": prompt, "subject": "dog" if row % 4 else None,
            "distractors": [p for p in PROMPTS if p != prompt] if row % 2 else [],
        })
    return pd.DataFrame(records)


def expected_scores(masc, table, folder):
    """``score_many`` in this process on the same rows, bad rows as ``InputError``."""
    samples = [
        Sample(*(str(folder / row[c]) for c in masc_ray.IMAGE_COLUMNS), row["prompt"],
               row["subject"] if isinstance(row["subject"], str) else None,  # pandas turns None into NaN
               tuple(row["distractors"]))
        for row in table.to_dict("records")
    ]
    return masc.score_many(samples, errors="return")


def assert_scores_equal(scored, expected):
    assert len(scored) == len(expected)
    for row, want in enumerate(expected):
        if isinstance(want, Exception):
            continue
        assert scored["error"][row] is None, (row, scored["error"][row])
        for name in masc_ray.SCORE_COLUMNS:
            got, value = scored[name][row], getattr(want, name)
            assert (math.isnan(got) and math.isnan(value)) or abs(got - value) <= ATOL, (row, name, got, value)


def require_ray() -> None:
    """Skip without Ray (fail under ``CI=true``), without importing it into this process."""
    if importlib.util.find_spec("ray") is None:
        require_oracle("ray", 'pip install "pytest-masc[ray]"', "Ray")


def run_on_ray(calls, folder) -> dict:
    """Make ``calls`` (``[(name, helper, kwargs)]``, see tests/ray_driver.py) on one local Ray
    in a fresh interpreter; returns ``{name: ("returned", value) | ("raised", exception)}``."""
    require_ray()
    calls_path, outcomes_path = folder / "calls.pkl", folder / "outcomes.pkl"
    calls_path.write_bytes(pickle.dumps(calls))
    tests = os.path.dirname(os.path.abspath(__file__))
    path = [os.path.dirname(tests), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=os.pathsep.join(filter(None, path)))
    done = subprocess.run([sys.executable, os.path.join(tests, "ray_driver.py"), str(calls_path), str(outcomes_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"the Ray driver exited with {done.returncode}:\n{done.stderr[-6000:]}"
    return pickle.loads(outcomes_path.read_bytes())


def outcome(outcomes: dict, name: str):
    """What call ``name`` returned; raises what it raised."""
    kind, value = outcomes[name]
    if kind == "raised":
        raise value
    return value


MISSING_AT = 5


@pytest.fixture(scope="module")
def table():
    return make_table(rows=9, missing_at=MISSING_AT)


def cli_tables(files):
    """samples.csv for the CLI: paths relative to the table's folder, one absolute; returns the
    table, its CSV form and the CSV path."""
    table = make_table(rows=4, missing_at=2)
    csv_table = table.assign(ref_image=[os.path.join("..", files.name, p) for p in table["ref_image"]])
    csv_table = csv_table.assign(ref_mask=[str(files / p) for p in table["ref_mask"]])  # an absolute path too
    for column in ("out_image", "out_mask"):
        csv_table[column] = [os.path.join("..", files.name, p) for p in table[column]]
    csv_table["distractors"] = ["|".join(d) for d in table["distractors"]]
    folder = files.parent / "tables"
    folder.mkdir(exist_ok=True)
    csv_table.to_csv(folder / "samples.csv", index=False)
    return table, csv_table, folder / "samples.csv"


@pytest.fixture(scope="module")
def on_ray(table, files, tiny_model_dir, tmp_path_factory):
    """Every Ray run of this module, made on one local Ray in one fresh interpreter."""
    folder = tmp_path_factory.mktemp("ray-runs")
    empty = folder / "no-checkpoint"
    empty.mkdir()
    _, _, samples_csv = cli_tables(files)
    model = dict(model=tiny_model_dir, device="cpu", local_files_only=True)
    calls = [
        # the table scored by 2 actors in batches of 3 rows
        ("scored", "score", dict(table=table, actors=2, rows_per_batch=3, base_dir=files, **model)),
        ("cli", "cli", dict(argv=[str(samples_csv), "--out", str(folder / "scores.csv"), f"--model={tiny_model_dir}",
                                  "--device=cpu", "--actors=1", "--rows-per-batch=2", "--local-files-only"])),
        ("no_gpus", "score", dict(table=make_table(rows=2), model=tiny_model_dir, num_gpus=1, base_dir=files)),
        ("no_model", "score", dict(table=make_table(rows=2), actors=1, base_dir=files, **dict(model, model=empty))),
    ]
    return run_on_ray(calls, folder), folder


# --------------------------------------------------------------------------- Ray runs


def test_ray_scores_equal_score_many_in_input_order(on_ray, table, files, tiny_masc):
    result, info = outcome(on_ray[0], "scored")
    assert (info.actors, info.batches, info.rows, info.failed) == (2, 3, 9, 1)
    assert list(result.columns) == ["id", "input_concept", *masc_ray.REQUIRED_COLUMNS[:4], "input_prompt",
                                    "subject", "distractors", *masc_ray.OUTPUT_COLUMNS]
    assert result["id"].tolist() == table["id"].tolist()
    assert result["input_prompt"].tolist() == table["prompt"].tolist()
    assert result["input_concept"].tolist() == table["concept"].tolist()
    assert_scores_equal(result, expected_scores(tiny_masc, table, files))
    # a margin where a row has distractors (odd rows) and scored
    assert result.index[result["prompt_margin"].notna()].tolist() == [1, 3, 7]
    assert result["prompt"].dtype == np.float64


def test_ray_unreadable_row_gets_its_error_and_the_rest_score(on_ray, files):
    result, _ = outcome(on_ray[0], "scored")
    bad = result.iloc[MISSING_AT]
    assert str(files / "missing.png") in bad["error"] and "not found" in bad["error"]
    assert all(math.isnan(bad[name]) for name in masc_ray.SCORE_COLUMNS)
    good = result.drop(index=MISSING_AT)
    assert good["error"].isna().all() and good["concept"].notna().all() and good["prompt"].notna().all()


def test_cli_csv_in_csv_out(on_ray, files, tiny_masc):
    outcomes, folder = on_ray
    table, csv_table, _ = cli_tables(files)
    code, stderr = outcome(outcomes, "cli")
    assert code == 1  # one row failed; the table is written all the same
    assert "scored 3 of 4 rows" in stderr and f"row 2: {files / 'missing.png'}" in stderr
    back = pd.read_csv(folder / "scores.csv")
    back["error"] = pd.Series([e if isinstance(e, str) else None for e in back["error"]], dtype=object)
    assert back["input_prompt"].tolist() == table["prompt"].tolist()
    assert back["distractors"].fillna("").tolist() == csv_table["distractors"].tolist()
    assert back["error"][2] == f"{files / 'missing.png'}: output image file not found"
    assert_scores_equal(back, expected_scores(tiny_masc, table, files))


def test_gpu_request_without_gpus_fails_before_scheduling(on_ray):
    with pytest.raises(DeviceError, match=r"--num-gpus=1 per actor x 1 actor\(s\) needs 1 GPU\(s\), but the local Ray instance has 0"):
        outcome(on_ray[0], "no_gpus")


def test_model_that_does_not_load_is_a_model_load_error(on_ray):
    with pytest.raises(ModelLoadError, match=f"cannot load the SigLIP2 checkpoint '{on_ray[1] / 'no-checkpoint'}'"):
        outcome(on_ray[0], "no_model")


def test_ray_never_runs_in_the_pytest_process():
    """Ray drivers run in a fresh interpreter (tests/ray_driver.py): ``import ray`` here is refused
    with the reason, where it would crash a later ``ray.init`` in this process (tests/conftest.py)."""
    require_ray()
    with pytest.raises(RuntimeError, match="Ray is not imported into the pytest process"):
        import ray  # noqa: F401
    assert importlib.util.find_spec("ray") is not None  # installed, as option checks see it


# --------------------------------------------------------------------------- without a Ray cluster


def test_batch_scorer_rows_uris_and_bad_cells(files, tiny_model_dir, tiny_masc):
    """The actor's batch function in this process: URIs, bad cells and distractor forms."""
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/masc-test/out1.png", (files / "out1.png").read_bytes())
    scorer = masc_ray.BatchScorer(masc_ray.ModelOptions(model=str(tiny_model_dir), device="cpu", local_files_only=True),
                                  base_dir=str(files))
    base = dict(ref_image="ref0.png", ref_mask="ref0_mask.png", out_image="out1.png", out_mask="out1_mask.png",
                prompt=PROMPTS[0], subject="dog", distractors="a dog in the snow | a dog in a kitchen")
    batch = pd.DataFrame([
        base,
        dict(base, out_image="memory://masc-test/out1.png"),
        dict(base, out_image=f"file://{files / 'out1.png'}", distractors=np.array(["a dog in the snow", "a dog in a kitchen"])),
        dict(base, out_image="memory://masc-test/nothing.png"),
        dict(base, prompt="  "),
        dict(base, ref_mask=None),
        dict(base, subject=3),
    ])
    out = scorer(batch)
    want = tiny_masc.score(str(files / "ref0.png"), str(files / "ref0_mask.png"), str(files / "out1.png"),
                           str(files / "out1_mask.png"), PROMPTS[0], "dog", ["a dog in the snow", "a dog in a kitchen"])
    for row in range(3):
        assert out["error"][row] is None
        for name in masc_ray.SCORE_COLUMNS:
            assert abs(out[name][row] - getattr(want, name)) <= ATOL, (row, name)
    assert out["error"][3] == "memory://masc-test/nothing.png: file not found"
    assert out["error"][4] == "prompt is empty"
    assert out["error"][5] == "ref_mask is empty: the reference mask path is missing"
    assert out["error"][6] == "subject must be text, got int 3"
    assert out[list(masc_ray.SCORE_COLUMNS)].iloc[3:].isna().all().all()
    assert out["input_prompt"].tolist() == batch["prompt"].tolist()


def test_columns_are_checked_and_named_clearly():
    with pytest.raises(ValueError, match=r"samples.csv: missing column\(s\) subject; a MaSC table needs"):
        masc_ray.check_columns(["ref_image", "ref_mask", "out_image", "out_mask", "prompt"], "samples.csv")
    assert masc_ray.output_names(["prompt", "concept", "error", "subject"]) == {
        "prompt": "input_prompt", "concept": "input_concept", "error": "input_error"}
    with pytest.raises(ValueError, match=r"has both 'prompt' and 'input_prompt'"):
        masc_ray.check_columns([*masc_ray.REQUIRED_COLUMNS, "input_prompt"])
    with pytest.raises(ValueError, match="reserved for the row order"):
        masc_ray.score_table(make_table(rows=1).assign(__masc_row=0))
    with pytest.raises(InputError, match="distractors must be a list of prompts"):
        masc_ray.parse_distractors(7)
    with pytest.raises(ValueError, match="unknown table format"):
        masc_ray.read_table("samples.json")


def test_score_table_takes_the_model_options_whole_or_one_by_one_not_both():
    options = masc_ray.ModelOptions(model="org/name", device="cpu")
    with pytest.raises(ValueError, match=r"as options= or one by one, not both \(also given: max_num_patches\)"):
        masc_ray.score_table(make_table(rows=1), options=options, max_num_patches=256)


def test_tables_round_trip_parquet_and_csv(tmp_path):
    pytest.importorskip("pyarrow")
    table = make_table(rows=3).assign(prompt=["1984", "a dog", "a dog in the snow"])
    masc_ray.write_table(table, tmp_path / "t.parquet")
    masc_ray.write_table(table, tmp_path / "t.csv")
    from_parquet = masc_ray.read_table(tmp_path / "t.parquet")
    from_csv = masc_ray.read_table(tmp_path / "t.csv")
    for back in (from_parquet, from_csv):
        assert back["prompt"].tolist() == ["1984", "a dog", "a dog in the snow"]  # text, not a number
        assert [masc_ray.parse_distractors(d) for d in back["distractors"]] == [tuple(d) for d in table["distractors"]]
        assert [cell_text(s, "subject") for s in back["subject"]] == [None, "dog", "dog"]
    with pytest.raises(InputError, match="nowhere.csv: samples table not found"):
        masc_ray.read_table(tmp_path / "nowhere.csv")


def test_module_imports_without_ray_and_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import pandas as pd
        import pytest_masc.ray as masc_ray, pytest_masc.ray.cli
        row = dict(ref_image="r.png", ref_mask="m.png", out_image="o.png", out_mask="n.png", prompt="p", subject="s")
        try:
            masc_ray.score_table(pd.DataFrame([row]))
        except ImportError as error:
            print(error)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(masc_ray.__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'pip install "pytest-masc[ray]"' in done.stdout
