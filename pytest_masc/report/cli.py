"""The command line, ``python -m pytest_masc.report merge``: gate the merged ``--masc-json`` files of CI shards as one run.

Exit 0: every gate passes, 1: a gate failed, 2: unreadable or refused input::

    python -m pytest_masc.report merge shard-*.json [--baseline FILE] [--baseline-skip SUITE::CONCEPT,...]
        [--max-drop X] [--allow-baseline-mismatch] [--json FILE] [--write-baseline FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .baseline import previous_baseline, read_baseline, update_baseline
from .compare import DEFAULT_MAX_DROP, parse_concepts
from .format import load, write_json
from .model import MERGE_FLAGS, ReportError
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
    merge_parser.add_argument("--write-baseline", type=Path, metavar="FILE",
                              help="write the merged run's per-concept means to this baseline (a passing run only; "
                                   "concepts the shards did not score in full are kept as they were)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pytest_masc.report merge SHARD.json ...``: the summary a single run would print."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_drop < 0:
        parser.error(f"--max-drop must be >= 0, got {args.max_drop}")
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
        flags=MERGE_FLAGS, baseline_skip=skip,
    )
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
