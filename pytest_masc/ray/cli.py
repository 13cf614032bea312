"""The command: score a Parquet or CSV table of samples on Ray, write the scored table.

``python -m pytest_masc.ray samples.parquet --out scores.parquet [--address=auto] [--num-gpus=1]``

Model options have the plugin's names without ``masc-`` (``--model``, ``--revision``,
``--device``, ``--dtype``, ``--max-patches``, ``--batch-size``). Exit status: 0 when every row
scored, 1 when some rows hold an ``error`` (the table is written all the same), 2 for a
usage, table, model or cluster error (nothing written; no cluster at ``--address`` is one line).

``python -m pytest_masc.ray export SUITE_OR_DIR... --out samples.parquet [--base-dir=DIR]``
writes suites' cases as such a table (:func:`pytest_masc.ray.export.suite_samples`); exit
status 0, or 2 for a suite or usage error.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Optional, Sequence

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DTYPE_ALIASES
from ..errors import MaSCError
from ..metric.options import ModelOptions
from .score import RunInfo, error_rows, score_table
from .tables import write_table

SHOWN_ERRORS = 10


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_masc.ray",
        description="Score a table of MaSC samples (ref_image, ref_mask, out_image, out_mask, prompt, subject, "
                    "optional distractors) on a Ray actor pool. Output: the input columns (a column named like an "
                    "output one kept as input_<name>: prompt -> input_prompt) plus concept, prompt, global_concept, "
                    "global_prompt, prompt_margin and error, in input order.",
        epilog="To make such a table from suite files: python -m pytest_masc.ray export SUITE_OR_DIR... "
               "--out samples.parquet (see: python -m pytest_masc.ray export --help).",
    )
    p.add_argument("table", help="samples table: .parquet/.pq or .csv, a path or a URI")
    p.add_argument("--out", required=True, help="scored table to write: .parquet/.pq or .csv")
    p.add_argument("--address", help="Ray cluster address (auto, ray://host:10001, ...); default: a local Ray instance")
    p.add_argument("--num-gpus", type=non_negative, default=0.0, help="GPUs per actor (1 on GPU clusters); default 0")
    p.add_argument("--num-cpus", type=non_negative, default=1.0, help="CPUs per actor; default 1")
    p.add_argument("--actors", type=positive(int), help="actor pool size; default: as many as the cluster fits")
    p.add_argument("--rows-per-batch", type=positive(int), default=64, help="rows per score_many call; default 64")
    p.add_argument("--base-dir", help="directory relative paths are relative to; default: the table's directory")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"SigLIP2 NaFlex checkpoint: hub id or directory; default {DEFAULT_MODEL}")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) of the model")
    p.add_argument("--device", help="torch device in each actor; default: cuda when the actor has a GPU, else cpu")
    p.add_argument("--dtype", choices=sorted(DTYPE_ALIASES), help="model dtype; default bfloat16 on cuda, float32 on cpu")
    p.add_argument("--max-patches", type=positive(int), default=DEFAULT_MAX_PATCHES, help="NaFlex patch budget per image")
    p.add_argument("--batch-size", type=positive(int), help="images per vision forward; default 32 on cuda, 1 on cpu")
    p.add_argument("--local-files-only", action="store_true", help="never download the model (also HF_HUB_OFFLINE=1)")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_masc.ray export",
        description="Write the cases of suite files as a samples table to score with python -m pytest_masc.ray: "
                    "one row per case and reference, with the suite's defaults resolved (distractors: the concept's "
                    "other prompts; subjects; masks) and the columns suite, suite_file, case_id, concept_name, "
                    "reference_index before the samples columns. The mean of a case's rows' concept is the case's CP.",
    )
    p.add_argument("suites", nargs="+", help="suite files (masc_*.toml) or directories to search for them")
    p.add_argument("--out", required=True, help="samples table to write: .parquet/.pq or .csv")
    p.add_argument("--base-dir", help="write paths relative to this directory (score the table with the same "
                                      "--base-dir, or put the table there); default: absolute paths")
    return p


def export_main(argv: Sequence[str]) -> int:
    import warnings

    from .export import suite_samples

    args = export_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = suite_samples(args.suites, base_dir=args.base_dir)
        write_table(table, args.out)
    except (MaSCError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)
    print(f"exported {table['case_id'].groupby(table['suite_file']).nunique().sum()} case(s) of "
          f"{table['suite_file'].nunique()} suite file(s) as {len(table)} row(s) to {args.out}", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    args = parser().parse_args(argv)
    if args.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        parser().error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    info = RunInfo()
    try:
        scored = score_table(
            args.table, options=ModelOptions(
                model=args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                max_num_patches=args.max_patches, batch_size=args.batch_size, local_files_only=args.local_files_only),
            address=args.address, num_gpus=args.num_gpus, num_cpus=args.num_cpus, actors=args.actors,
            rows_per_batch=args.rows_per_batch, base_dir=args.base_dir, info=info,
        )
        write_table(scored, args.out)
    except (MaSCError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = info.init_seconds + info.score_seconds
    print(f"scored {info.rows - info.failed} of {info.rows} rows on {info.actors} actor(s) in {seconds:.1f} s "
          f"(Ray start {info.init_seconds:.1f} s); wrote {args.out}", file=sys.stderr)
    failures = error_rows(scored)
    for row, error in failures[:SHOWN_ERRORS]:
        print(f"row {row}: {error}", file=sys.stderr)
    if len(failures) > SHOWN_ERRORS:
        print(f"... and {len(failures) - SHOWN_ERRORS} more rows with an error (see the error column)", file=sys.stderr)
    return 1 if failures else 0
