"""Session settings and device placement, without loading a model."""
from __future__ import annotations

import types

import pytest

from pytest_masc.plugin.options import Settings, parse_baselines
from pytest_masc.plugin.session import MascSession, worker_index


def _config(workerinput=None):
    return types.SimpleNamespace(workerinput=workerinput) if workerinput is not None else types.SimpleNamespace()


def _settings(device=None) -> Settings:
    return Settings(
        enabled=True, model="m", revision=None, device=device, dtype=None, max_patches=1024, batch_size=None,
        json=None, baseline=None, max_drop=0.02, update_baseline=False, artifacts=None, protocol=None, baselines={},
    )


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
def test_xdist_workers_spread_over_gpus(monkeypatch, workerid, requested, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    session = MascSession(config=_config({"workerid": workerid}), settings=_settings(requested))
    assert session.device() == expected


def test_without_cuda_the_request_is_passed_through(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    session = MascSession(config=_config({"workerid": "gw1"}), settings=_settings(None))
    assert session.device() is None


def test_parse_baselines():
    assert parse_baselines("clip, dino") == {"clip": None, "dino": None}
    assert parse_baselines("clip=/models/clip") == {"clip": "/models/clip"}
    assert parse_baselines(None) == {}
    with pytest.raises(pytest.UsageError, match="unknown baseline 'blip'"):
        parse_baselines("blip")
