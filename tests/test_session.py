"""Session settings, device placement and the xdist hand-off of records, without loading a model:
settings come from a real pytest config (``pytester.parseconfig``), as users give them."""
from __future__ import annotations

import json
import math
import types
from typing import Optional

import pytest

from pytest_masc import report
from pytest_masc.gates import Record, nan_to_none
from pytest_masc.metric.options import ModelOptions
from pytest_masc.plugin.options import Settings, parse_baselines
from pytest_masc.plugin.session import MascSession, worker_index


def _config(workerinput=None):
    return types.SimpleNamespace(workerinput=workerinput) if workerinput is not None else types.SimpleNamespace()


def _session(pytester: pytest.Pytester, workerid: Optional[str], *options: str) -> MascSession:
    """The session of ``pytest --masc OPTIONS`` in xdist worker ``workerid`` (None: no xdist)."""
    config = pytester.parseconfig("--masc", *options)
    if workerid is not None:
        config.workerinput = {"workerid": workerid}
    return MascSession(config=config, settings=Settings.from_config(config))


@pytest.mark.parametrize(("workerid", "index"), [("gw0", 0), ("gw3", 3), ("gw11", 11)])
def test_worker_index_from_xdist_workerinput(workerid, index):
    assert worker_index(_config({"workerid": workerid})) == index


def test_no_worker_index_outside_xdist():
    assert worker_index(_config()) is None


@pytest.mark.parametrize(("workerid", "requested", "expected"), [
    ("gw0", None, "cuda:0"),
    ("gw1", None, "cuda:1"),
    ("gw2", None, "cuda:0"),   # two GPUs: worker 2 wraps around
    ("gw3", "cuda", "cuda:1"),
    ("gw3", "cuda:0", "cuda:0"),  # an explicit index is kept
    ("gw3", "cpu", "cpu"),
])
def test_xdist_workers_spread_over_gpus(pytester, monkeypatch, workerid, requested, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    session = _session(pytester, workerid, *([f"--masc-device={requested}"] if requested else []))
    assert session.device() == expected


def test_without_cuda_the_request_is_passed_through(pytester, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _session(pytester, "gw1").device() is None


def test_the_model_options_are_read_once_into_one_object(pytester, monkeypatch):
    """The seven model options, from the command line and the ini file, in ``Settings.model_options``:
    the one object the session loads from, Ray gets and the report's run settings come from."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (pytester.path / "pytest.ini").write_text("[pytest]\nmasc_max_patches = 256\nmasc_dtype = bfloat16\n")
    config = pytester.parseconfig("--masc", "--masc-model=org/name", "--masc-revision=v2", "--masc-device=cpu",
                                  "--masc-batch-size=4")
    options = Settings.from_config(config).model_options
    assert options == ModelOptions(model="org/name", revision="v2", device="cpu", dtype="bfloat16",
                                   max_num_patches=256, batch_size=4, local_files_only=True)
    assert options.load_kwargs() == {"model_id": "org/name", "revision": "v2", "device": "cpu", "dtype": "bfloat16",
                                     "max_num_patches": 256, "batch_size": 4, "local_files_only": True}
    assert options.recorded() == {"model": "org/name", "revision": "v2", "dtype": "bfloat16", "max_num_patches": 256}


def test_parse_baselines():
    assert parse_baselines("clip, dino") == {"clip": None, "dino": None}
    assert parse_baselines("clip=/models/clip") == {"clip": "/models/clip"}
    assert parse_baselines(None) == {}
    with pytest.raises(pytest.UsageError, match="unknown baseline 'blip'"):
        parse_baselines("blip")


def _full_record() -> Record:
    """A record with every part a hand-off could lose: ordered distractor prompts (one of them
    NaN), NaN scores (stored as None, as the verdict stores them), masks a segmenter computed,
    a second check of one test, human ratings, nested diagnostics."""
    return Record(
        nodeid="tests/test_gen.py::test_teapot", kind="python", suite="tests/test_gen.py", concept="teapot",
        case_id="test_teapot#3", prompt="a teapot on a café table", subject="teapot", image="out/teapot.png",
        scores={"concept": nan_to_none(math.nan), "prompt": 0.31, "global_concept": 0.72, "global_prompt": 0.28,
                "prompt_margin": nan_to_none(math.nan)},
        concept_per_reference=[0.8, None],
        distractor_prompts={"a teapot in the snow": 0.27, "a teapot at night": nan_to_none(math.nan), "a teapot": 0.3},
        gates={"min_concept": 0.5, "min_prompt_margin": 0.0}, failures=["CP below 0.5"], passed=False,
        human={"concept": [4.0, 5.0], "prompt": [3.0]}, extras={"subject_found": True, "ref_grid": [4, 6], "fg": {"a": 1}},
        error=None, panel="artifacts/teapot.png", check_index=2,
        computed_masks=[{"role": "output", "image": "out/teapot.png", "text": "teapot", "foreground_fraction": 0.42,
                         "flag": None, "file": "masks/teapot-out.png"}],
    )


def test_a_record_crosses_the_xdist_hand_off_and_a_report_file_in_one_codec(pytester, tmp_path):
    """A worker sends its records in the --masc-json record codec: the controller gets the same
    record, the JSON it was sent is the file's record, and the file reads back the same record."""
    record = _full_record()
    worker = _session(pytester, "gw1")
    worker.add_record(record)
    sent = worker.worker_output()
    controller = _session(pytester, None)
    controller.merge_worker_output(sent)
    assert controller.records == [record]

    path = tmp_path / "run.json"
    run = report.Report(records=controller.records)
    report.write_json(path, run, report.evaluate(run, n_resamples=10))
    assert json.loads(sent["masc_records"]) == json.loads(path.read_text(encoding="utf-8"))["records"]
    loaded = report.load(path).records
    assert loaded == [record]
    assert list(loaded[0].distractor_prompts) == list(record.distractor_prompts)  # order kept
