"""Ray Data scoring against ``score_many`` in one process, on ``throughput.py``'s workloads.

Writes the workload's PNGs and a ``samples.parquet`` table (absolute paths), then times:

* ``score_many``: load the model in this process and score every sample (all cores);
* Ray: ``pytest_masc.ray.score_table`` on the same table: Ray start, actor pool start with one
  model per actor, scoring, and the order-restoring join;

and reports both, Ray's overhead, and the largest score difference (exit 1 above 1e-5 when
both run float32). Random weights with a real architecture, as in ``throughput.py``.

    # Any machine (2 cores: a few minutes): the CPU preset, 126 samples, local Ray with one actor per core.
    python benchmarks/ray_scoring.py --preset cpu --json ray-cpu.json

    # A GPU cluster: one actor per GPU, the SO400M architecture on the full 9,450-sample workload.
    # --workdir must be storage every node reads (the PNGs and the checkpoint are written there).
    python benchmarks/ray_scoring.py --preset gpu-so400m --address auto --num-gpus 1 \\
        --workdir /shared/masc-bench --no-baseline --json ray-gpu.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import throughput  # noqa: E402  (benchmarks/throughput.py: workloads and checkpoints)

from pytest_masc import ray as masc_ray  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(throughput.PRESETS), default="cpu")
    p.add_argument("--scale", type=float, help="keep about this fraction of the preset's samples")
    p.add_argument("--concepts", type=int)
    p.add_argument("--prompts", type=int)
    p.add_argument("--methods", type=int)
    p.add_argument("--workdir", help="keep the checkpoint, PNGs and table here (shared storage on a cluster)")
    p.add_argument("--model", help="a checkpoint directory instead of random weights")
    p.add_argument("--address", help="Ray cluster address; default: a local Ray instance")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    p.add_argument("--actors", type=int, help="actor pool size; default: as many as the cluster fits")
    p.add_argument("--rows-per-batch", type=int, default=64)
    p.add_argument("--device", help="device of the actors and of the in-process baseline")
    p.add_argument("--dtype", help="model dtype (default: bfloat16 on cuda, float32 on cpu)")
    p.add_argument("--batch-size", type=int, help="images per vision forward")
    p.add_argument("--no-baseline", action="store_true", help="skip score_many in this process (a driver without GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(f"[ray_scoring] {message}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    preset = throughput.PRESETS[args.preset]
    concepts, prompts, methods = throughput.workload_shape(preset, args)
    with tempfile.TemporaryDirectory(prefix="masc-ray-bench-") as scratch:
        workdir = Path(args.workdir or scratch).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"workload {concepts} x {prompts} x {methods} in {workdir}")
        workload = throughput.make_workload(workdir / "images", concepts, prompts, methods, args.seed)
        model_dir = Path(args.model) if args.model else throughput.build_checkpoint_in_subprocess(
            workdir / f"random-siglip2-{args.preset}-naflex", preset["model"], args.seed)
        table_path = workdir / "samples.parquet"
        masc_ray.write_table(table_frame(workload), table_path)
        results = {"preset": args.preset, "workload": workload.describe(), "model": str(model_dir)}
        options = dict(model=str(model_dir), device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                       local_files_only=True)
        if not args.no_baseline:
            results["score_many"], baseline = run_baseline(workload, options)
        results["ray"], scored = run_ray(args, table_path, options)
        if not args.no_baseline:
            results["max_abs_diff"] = max_diff(scored, baseline)
            results["overhead"] = {
                "total": results["ray"]["total_s"] / results["score_many"]["total_s"],
                "scoring": results["ray"]["score_table_s"] / results["score_many"]["score_s"],
            }
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    float32 = (args.dtype or "float32") in ("float32", "fp32", "float") and (args.device or "cpu") == "cpu"
    if "max_abs_diff" in results and float32 and results["max_abs_diff"] > 1e-5:
        log(f"scores differ by {results['max_abs_diff']:.2e} > 1e-5")
        return 1
    return 0


def table_frame(workload) -> Any:
    import pandas as pd

    return pd.DataFrame([
        {"ref_image": s.ref_image, "ref_mask": s.ref_mask, "out_image": s.out_image, "out_mask": s.out_mask,
         "prompt": s.prompt, "subject": s.subject}
        for s in workload.samples
    ])


def run_baseline(workload, options: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """Load and score in this process, on every core."""
    from pytest_masc import MaSC

    started = time.perf_counter()
    masc = MaSC.from_pretrained(options["model"], device=options["device"], dtype=options["dtype"],
                                batch_size=options["batch_size"], local_files_only=True)
    loaded = time.perf_counter()
    scores = masc.score_many(workload.samples)
    done = time.perf_counter()
    n = len(workload.samples)
    log(f"score_many: load {loaded - started:.1f} s, score {done - loaded:.1f} s ({n / (done - loaded):.2f} samples/s)")
    return {
        "load_s": loaded - started, "score_s": done - loaded, "total_s": done - started,
        "samples_per_s": n / (done - loaded), "device": str(masc.device), "encode_streams": masc.encode_streams,
    }, scores


def run_ray(args, table_path: Path, options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``score_table`` on a Ray it starts (local unless --address), shut down at the end."""
    info = masc_ray.RunInfo()
    started = time.perf_counter()
    scored = masc_ray.score_table(
        table_path, address=args.address, num_gpus=args.num_gpus, num_cpus=args.num_cpus, actors=args.actors,
        rows_per_batch=args.rows_per_batch, info=info, **options,
    )
    total = time.perf_counter() - started
    if info.failed:
        raise SystemExit(f"{info.failed} rows failed: {masc_ray.error_rows(scored)[:3]}")
    log(f"ray: start {info.init_seconds:.1f} s, score_table {info.score_seconds:.1f} s on {info.actors} actor(s), "
        f"{info.batches} batches, total {total:.1f} s ({info.rows / total:.2f} samples/s)")
    return {
        "init_s": info.init_seconds, "score_table_s": info.score_seconds, "total_s": total,
        "actors": info.actors, "batches": info.batches, "rows_per_batch": args.rows_per_batch,
        "samples_per_s": info.rows / total, "address": args.address or "local",
    }, scored


def max_diff(scored, baseline: list) -> float:
    worst = 0.0
    for row, score in enumerate(baseline):
        for name in masc_ray.SCORE_COLUMNS:
            a, b = float(scored[name][row]), float(getattr(score, name))
            if math.isnan(a) != math.isnan(b):
                return math.inf
            if not math.isnan(a):
                worst = max(worst, abs(a - b))
    return worst


def report(results: dict[str, Any]) -> None:
    w = results["workload"]
    print(f"workload: {w['samples']} samples, {w['distinct_references']} references, "
          f"{w['distinct_outputs']} outputs, {w['distinct_prompts']} prompts ({results['preset']} preset)")
    if "score_many" in results:
        b = results["score_many"]
        print(f"score_many, one process: load {b['load_s']:.1f} s + score {b['score_s']:.1f} s = {b['total_s']:.1f} s "
              f"({b['samples_per_s']:.2f} samples/s scoring, {b['encode_streams']} encode streams on {b['device']})")
    r = results["ray"]
    print(f"ray ({r['address']}, {r['actors']} actors, {r['batches']} batches of <= {r['rows_per_batch']} rows): "
          f"start {r['init_s']:.1f} s + score_table {r['score_table_s']:.1f} s = {r['total_s']:.1f} s "
          f"({r['samples_per_s']:.2f} samples/s end to end)")
    if "overhead" in results:
        o = results["overhead"]
        print(f"ray / score_many: {o['total']:.2f}x end to end, {o['scoring']:.2f}x score_table vs score_many "
              f"(score_table includes actor start and model loads); max |diff| {results['max_abs_diff']:.1e}")


if __name__ == "__main__":
    sys.exit(main())
