"""``benchmarks/throughput.py`` end to end on a minute workload: it runs, the scores agree
with the reference, and the JSON holds what RESULTS.md quotes. (Speed is not asserted:
timings belong to the script's own runs, not to a unit test.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oracle import require_oracle

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One checkpoint and one set of PNGs for both runs (the script reuses a --workdir)."""
    return tmp_path_factory.mktemp("throughput")


@pytest.mark.parametrize("forward_flag, forward", [([], "one-image forward"),
                                                   (["--transformers-forward"], "Transformers vision_model")])
def test_throughput_script_runs_and_agrees(tmp_path, workdir, forward_flag, forward):
    require_oracle("masc")
    out = tmp_path / "result.json"
    command = [
        sys.executable, str(SCRIPT), "--preset", "cpu", "--concepts", "1", "--prompts", "2", "--methods", "2",
        "--max-patches", "64", "--warmup", "1", "--workdir", str(workdir), "--json", str(out),
        *forward_flag,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["workload"]["samples"] == 4
    assert results["ours"]["images_encoded"] == 5  # 1 reference + 4 outputs, each once
    assert results["ours"]["images_encoded_per_sample"] == pytest.approx(1.25)
    assert results["ours_config"]["one_image_forward"] is (not forward_flag)
    assert results["encoder_only"]["forward"] == forward
    agreement = results["reference_fp32"]["agreement"]
    assert agreement["ok"] and agreement["samples"] == 4 and agreement["atol"] == 1e-4
    assert agreement["cp_max_abs_diff"] < 1e-5 and agreement["pf_max_abs_diff"] < 1e-5
    for name in ("ours_speedup_best", "ours_speedup_median_paired", "ours_speedup_cpu_time"):
        assert results["reference_fp32"][name] > 0
    assert "ours is" in done.stdout and "of the encoder-only rate" in done.stdout
