#!/usr/bin/env python
"""Release decisions on simulated release pairs: false failures, power, speed.

Model (per metric, CP and PF alike): a case's score is
``mu + prompt[concept, prompt] + noise`` with ``prompt ~ N(0, prompt_sd)`` shared by both
releases (the same prompts are scored twice) and ``noise ~ N(0, seed_noise)`` drawn afresh
for every image (seed) of every release; a true drop lowers one concept's CP in the second
release by ``drop`` on every case.

Printed per seed-noise level:

* the false failure rate (releases with no true change where the session fails) of
  :func:`pytest_masc.stats.compare.compare_cases` and, on the same draws, of today's point rule
  (a concept fails when its mean CP or PF dropped more than ``max_drop``);
* the plan (:func:`pytest_masc.stats.planning.plan`) from one run with 4 seeds per case, and the
  power at its recommended size against a true drop of ``2 x max_drop`` in one concept's CP
  (how often that row is ``regressed``), how often any other row is, and how often the point rule
  fails those releases;
* timing lines: 10,000 cases x 4 seeds per release, 2,000 resamples (wall and CPU time), in
  100 concepts and in 3, and through ``pytest_masc.report.compare`` on two version-4 baselines
  (``--timing``: only these).

``--method-check`` instead compares the drop test's power as a paired t test and as a
bootstrap-t test at Holm's first level for 6 and 300 rows, and measures the coverage of the
95% bootstrap-t interval on normal, t3 and exponential case deltas (:func:`method_check`).

Examples::

    python benchmarks/release_simulation.py                 # 2,000 releases per level, minutes
    python benchmarks/release_simulation.py --releases 200  # quick look
    python benchmarks/release_simulation.py --method-check  # paired t against bootstrap-t, a minute
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_masc.stats.compare import _studentized, compare_cases, detection_power, t_sf  # noqa: E402
from pytest_masc.stats.planning import plan  # noqa: E402

LEVELS = (0.01, 0.02, 0.03, 0.05, 0.08)


def release_pair(rng: np.random.Generator, concepts: int, prompts: int, seeds: int, seed_noise: float, *,
                 prompt_sd: float = 0.05, drop: Optional[np.ndarray] = None, mu: float = 0.6):
    """``(before, after)`` case tables (dicts of arrays) of one simulated release pair;
    ``drop``: ``(concepts,)`` true CP drop per concept in ``after`` (None: no change)."""
    concept, prompt, seed = (a.ravel() for a in np.meshgrid(np.arange(concepts), np.arange(prompts),
                                                             np.arange(seeds), indexing="ij"))
    keys = {"suite": np.zeros(len(concept), np.int64), "concept": concept, "case_id": prompt, "seed": seed}
    effects = {m: rng.normal(0.0, prompt_sd, (concepts, prompts))[concept, prompt] for m in ("CP", "PF")}
    shift = np.zeros(len(concept)) if drop is None else np.asarray(drop)[concept]
    before = {**keys, **{m: mu + e + rng.normal(0.0, seed_noise, len(e)) for m, e in effects.items()}}
    after = {**keys, **{m: mu + e + rng.normal(0.0, seed_noise, len(e)) for m, e in effects.items()}}
    after["CP"] = after["CP"] - shift
    return before, after


def point_rule_fails(before: dict, after: dict, max_drop: float) -> bool:
    """Today's rule: some concept's mean CP or PF (over its cases' scores) dropped more than ``max_drop``."""
    concepts = int(before["concept"].max()) + 1
    for metric in ("CP", "PF"):
        old = np.bincount(before["concept"], before[metric], concepts) / np.bincount(before["concept"], None, concepts)
        new = np.bincount(after["concept"], after[metric], concepts) / np.bincount(after["concept"], None, concepts)
        if (old - new > max_drop).any():
            return True
    return False


def false_failures(rng, releases: int, seed_noise: float, *, concepts=3, prompts=20, seeds=1, max_drop=0.02,
                   n_resamples=2000) -> tuple[float, float]:
    """``(new rule, point rule)`` failure rates over ``releases`` pairs with no true change."""
    new = old = 0
    for _ in range(releases):
        before, after = release_pair(rng, concepts, prompts, seeds, seed_noise)
        new += compare_cases(before, after, max_drop=max_drop, n_resamples=n_resamples,
                             seed=int(rng.integers(2 ** 31))).failed
        old += point_rule_fails(before, after, max_drop)
    return new / releases, old / releases


def planned_size(rng, seed_noise: float, *, concepts=3, max_drop=0.02, max_prompts=None):
    """The plan from one run of ``concepts x 20 prompts x 4 seeds``."""
    run, _ = release_pair(rng, concepts, 20, 4, seed_noise)
    return plan(run, max_drop=max_drop, max_prompts=max_prompts)


def detection(rng, releases: int, seed_noise: float, prompts: int, seeds: int, *, concepts=3, max_drop=0.02,
              n_resamples=2000) -> tuple[float, float, float]:
    """``(power, other, point)``: how often concept 0's CP (true drop ``2 x max_drop``) is ``regressed``,
    how often some other row is, and how often today's point rule fails the release."""
    hit = other = point = 0
    drop = np.zeros(concepts)
    drop[0] = 2 * max_drop
    for _ in range(releases):
        before, after = release_pair(rng, concepts, prompts, seeds, seed_noise, drop=drop)
        result = compare_cases(before, after, max_drop=max_drop, n_resamples=n_resamples,
                               seed=int(rng.integers(2 ** 31)))
        regressed = {(row.concept, row.metric) for row in result.with_verdict("regressed")}
        hit += ("0", "CP") in regressed
        other += bool(regressed - {("0", "CP")})
        point += point_rule_fails(before, after, max_drop)
    return hit / releases, other / releases, point / releases


def timing(rng, cases: int = 10_000, seeds: int = 4, concepts: int = 100, n_resamples: int = 2000) -> str:
    before, after = release_pair(rng, concepts, -(-cases // concepts), seeds, 0.03)
    wall, cpu = time.perf_counter(), time.process_time()
    result = compare_cases(before, after, n_resamples=n_resamples)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cases = len(before["case_id"]) // seeds
    return (f"timing: {cases:,} cases x {seeds} seeds ({concepts} concepts x 2 metrics = {len(result.rows)} rows), "
            f"{n_resamples:,} resamples: {wall:.2f} s wall, {cpu:.2f} s CPU (load average {os.getloadavg()[0]:.1f})")


def timing_through_report(rng, cases: int = 10_000, seeds: int = 4, concepts: int = 100,
                          n_resamples: int = 2000) -> str:
    """The same comparison through :func:`pytest_masc.report.compare` on two version-4 baselines
    (one record per case and seed): reading the records, pairing, the statistics."""
    from pytest_masc.report import compare

    sides = []
    for table in release_pair(rng, concepts, -(-cases // concepts), seeds, 0.03):
        records = [{"suite": "s", "concept": f"c{c}", "case_id": f"p{k}", "seed": int(s), "CP": float(cp), "PF": float(pf)}
                   for c, k, s, cp, pf in zip(table["concept"], table["case_id"], table["seed"], table["CP"], table["PF"])]
        sides.append({"version": 4, "records": records, "concepts": {}})
    wall, cpu = time.perf_counter(), time.process_time()
    comparison = compare(*sides, n_resamples=n_resamples)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return (f"timing through report.compare: {len(sides[0]['records']) // seeds:,} cases x {seeds} seeds "
            f"({len(comparison.rows)} rows), {n_resamples:,} resamples: {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"(load average {os.getloadavg()[0]:.1f})")


def interval_coverage(rng, n: int, rows: int, draw) -> float:
    """Share of ``rows`` bootstrap-t intervals (95%) of ``n`` case deltas each, drawn by
    ``draw(rng, shape)`` with mean 0, that hold 0 (one :func:`compare_cases` call, one concept a row)."""
    deltas = draw(rng, (rows, n)).ravel()
    keys = {"suite": np.zeros(rows * n, np.int64), "concept": np.repeat(np.arange(rows), n),
            "case_id": np.tile(np.arange(n), rows)}
    result = compare_cases({**keys, "CP": np.full(rows * n, 0.5)}, {**keys, "CP": 0.5 + deltas}, metrics=("CP",))
    return float(np.mean([row.low <= 0.0 <= row.high for row in result.rows]))


DISTRIBUTIONS = {
    "normal": lambda rng, shape: rng.normal(0.0, 0.03, shape),
    "t3": lambda rng, shape: 0.03 * rng.standard_t(3, shape),
    "exponential": lambda rng, shape: 0.03 * (rng.exponential(1.0, shape) - 1.0),
}


def method_check(rng, rows: int = 1000, sizes=(10, 20, 30), levels=(0.05 / 6, 0.05 / 300)) -> list[str]:
    """Why the drop test is a paired t test: on normal case deltas whose true drop gives the t test
    80% power (:func:`detection_power`), how often each test rejects at ``level`` (Holm's first level
    for 6 and 300 rows): the t test, and a bootstrap-t test on the same cases with
    ``p = (1 + #{T* <= t}) / (1 + B)``, ``B = max(2000, 10 / level)``."""
    lines = []
    for level in levels:
        resamples = max(2000, math.ceil(10 / level))
        for n in sizes:
            low, high = 0.0, 20.0
            for _ in range(60):
                low, high = (low, (low + high) / 2) if detection_power(n, (low + high) / 2, 1.0, level) >= 0.8 \
                    else ((low + high) / 2, high)
            deltas = rng.normal(-high, 1.0, (rows, n))
            t_obs = deltas.mean(axis=1) / (deltas.std(axis=1, ddof=1) / math.sqrt(n))
            p_t = np.array([t_sf(-t, n - 1) if t < 0 else 1 - t_sf(t, n - 1) for t in t_obs])
            below = np.concatenate([
                (_studentized((part - part.mean(axis=1, keepdims=True)).ravel(), np.full(len(part), n), resamples,
                              int(rng.integers(2 ** 31))) <= t_obs[start:start + 50]).sum(axis=0)
                for start, part in ((s, deltas[s:s + 50]) for s in range(0, rows, 50))])
            p_boot = (1 + below) / (1 + resamples)
            lines.append(f"level {level:.2e}, {n:2} cases, B {resamples:,}: paired t {np.mean(p_t <= level):.3f}, "
                         f"bootstrap-t {np.mean(p_boot <= level):.3f} (of {rows} rows)")
    lines.append(f"95% bootstrap-t interval coverage (of {2 * rows} rows; Monte-Carlo sd "
                 f"{(0.05 * 0.95 / (2 * rows)) ** 0.5:.3f}):")
    for name, draw in DISTRIBUTIONS.items():
        lines.append(f"  {name:12}" + ", ".join(f"{n} cases {interval_coverage(rng, n, 2 * rows, draw):.3f}"
                                               for n in (5,) + tuple(sizes)))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2000, help="release pairs per level and question")
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS), help="seed-noise sd levels")
    parser.add_argument("--max-drop", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing", action="store_true", help="only the timing lines")
    parser.add_argument("--method-check", action="store_true",
                        help="only compare the paired t and bootstrap-t drop tests (why the rule uses the t test)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    if args.method_check:
        print("drop test power where the paired t test has 80% (normal case deltas):")
        print("\n".join(method_check(rng)))
        return 0
    if args.timing:
        print("\n".join([timing(rng), timing(rng, concepts=3), timing_through_report(rng)]))
        return 0
    mc = (0.05 * 0.95 / args.releases) ** 0.5
    print(f"{args.releases:,} release pairs per cell; 3 concepts x 2 metrics, prompt sd 0.05, max_drop {args.max_drop}; "
          f"Monte-Carlo sd of a 5% rate {mc:.3f}")
    print("false failures: releases with no true change that fail (3 concepts x 20 prompts x 1 seed);")
    print("plan: from one run of 3 x 20 prompts x 4 seeds; at its size, with a true CP drop of 2 x max_drop in one "
          "concept: power (that row regressed), other rows regressed, point rule fails")
    print(" seed sd | false failures: new  point | plan: seeds x prompts (predicted) | power  other  point")
    for level in args.levels:
        new, old = false_failures(rng, args.releases, level, max_drop=args.max_drop)
        proposal = planned_size(rng, level, max_drop=args.max_drop).recommended
        power, other, point = detection(rng, args.releases, level, proposal.prompts, proposal.seeds,
                                        max_drop=args.max_drop)
        print(f"{level:8.2f} | {new:20.3f} {old:6.3f} | {proposal.seeds:>11} x {proposal.prompts:<3} ({proposal.power:.2f})"
              f"       | {power:5.3f}  {other:5.3f}  {point:5.3f}")
    print(timing(rng))
    print(timing(rng, concepts=3))
    print(timing_through_report(rng))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
