"""``benchmarks/throughput.py`` end to end on a minute workload: it runs, the scores agree
with the reference, each image is encoded once, and the speed-ups it prints and writes follow
from the per-round timings it records. (How fast is not asserted: timings belong to the
script's own runs, not to a unit test.)"""
from __future__ import annotations

import json
import re
import statistics
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
    assert "of the encoder-only rate" in done.stdout
    _speedups_follow_from_the_timings(results, done.stdout)


def _speedups_follow_from_the_timings(results: dict, stdout: str) -> None:
    """The speed-ups in the JSON and the printed line, worked out again from the raw per-round
    wall and CPU seconds the JSON also holds (a rate or ratio taken from the wrong round, the
    wrong phase or the wrong way up fails here)."""
    ours, reference = results["ours"], results["reference_fp32"]
    rounds = results["rounds"]
    assert len(ours["rounds_wall_s"]) == len(reference["rounds_wall_s"]) == rounds
    assert ours["units"] == 4 and reference["units"] == 4  # every sample, ours and the reference
    assert ours["samples_per_s_best"] == pytest.approx(4 / min(ours["rounds_wall_s"]), rel=1e-12)
    assert ours["images_per_s_best"] == pytest.approx(5 / min(ours["rounds_wall_s"]), rel=1e-12)
    best = min(reference["rounds_wall_s"]) / min(ours["rounds_wall_s"])
    paired = statistics.median(r / o for r, o in zip(reference["rounds_wall_s"], ours["rounds_wall_s"]))
    cpu = statistics.median(reference["rounds_cpu_s"]) / statistics.median(ours["rounds_cpu_s"])
    assert reference["ours_speedup_best"] == pytest.approx(best, rel=1e-12)
    assert reference["ours_speedup_median_paired"] == pytest.approx(paired, rel=1e-12)
    assert reference["ours_speedup_cpu_time"] == pytest.approx(cpu, rel=1e-12)
    printed = re.search(r"ours is ([0-9.]+)x faster \(best rounds; median of paired rounds ([0-9.]+)x; "
                        r"CPU time ([0-9.]+)x\)", stdout)
    assert printed, stdout
    assert [float(value) for value in printed.groups()] == [round(best, 2), round(paired, 2), round(cpu, 2)]
