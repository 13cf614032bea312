"""The plugin's options as users write them: ini paths from any working directory, ini key
typos, devices the machine lacks, and ``--masc-* VALUE`` written with a space."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from masc_suites import SUITE, make_images

from pytest_masc.plugin.options import parse_baselines, resolve_path


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """A model id that is not found locally must fail here, not ask the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _usage_error(result) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines
    return result.stderr.str()


# --------------------------------------------------------------------------- paths in ini keys


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dir: Path) -> Path:
    """A project whose pyproject.toml names its checkpoint and its outputs by relative paths;
    its suite (one case failing, for a panel) lives in tests/."""
    root = pytester.path
    (root / "ckpt").mkdir()
    (root / "ckpt/tiny").symlink_to(tiny_model_dir, target_is_directory=True)
    (root / "baselines").mkdir()
    (root / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.pytest.ini_options]
        masc_model = "ckpt/tiny"
        masc_json = "reports/run.json"
        masc_artifacts = "reports/panels"
        masc_baseline = "baselines/base.json"
    """))
    make_images(root / "tests")
    (root / "tests/masc_dogs.toml").write_text(
        SUITE.replace('mask = "out/beach_mask.png"', 'mask = "out/beach_mask.png"\nmin_concept = 0.9999', 1)
    )
    return root


@pytest.mark.parametrize("where", [".", "tests"])
def test_ini_paths_are_relative_to_the_ini_file_from_any_directory(pytester, project, monkeypatch, where):
    monkeypatch.chdir(project / where)
    result = pytester.runpytest("--masc", "--masc-update-baseline", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([f"masc: model {project / 'ckpt/tiny'}, *"])
    assert (project / "reports/run.json").is_file()
    assert [panel.suffix for panel in (project / "reports/panels").iterdir()] == [".png"]
    # a failing run writes no baseline (report.baseline); the line names the ini-relative path it kept
    result.stdout.fnmatch_lines([f"baseline NOT written to {project / 'baselines/base.json'}: this run failed *"])
    assert not (project / "tests/reports").exists() and not (project / "tests/baselines").exists()


def test_command_line_paths_are_relative_to_the_invocation_directory(pytester, project, monkeypatch):
    monkeypatch.chdir(project / "tests")
    result = pytester.runpytest("--masc", "--masc-json=here.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    assert (project / "tests/here.json").is_file() and not (project / "reports/run.json").exists()


def test_protocol_and_segmenter_directories_in_ini_are_relative_to_it(pytester, tmp_path, monkeypatch):
    root = pytester.path
    (root / "models/clipseg").mkdir(parents=True)
    (root / "pytest.ini").write_text(textwrap.dedent("""
        [pytest]
        masc_model = never/loaded
        masc_protocol = orida=data/orida
        masc_segmenter = clipseg=models/clipseg
    """))
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    result = pytester.runpytest("--masc", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"masc: missing masks segmented with clipseg ({root / 'models/clipseg'})",
        f"*orida root directory {root / 'data/orida'} not found*",
    ])
    assert "masc: model never/loaded, " in result.stdout.str()  # a hub id stays a hub id


def test_resolve_path_rule(tmp_path):
    (tmp_path / "ckpt/tiny").mkdir(parents=True)
    assert resolve_path("out/run.json", tmp_path) == str(tmp_path / "out/run.json")
    assert resolve_path("/abs/run.json", tmp_path) == "/abs/run.json"
    assert resolve_path("~/run.json", tmp_path) == str(Path.home() / "run.json")
    # a model: an existing directory or an explicit ./ ../ path is a path, anything else a hub id
    assert resolve_path("ckpt/tiny", tmp_path, hub_id=True) == str(tmp_path / "ckpt/tiny")
    assert resolve_path("./ckpt/other", tmp_path, hub_id=True) == str(tmp_path / "ckpt/other")
    assert resolve_path("../models/x", tmp_path, hub_id=True) == str(tmp_path / "../models/x")
    assert resolve_path("google/siglip2-base-patch16-naflex", tmp_path, hub_id=True) == "google/siglip2-base-patch16-naflex"
    assert parse_baselines("clip=ckpt/tiny,dino=facebook/dinov2-base", tmp_path) == {
        "clip": str(tmp_path / "ckpt/tiny"), "dino": "facebook/dinov2-base"}


# --------------------------------------------------------------------------- ini key typos


@pytest.mark.parametrize(("file_name", "text"), [
    ("pytest.ini", "[pytest]\nmasc_modle = ckpt/tiny\n"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nmasc_modle = "ckpt/tiny"\n'),
    ("tox.ini", "[pytest]\nmasc-modle = ckpt/tiny\n"),
])
def test_an_unknown_masc_ini_key_is_a_usage_error_with_a_suggestion(pytester, file_name, text):
    (pytester.path / file_name).write_text(text)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    for args in (["--masc"], []):
        error = _usage_error(pytester.runpytest(*args, "-p", "no:cacheprovider"))
        assert f"{pytester.path / file_name}: unknown ini key " in error
        assert "(did you mean 'masc_model'?)" in error


def test_an_unknown_masc_key_given_with_o_and_keys_other_plugins_register(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    error = _usage_error(pytester.runpytest("-o", "masc_max_patchs=256", "-p", "no:cacheprovider"))
    assert "-o / --override-ini: unknown ini key 'masc_max_patchs' (did you mean 'masc_max_patches'?)" in error
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.addini('masc_team', 'ours')\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\nmasc_team = vision\nmasc_max_patches = 256\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_a_device_this_machine_lacks_is_a_usage_error_at_start(pytester, device):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    error = _usage_error(pytester.runpytest("--masc", f"--masc-device={device}", "-p", "no:cacheprovider"))
    assert f"--masc-device: device {device!r} is not available" in error
    (pytester.path / "pytest.ini").write_text(f"[pytest]\nmasc_device = {device}\n")
    error = _usage_error(pytester.runpytest("--masc", "-p", "no:cacheprovider"))
    assert f"masc_device in {pytester.path / 'pytest.ini'}: device {device!r} is not available" in error
    error = _usage_error(pytester.runpytest("--masc", "-o", f"masc_device={device}", "-p", "no:cacheprovider"))
    assert f"-o masc_device: device {device!r} is not available" in error
    # without --masc the gates are off and the device is not looked at
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_cuda_index_beyond_the_device_count_is_a_usage_error(pytester, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    error = _usage_error(pytester.runpytest("--masc", "--masc-device=cuda:2", "-p", "no:cacheprovider"))
    assert "device 'cuda:2' does not exist: this machine has 2 CUDA device(s), cuda:0 to cuda:1" in error
    pytester.runpytest("--masc", "--masc-device=cuda:1", "-p", "no:cacheprovider").assert_outcomes(passed=1)


# --------------------------------------------------------------------------- --masc-x VALUE


def test_a_value_written_with_a_space_warns_at_start_with_what_pytest_chose(pytester, tiny_model_dir):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    result = pytester.runpytest("--masc-model", str(tiny_model_dir), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    warning = f"pytest-masc warning: --masc-model {tiny_model_dir} (written with a space): pytest took "
    lines = result.outlines
    (at,) = [n for n, line in enumerate(lines) if line.startswith(warning)]
    assert at < next(n for n, line in enumerate(lines) if line.startswith("collected"))  # before tests run
    # the checkpoint's folder took part in choosing the rootdir: the common ancestor of both folders,
    # above this pytest.ini, which is then not read
    assert f"rootdir became {tiny_model_dir.parents[1]} and pytest found no ini file" in lines[at]
    assert lines[at].endswith(f"Write --masc-model={tiny_model_dir}")
    assert "PytestConfigWarning" not in result.stdout.str()
    assert "pytest-masc warning" not in pytester.runpytest(f"--masc-model={tiny_model_dir}", "-p", "no:cacheprovider").stdout.str()


def test_a_value_written_with_a_space_that_is_no_path_still_warns(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    result = pytester.runpytest("-q", "--masc-json", "reports/run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "pytest-masc warning: --masc-json reports/run.json (written with a space): pytest took 'reports/run.json' "
        "for a test path while it chose the rootdir and the ini file; it does not exist, so it changed nothing this "
        f"time (rootdir {pytester.path}, pytest read ini file {pytester.path / 'pytest.ini'}), but it will once it "
        "exists. Write --masc-json=reports/run.json",
    ])


def test_a_usage_error_notes_a_value_written_with_a_space(pytester, tmp_path):
    (tmp_path / "ckpt").mkdir()
    error = _usage_error(pytester.runpytest("--masc-model", str(tmp_path / "ckpt"), "--masc-max-patches=0"))
    assert "--masc-max-patches must be positive, got 0" in error
    assert f"note: --masc-model {tmp_path / 'ckpt'} (written with a space): pytest took" in error
