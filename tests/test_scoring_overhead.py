"""``benchmarks/scoring_overhead.py`` (the CPU proxy for the main thread's serial work per
sample) end to end on a minute workload: it runs this tree and a git revision in their own
processes and writes what RESULTS.md quotes. (Speed is not asserted: timings belong to the
script's own runs, not to a unit test.)"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPT = REPOSITORY / "benchmarks" / "scoring_overhead.py"


def test_overhead_script_compares_this_tree_with_a_revision(tmp_path):
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs the git history of the repository")
    out = tmp_path / "overhead.json"
    command = [sys.executable, str(SCRIPT), "--baseline", "HEAD", "--references", "1", "--outputs", "6",
               "--batch-size", "4", "--max-patches", "64", "--rounds", "1", "--repeats", "1", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["workload"]["samples"] == 6
    assert set(results["versions"]) == {"this tree", "HEAD"}
    for entry in results["versions"].values():
        assert entry["main_thread_ms_per_sample_median"] > 0 and entry["ops_per_sample"] > 0
    head = results["versions"]["HEAD"]
    assert head["this_tree_over_baseline_median_paired"] > 0 and head["ops_ratio"] > 0
    assert "torch ops per sample" in done.stdout and "this tree / HEAD" in done.stdout


def test_overhead_script_needs_a_baseline():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "give at least one --baseline REV" in done.stderr
