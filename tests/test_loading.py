"""Loading checkpoints the way a user first meets it: without the hub, from directories that
hold no checkpoint or half of one, and quietly (no progress bars or warnings in captured
output). The scorer, the segmenters and the baselines share these rules (metric.hub)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_masc import MaSC
from pytest_masc.errors import ModelLoadError, SegmenterLoadError
from pytest_masc.metric.hub import hub_offline, looks_local, quiet_loading
from pytest_masc.metric.segmentation import load_segmenter

REPO = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (the hub library reads its settings at import), with
    this worktree first on the path and ``env`` over the current environment."""
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    environment.update(env, PYTHONPATH=os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


# --------------------------------------------------------------------------- HF_HUB_OFFLINE and paths


@pytest.mark.parametrize("value, offline", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True), (" on ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False),
])
def test_hf_hub_offline_is_read_one_way(value, offline, monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline


def test_every_reader_of_hf_hub_offline_is_the_one_function():
    """No module reads the variable itself (the plugin had three copies that missed ``on``)."""
    readers = [str(path.relative_to(REPO)) for path in (REPO / "pytest_masc").rglob("*.py")
               if 'environ.get("HF_HUB_OFFLINE"' in path.read_text(encoding="utf-8")]
    assert readers == ["pytest_masc/metric/hub.py"]


@pytest.mark.parametrize("model_id, local", [
    ("google/siglip2-so400m-patch16-naflex", False), ("CIDAS/clipseg-rd64-refined", False), ("bert-base-uncased", False),
    ("./models/seg", True), ("/models/seg", True), ("~/models/seg", True), ("models/seg/v1", True),
    ("models\\seg", True), ("org/name/", False),
])
def test_one_rule_says_what_is_a_local_path(model_id, local):
    assert looks_local(model_id) is local


@pytest.mark.parametrize("value", ["On", "YES"])
def test_segmenter_offline_message_under_any_spelling_of_hf_hub_offline(value, tmp_path, monkeypatch):
    """The segmenter's loader read no HF_HUB_OFFLINE and said "couldn't connect ... cached
    files.." and only the Python call; it now says the hub is off and gives the pytest fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(SegmenterLoadError) as raised:
        load_segmenter("clipseg", device="cpu", cache_dir=tmp_path / "empty-cache")
    message = str(raised.value)
    assert message.startswith("cannot load the CLIPSeg segmenter checkpoint 'CIDAS/clipseg-rd64-refined': "
                              "the hub is switched off (HF_HUB_OFFLINE=1 or local_files_only)")
    assert f"not in the local Hugging Face cache ({tmp_path / 'empty-cache'})" in message
    assert "`hf download CIDAS/clipseg-rd64-refined`" in message and "--masc-segmenter=clipseg=/path/to/checkpoint" in message
    assert "couldn't connect" not in message and ".." not in message


# --------------------------------------------------------------------------- an unreachable hub


def test_unreachable_hub_fails_in_seconds_saying_what_to_do(tmp_path):
    """No network, a hub id, HF_HUB_OFFLINE unset: huggingface_hub retried every request for
    23 s (1+2+4+8+8) before the message; one probe now finds the hub unreachable."""
    result = run_python("""
        import time
        from transformers import AutoConfig  # imports are not what is timed
        from pytest_masc import MaSC
        from pytest_masc.metric.segmentation import load_segmenter
        for load in (lambda: MaSC.from_pretrained("google/siglip2-base-patch16-naflex", device="cpu"),
                     lambda: load_segmenter("clipseg", device="cpu")):
            started = time.perf_counter()
            try:
                load()
            except Exception as error:
                print(f"{time.perf_counter() - started:.2f}", type(error).__name__, error)
    """, {"HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line, (error, model) in zip(lines, [("ModelLoadError", "google/siglip2-base-patch16-naflex"),
                                            ("SegmenterLoadError", "CIDAS/clipseg-rd64-refined")]):
        seconds, name, message = line.split(" ", 2)
        assert float(seconds) < 5.0 and name == error
        assert "cannot be reached (" in message and "Connection refused" in message
        assert f"not in the local Hugging Face cache ({tmp_path / 'hf-home' / 'hub'})" in message
        assert f"`hf download {model}`" in message
        assert "HF_HUB_OFFLINE=1 makes this fail at once" in message
    assert "Retrying" not in result.stderr


def test_cached_checkpoint_loads_at_once_when_the_hub_is_unreachable(tmp_path, tiny_model_dir):
    """Weights in the local cache and no network: transformers asked the hub about every file
    (2.5 minutes of retries) before using the cache; now it reads the cache directly."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--google--siglip2-base-patch16-naflex"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result = run_python("""
        import time
        from transformers import AutoConfig
        from pytest_masc import MaSC
        started = time.perf_counter()
        masc = MaSC.from_pretrained("google/siglip2-base-patch16-naflex", device="cpu")
        print(f"{time.perf_counter() - started:.2f}", masc.model_id)
    """, {"HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}, timeout=90)
    assert result.returncode == 0, result.stderr
    seconds, model_id = result.stdout.split()
    assert model_id == "google/siglip2-base-patch16-naflex" and float(seconds) < 30.0
    assert result.stderr == ""


# --------------------------------------------------------------------------- directories


def partial_copy(source: Path, target: Path, keep=None, drop=()) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if (keep is None or path.name in keep) and path.name not in drop:
            shutil.copy(path, target / path.name)
    return target


@pytest.mark.parametrize("keep, drop, says", [
    ([], (), "is empty: it holds no checkpoint"),
    (["model.safetensors"], (), "holds no checkpoint: it has no config.json (it has model.safetensors)"),
    (["config.json"], (), "has config.json but no weights (model.safetensors or pytorch_model.bin)"),
    (None, ("model.safetensors",), "has config.json but no weights (model.safetensors or pytorch_model.bin)"),
    (None, ("processor_config.json",), "has no image processor settings (preprocessor_config.json or processor_config.json)"),
])
def test_a_directory_without_a_whole_checkpoint_says_what_is_missing(tiny_model_dir, tmp_path, keep, drop, says):
    """An empty directory said "Should have a `model_type` key in its config.json" (it has
    no config.json); config alone said transformers' "Error no file named ...."."""
    directory = partial_copy(tiny_model_dir, tmp_path / "partial", keep, drop)
    with pytest.raises(ModelLoadError) as raised:
        MaSC.from_pretrained(directory, device="cpu")
    message = str(raised.value)
    assert message.startswith(f"cannot load the SigLIP2 checkpoint '{directory}': the directory {directory} {says}.")
    assert "A checkpoint directory holds a Siglip2Model (or SiglipModel) saved with save_pretrained: config.json, " \
           "model.safetensors" in message
    assert "model_type` key" not in message


def test_weights_without_tokenizer_files_fail_instead_of_scoring_with_an_empty_tokenizer(tiny_model_dir, tmp_path):
    """transformers builds an empty tokenizer when the files are missing: every prompt became
    unknown tokens and MaSC scored with it."""
    directory = partial_copy(tiny_model_dir, tmp_path / "no-tokenizer", drop=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(ModelLoadError, match="it has no tokenizer files .transformers made an empty Siglip2Tokenizer."):
        MaSC.from_pretrained(directory, device="cpu")


@pytest.mark.parametrize("config, says", [
    ({"hidden_size": 8}, "has a config.json without a model_type"),
    ("{not json", "has a config.json that is not JSON"),
])
def test_a_config_that_names_no_model_is_explained(tmp_path, config, says):
    directory = tmp_path / "odd"
    directory.mkdir()
    (directory / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ModelLoadError, match=says):
        MaSC.from_pretrained(directory, device="cpu")


def test_a_config_of_another_model_is_named_before_missing_files(tmp_path, clipseg_dir):
    """A BERT config alone is "a 'bert' checkpoint", not "no weights"; the same for segmenters."""
    directory = tmp_path / "bert"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="is a 'bert' checkpoint, not SigLIP2 or SigLIP"):
        MaSC.from_pretrained(directory, device="cpu")
    with pytest.raises(SegmenterLoadError, match="is a 'bert' checkpoint, not SAM3"):
        load_segmenter("sam3", directory, device="cpu")
    with pytest.raises(SegmenterLoadError, match="is a 'clipseg' checkpoint, not SAM3"):
        load_segmenter("sam3", partial_copy(clipseg_dir, tmp_path / "config-only", keep=["config.json"]), device="cpu")


def test_an_empty_segmenter_directory_says_so(tmp_path):
    (tmp_path / "seg").mkdir()
    with pytest.raises(SegmenterLoadError) as raised:
        load_segmenter("clipseg", tmp_path / "seg", device="cpu")
    assert f"the directory {tmp_path / 'seg'} is empty: it holds no checkpoint" in str(raised.value)
    assert "CLIPSegForImageSegmentation saved with save_pretrained" in str(raised.value)


# --------------------------------------------------------------------------- quiet


@pytest.fixture
def every_tiny_checkpoint(tmp_path) -> Path:
    from pytest_masc.testing import (tiny_checkpoint, tiny_clip_checkpoint, tiny_clipseg_checkpoint,
                                     tiny_dino_checkpoint, tiny_fixed_checkpoint, tiny_sam3_checkpoint)

    for name, write in dict(naflex=tiny_checkpoint, fixed=tiny_fixed_checkpoint, clipseg=tiny_clipseg_checkpoint,
                            sam3=tiny_sam3_checkpoint, clip=tiny_clip_checkpoint, dino=tiny_dino_checkpoint).items():
        write(tmp_path / "parent" / name)
    return tmp_path


def test_loading_and_writing_every_tiny_checkpoint_prints_nothing(every_tiny_checkpoint):
    """In a fresh process (transformers warns once per process): loading printed "Loading
    weights" bars and "bos_token_id must be `None` or an integer within the vocabulary
    (between 0 and 31999), got 49406" (about transformers' own default SigLIP text config,
    built to print the loaded one), writing "Writing model shards" bars."""
    result = run_python(f"""
        from pathlib import Path
        from pytest_masc import MaSC
        from pytest_masc.metric.baselines import CLIPScorer, DINOScorer
        from pytest_masc.metric.segmentation import load_segmenter
        from pytest_masc.testing import (tiny_checkpoint, tiny_clip_checkpoint, tiny_clipseg_checkpoint,
                                         tiny_dino_checkpoint, tiny_fixed_checkpoint, tiny_sam3_checkpoint)
        root = Path({str(every_tiny_checkpoint)!r})
        writers = dict(naflex=tiny_checkpoint, fixed=tiny_fixed_checkpoint, clipseg=tiny_clipseg_checkpoint,
                       sam3=tiny_sam3_checkpoint, clip=tiny_clip_checkpoint, dino=tiny_dino_checkpoint)
        loaders = dict(naflex=lambda p: MaSC.from_pretrained(p, device="cpu"),
                       fixed=lambda p: MaSC.from_pretrained(p, device="cpu"),
                       clipseg=lambda p: load_segmenter("clipseg", p, device="cpu"),
                       sam3=lambda p: load_segmenter("sam3", p, device="cpu"),
                       clip=lambda p: CLIPScorer.from_pretrained(p, device="cpu"),
                       dino=lambda p: DINOScorer.from_pretrained(p, device="cpu"))
        for name, load in loaders.items():  # written by the parent process: this one loads first
            load(root / "parent" / name)
        for name, write in writers.items():
            loaders[name](write(root / "child" / name))
        print("quiet")
    """, {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "error"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "quiet\n"
    assert result.stderr == ""


def test_loading_a_tiny_checkpoint_in_a_test_prints_nothing(tiny_model_dir, clipseg_dir, capfd, recwarn):
    MaSC.from_pretrained(tiny_model_dir, device="cpu")
    load_segmenter("clipseg", clipseg_dir, device="cpu")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert not recwarn.list


def test_progress_bars_stay_on_a_terminal_and_come_back_after_loading(monkeypatch):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()  # captured output, logs: no bars
    assert hf_logging.is_progress_bar_enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with quiet_loading():
        assert hf_logging.is_progress_bar_enabled()
