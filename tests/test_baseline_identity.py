"""A model is what it is, not how it was named (issue #16): a local checkpoint is identified by
its resolved directory and a fingerprint of its files, a hub checkpoint by id and revision;
baselines and shards are refused only when the checkpoint, dtype or patch budget differs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_masc import report
from masc_suites import SUITE, make_images, run
from test_report_merge import merge_cli


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dir: Path) -> Path:
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_dogs.toml").write_text(SUITE)
    shutil.copytree(tiny_model_dir, pytester.path / "ckpt" / "x")
    return pytester.path


def _fingerprint(text: str, path: Path) -> str:
    return re.search(rf"local checkpoint {re.escape(str(path))} \(fingerprint (sha256:[0-9a-f]+)\)", text).group(1)


def test_a_baseline_follows_the_checkpoint_not_the_name_it_was_given(pytester, project):
    baseline = project / "baseline.json"
    written = run(pytester, "ckpt/x", "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert written.ret == 0, written.stdout.str()
    identity = json.loads(baseline.read_text())["checkpoint"]
    assert identity["kind"] == "local" and identity["path"] == str((project / "ckpt" / "x").resolve())

    for name in (project / "ckpt" / "x", "./ckpt/../ckpt/x"):  # the same directory, named otherwise
        same = run(pytester, name, "--masc-baseline=baseline.json")
        assert same.ret == 0, same.stdout.str()
        same.stdout.fnmatch_lines([f"baseline {baseline}: no concept regressed by more than 0.02 (1 concept compared, "
                                   "case by case: paired by case, seeds averaged)"])
    shutil.copytree(project / "ckpt" / "x", project / "elsewhere" / "copy")  # the same files elsewhere
    assert run(pytester, project / "elsewhere" / "copy", "--masc-baseline=baseline.json").ret == 0

    # Other weights in the same directory (a retrained or re-saved checkpoint): refused, both named.
    from pytest_masc.testing import tiny_checkpoint

    shutil.rmtree(project / "ckpt" / "x")
    tiny_checkpoint(project / "ckpt" / "x", seed=1)
    other = run(pytester, "ckpt/x", "--masc-baseline=baseline.json")
    assert other.ret == 1
    text = other.stdout.str().replace("\n", "")
    where = (project / "ckpt" / "x").resolve()
    named = project / "ckpt" / "x"  # --masc-model=ckpt/x, resolved against the invocation directory
    before, now = identity["fingerprint"], _fingerprint(text.split("this run uses")[1], where)
    assert before != now
    other.stdout.fnmatch_lines([
        f"  ERROR cannot compare: {baseline} was made with model {named} (local checkpoint {where} (fingerprint {before})); "
        f"this run uses model {named} (local checkpoint {where} (fingerprint {now})) "
        "(pass --masc-allow-baseline-mismatch to compare anyway)",
    ])
    # Nor is it updated from the other weights: its concepts this run does not score could not be kept.
    kept = baseline.read_text()
    update = run(pytester, "ckpt/x", "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert update.ret == 1 and baseline.read_text() == kept
    update.stdout.fnmatch_lines([
        f"baseline NOT written to {baseline}:",
        f"  ERROR baseline not written: cannot update: {baseline} was made with model {named} (local checkpoint {where} "
        f"(fingerprint {before})); this run uses model {named} (local checkpoint {where} (fingerprint {now})), so its "
        "other concepts cannot be kept beside this run's; delete it to start a new baseline from a full run",
    ])
    assert " 3 passed, 1 MaSC baseline error in " in update.outlines[-1]


def test_a_version_2_baseline_naming_the_model_by_a_relative_path_still_compares(pytester, project):
    """Old baselines record the --masc-model string: the same directory, named otherwise, matches."""
    written = run(pytester, "ckpt/x", "--masc-baseline=baseline.json", "--masc-update-baseline")
    assert written.ret == 0
    data = json.loads((project / "baseline.json").read_text())
    old = {"version": 2, **{key: data[key] for key in report.SETTINGS}, "cases": {}, "concepts": data["concepts"]}
    old["model"] = "ckpt/x"  # as version 2 recorded --masc-model: the string given
    (project / "old.json").write_text(json.dumps(old))
    result = run(pytester, project / "ckpt" / "x", "--masc-baseline=old.json")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([
        f"baseline {project / 'old.json'}: no concept dropped more than 0.02 (1 concept compared)",
        "  note: the baseline (version 2) names its model without a checkpoint fingerprint: matched by name and directory",
    ])
    old["model"] = "ckpt/y"
    (project / "old.json").write_text(json.dumps(old))
    refused = run(pytester, project / "ckpt" / "x", "--masc-baseline=old.json")
    assert refused.ret == 1
    refused.stdout.fnmatch_lines([
        f"  ERROR cannot compare: {project / 'old.json'} was made with model ckpt/y, revision default; this run uses "
        f"model {project / 'ckpt' / 'x'} (local checkpoint {(project / 'ckpt' / 'x').resolve()} (fingerprint *)) "
        "(pass --masc-allow-baseline-mismatch to compare anyway)",
    ])


def test_shards_that_name_one_checkpoint_differently_merge(pytester, project, tiny_model_dir, capsys):
    run(pytester, "ckpt/x", "-k", "dog-beach", "--masc-json=relative.json").assert_outcomes(passed=1)
    run(pytester, project / "ckpt" / "x", "-k", "not dog-beach", "--masc-json=absolute.json").assert_outcomes(passed=2)
    code, out, err = merge_cli(capsys, project / "relative.json", project / "absolute.json")
    assert (code, err) == (0, ""), err
    assert out[-1] == "MaSC PASSED: 3 cases from 2 shard(s): 3 passed"

    from pytest_masc.testing import tiny_checkpoint

    tiny_checkpoint(project / "other", seed=1)
    run(pytester, project / "other", "-k", "not dog-beach", "--masc-json=other.json").assert_outcomes(passed=2)
    code, out, err = merge_cli(capsys, project / "relative.json", project / "other.json")
    assert code == 2 and out == []
    assert err.startswith(
        f"error: shards from different runs refused: they differ in model ({project / 'relative.json'}: model {project / 'ckpt' / 'x'} "
        f"(local checkpoint {(project / 'ckpt' / 'x').resolve()} (fingerprint sha256:"
    )
    assert f"{project / 'other.json'}: model {project / 'other'} (local checkpoint {(project / 'other').resolve()} (fingerprint sha256:" in err


def test_hub_checkpoints_compare_by_id_and_revision():
    from pytest_masc.metric.identity import checkpoint_identity, same_checkpoint

    commit = "0123456789abcdef0123456789abcdef01234567"
    first = checkpoint_identity("google/siglip2-so400m-patch16-naflex", commit)
    assert first == {"kind": "hub", "id": "google/siglip2-so400m-patch16-naflex", "revision": commit}
    assert same_checkpoint(first, dict(first))
    settings = {"model": first["id"], "revision": commit, "dtype": "bfloat16", "max_num_patches": 1024, "checkpoint": first}
    later = {**settings, "revision": "f" * 40, "checkpoint": {**first, "revision": "f" * 40}}
    assert report.setting_differences(settings, dict(settings)) == []
    assert report.setting_differences(settings, later) == [(
        "model", f"model {first['id']} (hub checkpoint {first['id']} at revision {commit})",
        f"model {first['id']} (hub checkpoint {first['id']} at revision {'f' * 40})",
    )]
    # A version-2 baseline of the same hub checkpoint (name and commit, no identity) still matches.
    old = {"model": first["id"], "revision": commit, "dtype": "bfloat16", "max_num_patches": 1024}
    assert report.setting_differences(old, settings) == []
    assert [label for label, _, _ in report.setting_differences(old, later)] == ["model"]
