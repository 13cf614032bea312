"""The command line, ``python -m pytest_masc.report``: ``merge`` gates the merged ``--masc-json``
files of CI shards as one run, ``compare`` two releases, ``plan`` sizes a release comparison from one run.

Exit 0: every gate passes, 1: a gate failed (``compare``: a row regressed, or was inconclusive
with ``--require-noninferior``), 2: unreadable or refused input::

    python -m pytest_masc.report merge shard-*.json [--baseline FILE] [--baseline-skip SUITE::CONCEPT,...]
        [--max-drop X] [--require-noninferior] [--allow-baseline-mismatch] [--json FILE] [--write-baseline FILE]
        [--plot FILE]
    python -m pytest_masc.report compare BEFORE AFTER [--max-drop X] [--confidence C] [--require-noninferior]
        [--json FILE] [--plot FILE]
    python -m pytest_masc.report plan RUN.json [--max-drop X] [--power P]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .atomic import atomic_write_json
from .baseline import previous_baseline, read_baseline, update_baseline
from .baseline_check import DEFAULT_MAX_DROP, parse_concepts
from .format import load, write_json
from .model import MERGE_FLAGS, ReportError
from .planning import plan_lines, plan_run
from .release import compare, comparison_lines, row_finding
from .shards import merge
from .text import closing_line, summary_lines
from .verdict import evaluate

#: the package's summary, as ``--help`` shows it
DESCRIPTION = (
    "Reports: the ``--masc-json`` file, reading it into pandas, merging shards, the summary and\n"
    "baselines. Public and pytest-free; the plugin's terminal summary is built from it."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_masc.report", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    merge_parser = commands.add_parser("merge", help="merge the --masc-json files of CI shards and gate the whole run")
    merge_parser.add_argument("shards", nargs="+", type=Path, metavar="SHARD.json")
    merge_parser.add_argument("--baseline", type=Path, metavar="FILE", help="compare against this baseline")
    merge_parser.add_argument("--baseline-skip", metavar="SUITE::CONCEPT,...", default=None,
                              help="baseline concepts the shards may leave out (fnmatch patterns); any other "
                                   "baseline concept missing from the shards fails the check")
    merge_parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="X",
                              help=f"largest allowed drop of a concept's mean CP or PF (default {DEFAULT_MAX_DROP})")
    merge_parser.add_argument("--allow-baseline-mismatch", action="store_true",
                              help="compare against a baseline made with other settings, with a warning")
    merge_parser.add_argument("--json", type=Path, metavar="FILE", help="write the merged report here")
    merge_parser.add_argument("--require-noninferior", action="store_true",
                              help="fail when the baseline comparison is inconclusive too (default: a warning)")
    merge_parser.add_argument("--write-baseline", type=Path, metavar="FILE",
                              help="write the merged run's per-record scores to this baseline (a passing run only; "
                                   "concepts the shards did not score in full are kept as they were)")
    merge_parser.add_argument("--plot", type=Path, metavar="FILE", help="write the baseline comparison's forest plot (PNG)")
    compare_parser = commands.add_parser("compare", help="compare two releases case by case: regressed, non-inferior "
                                                         "or inconclusive per concept and metric")
    compare_parser.add_argument("before", type=Path, metavar="BEFORE", help="--masc-json run file or baseline file")
    compare_parser.add_argument("after", type=Path, metavar="AFTER", help="--masc-json run file or baseline file")
    compare_parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="X",
                                help=f"the drop of CP or PF a release may show (default {DEFAULT_MAX_DROP})")
    compare_parser.add_argument("--confidence", type=float, default=0.95, metavar="C",
                                help="family-wise confidence of the verdicts and of the intervals (default 0.95)")
    compare_parser.add_argument("--require-noninferior", action="store_true", help="inconclusive rows fail too")
    compare_parser.add_argument("--json", type=Path, metavar="FILE", help="write the comparison's rows here")
    compare_parser.add_argument("--plot", type=Path, metavar="FILE", help="write the forest plot here (PNG)")
    plan_parser = commands.add_parser("plan", help="prompts x seeds per concept a release comparison needs, "
                                                   "from one run's seed and prompt noise")
    plan_parser.add_argument("run", type=Path, metavar="RUN.json", help="a --masc-json run with several seeds per case")
    plan_parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="X",
                             help=f"the drop a release may show (default {DEFAULT_MAX_DROP}); the plan detects twice that")
    plan_parser.add_argument("--power", type=float, default=0.8, metavar="P",
                             help="chance to call a true drop of 2 x max-drop regressed (default 0.8)")
    return parser


def _compare(args: argparse.Namespace) -> int:
    """``compare BEFORE AFTER``: the table, the failing rows, exit 0, 1 or 2."""
    try:
        comparison = compare(args.before, args.after, max_drop=args.max_drop, confidence=args.confidence,
                             require_noninferior=args.require_noninferior)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"MaSC release comparison: {args.before} (before) -> {args.after} (after), max_drop {args.max_drop:g}, "
          f"paired by case, seeds averaged")
    for line in comparison_lines(comparison, "--require-noninferior"):
        print(line)
    for side, keys in ((args.before, comparison.only_before), (args.after, comparison.only_after)):
        if keys:
            print(f"  WARNING only in {side}, not compared: {', '.join(keys)}")
    failed = [row for row in comparison.rows if row.failed]
    for row in failed:
        print(f"  {'REGRESSION' if row.verdict == 'regressed' else 'INCONCLUSIVE'} {row_finding(row, comparison.result)}")
    if args.json:
        atomic_write_json(args.json, comparison.as_dict())
        print(f"comparison written to {args.json}")
    if args.plot:
        from .forest import write_forest_plot

        write_forest_plot(args.plot, comparison.result, f"{args.before} -> {args.after}")
        print(f"forest plot written to {args.plot}")
    verdicts = [row.verdict for row in comparison.rows]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("regressed", "inconclusive", "non-inferior") if v in verdicts)
    print(f"MaSC comparison {'FAILED' if failed else 'PASSED'}: {len(comparison.rows)} rows: {counts}")
    return 1 if failed else 0


def _plan(args: argparse.Namespace) -> int:
    try:
        planned = plan_run(args.run, max_drop=args.max_drop, power=args.power)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in plan_lines(planned, args.run):
        print(line)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pytest_masc.report merge|compare|plan ...`` (module doc); the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_drop < 0:
        parser.error(f"--max-drop must be >= 0, got {args.max_drop}")
    if args.command == "compare":
        if not 0 < args.confidence < 1:
            parser.error(f"--confidence must be in (0, 1), got {args.confidence}")
        return _compare(args)
    if args.command == "plan":
        if not 0 < args.power < 1:
            parser.error(f"--power must be in (0, 1), got {args.power}")
        return _plan(args)
    try:
        skip = parse_concepts(args.baseline_skip, "--baseline-skip")
    except ValueError as error:
        parser.error(str(error))
    baseline = args.baseline.expanduser().absolute() if args.baseline else None
    target = args.write_baseline.expanduser().absolute() if args.write_baseline else None
    try:
        report = merge([load(path) for path in args.shards])
        if baseline is not None:
            read_baseline(baseline, MERGE_FLAGS)
        if target is not None:
            previous_baseline(target, report.settings, MERGE_FLAGS)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    evaluation = evaluate(
        report, baseline=baseline, max_drop=args.max_drop, allow_mismatch=args.allow_baseline_mismatch,
        flags=MERGE_FLAGS, baseline_skip=skip, require_noninferior=args.require_noninferior,
    )
    comparison = evaluation.baseline
    if args.plot and comparison is not None and comparison.release is not None:
        from .forest import write_forest_plot

        comparison.plot = str(write_forest_plot(args.plot, comparison.release.result, f"merged shards vs {baseline}"))
    if target is not None:
        evaluation.baseline_update = update_baseline(target, report, evaluation, MERGE_FLAGS)
    print(f"MaSC summary, merged from {len(report.shards)} shard(s): {', '.join(str(p) for p in args.shards)}")
    for line in summary_lines(report, evaluation):
        print(line)
    if args.json:
        write_json(args.json, report, evaluation)
        print(f"merged report written to {args.json}")
    print(closing_line(report, evaluation))
    return 1 if evaluation.failed else 0
