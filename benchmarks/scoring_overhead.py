#!/usr/bin/env python
"""A CPU proxy for the serial work per sample that ``score_many`` does on its main thread.

On a GPU, ``score_many`` was found limited by serial Python work, not by the device
(``RESULTS.md``): the main thread schedules the batches and scores each group of ready
samples between vision forwards. This script measures that work without a GPU: a tiny
random SigLIP2 (width 32, so the vision tower on its own thread is nearly free and the
tensor math on the main thread is small), a DreamBench++-shaped workload (references with
many outputs each, two distractors per prompt), and ``time.thread_time()`` of the main
thread around ``score_many``, divided by the samples. Texts and references are cached by a
warm-up call first, so what is left on the main thread is scheduling and scoring.

It also counts the torch operators the main thread dispatches per sample (each is at
least one kernel launch on a GPU), with a thread-local ``TorchDispatchMode``.

Each code version runs in its own process: the working tree of this repository, and every
``--baseline REV`` (a git revision, exported with ``git archive``). Processes alternate
over ``--rounds`` rounds, so both see the same machine load; the ratio is the median over
rounds of the paired ratios (this tree / the baseline).

    python benchmarks/scoring_overhead.py --baseline 859252b --rounds 5 --json overhead.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

REPOSITORY = Path(__file__).resolve().parent.parent


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", action="append", default=[], metavar="REV",
                   help="a git revision to compare with (repeatable)")
    p.add_argument("--references", type=int, default=4, help="distinct reference images")
    p.add_argument("--outputs", type=int, default=63, help="outputs per reference (DreamBench++: 63)")
    p.add_argument("--batch-size", type=int, default=32, help="images per vision forward (the CUDA default: 32)")
    p.add_argument("--max-patches", type=int, default=256, help="NaFlex patch budget")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, one process per version each")
    p.add_argument("--repeats", type=int, default=3, help="timed score_many calls per process (the fastest counts)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: the tree to import
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # internal: checkpoint and images
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the worker


def workload(references: int, outputs: int) -> list:
    """Samples over ``references`` references with ``outputs`` outputs each: arrays of
    mixed sizes, random masks, a subject, two distractors per prompt."""
    import numpy as np

    from pytest_masc import Sample

    rng = np.random.default_rng(0)
    sizes = [(64, 64), (48, 80), (80, 48), (64, 96)]
    samples = []
    for r in range(references):
        ref = rng.integers(0, 256, (*sizes[r % 4], 3), dtype=np.uint8)
        ref_mask = rng.random(ref.shape[:2]) < 0.4
        for o in range(outputs):
            out = rng.integers(0, 256, (*sizes[(r + o) % 4], 3), dtype=np.uint8)
            samples.append(Sample(ref, ref_mask, out, rng.random(out.shape[:2]) < 0.5,
                                  f"a photo of a sks dog, scene {o % 9}", "sks dog",
                                  distractors=(f"a sks dog, scene {(o + 1) % 9}", "a cat")))
    return samples


def worker(args: argparse.Namespace) -> None:
    """In a fresh process importing ``pytest_masc`` from ``args.worker``: print one JSON line."""
    sys.path.insert(0, str(args.worker))
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from pytest_masc import MaSC

    torch.set_num_threads(1)
    masc = MaSC.from_pretrained(args.data / "model", device="cpu", local_files_only=True, batch_size=args.batch_size,
                                max_num_patches=args.max_patches, num_workers=2, encode_streams=1)
    samples = workload(args.references, args.outputs)
    masc.score_many(samples)  # warm-up: texts and references are cached from here on
    seconds = []
    for _ in range(args.repeats):
        started = time.thread_time()
        masc.score_many(samples)
        seconds.append(time.thread_time() - started)

    class CountOps(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountOps.count += 1
            return func(*args, **(kwargs or {}))

    with CountOps():
        masc.score_many(samples)
    print(json.dumps({"main_thread_ms_per_sample": 1000 * min(seconds) / len(samples),
                      "ops_per_sample": CountOps.count / len(samples), "samples": len(samples)}))


# --------------------------------------------------------------------------- the parent


def export(revision: str, into: Path) -> Path:
    """The package at ``revision``, exported under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", revision, "pytest_masc"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_worker(tree: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", str(tree), "--data", str(data),
               "--references", str(args.references), "--outputs", str(args.outputs),
               "--batch-size", str(args.batch_size), "--max-patches", str(args.max_patches),
               "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if not args.baseline:
        raise SystemExit("give at least one --baseline REV to compare with")
    sys.path.insert(0, str(REPOSITORY))
    from pytest_masc.testing import tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="masc-overhead-") as scratch:
        data = Path(scratch)
        tiny_checkpoint(data / "model", seed=0)
        trees = {"this tree": REPOSITORY, **{rev: export(rev, data / f"rev-{i}") for i, rev in enumerate(args.baseline)}}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                runs[name].append(run_worker(tree, data, args))
                print(f"round {round_ + 1}/{args.rounds} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    results = summarise(runs, args)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def summarise(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    ours = runs["this tree"]
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "workload": {"samples": ours[0]["samples"], "references": args.references, "outputs_per_reference": args.outputs,
                     "batch_size": args.batch_size, "max_patches": args.max_patches, "rounds": args.rounds},
        "versions": {},
    }
    for name, measured in runs.items():
        times = [m["main_thread_ms_per_sample"] for m in measured]
        entry = {"main_thread_ms_per_sample_median": statistics.median(times), "main_thread_ms_per_sample": times,
                 "ops_per_sample": measured[-1]["ops_per_sample"]}
        if name != "this tree":
            paired = [a["main_thread_ms_per_sample"] / b["main_thread_ms_per_sample"] for a, b in zip(ours, measured)]
            entry["this_tree_over_baseline_median_paired"] = statistics.median(paired)
            entry["ops_ratio"] = ours[-1]["ops_per_sample"] / measured[-1]["ops_per_sample"]
        results["versions"][name] = entry
    return results


def report(results: dict[str, Any]) -> None:
    w = results["workload"]
    print(f"{w['samples']} samples ({w['references']} references x {w['outputs_per_reference']} outputs), batch "
          f"{w['batch_size']}, {w['max_patches']} patches, tiny random SigLIP2 on the CPU, {w['rounds']} round(s)")
    for name, entry in results["versions"].items():
        line = (f"{name:>12}: main thread {entry['main_thread_ms_per_sample_median']:.3f} ms CPU per sample (median), "
                f"{entry['ops_per_sample']:.1f} torch ops per sample")
        if "this_tree_over_baseline_median_paired" in entry:
            line += (f"; this tree / {name}: {entry['this_tree_over_baseline_median_paired']:.2f}x CPU time, "
                     f"{entry['ops_ratio']:.2f}x ops")
        print(line)


if __name__ == "__main__":
    sys.exit(main())
