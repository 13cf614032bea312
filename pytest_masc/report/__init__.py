"""Reports of MaSC runs, public and pytest-free: the ``--masc-json`` file, reading it into
pandas, merging shards, statistics, suite-level gates, baselines, the verdict and its text;
the plugin's terminal summary is built from it, and ``python -m pytest_masc.report merge``
gates the merged shards of a CI run. pandas loads on first use only.

One job per module, each importing only the ones before it: ``model`` (the :class:`Report`,
:class:`ReportError`, the tool's :class:`Flags`), ``settings`` (run settings and their
differences), ``codec`` (the one JSON codec of a record, for files and the xdist hand-off),
``atomic`` (atomic JSON writes), ``format`` (the ``--masc-json`` file, formats 1 and 2),
``shards`` (merging shards), ``frame`` (pandas), ``summary`` (concept table, human
agreement), ``suite_gates`` (``min_alpha_*``), ``cases`` (case tables of runs and
baselines), ``baseline`` (baseline files: write, read, update), ``release`` (:func:`compare`:
two releases case by case, the metric-drift canary), ``forest`` (the forest plot),
``baseline_check`` (a run against a baseline), ``verdict`` (:func:`evaluate`), ``text``
(summary lines), ``planning`` (``plan`` of one run) and ``cli``.
"""
from __future__ import annotations

from .atomic import atomic_write_json
from .baseline import (
    BASELINE_VERSION, READABLE_BASELINES, BaselineUpdate, baseline_payload, previous_baseline, read_baseline,
    update_baseline, write_baseline,
)
from .cli import main
from .codec import record_from_json, record_to_json, records_from_text, records_text
from .baseline_check import DEFAULT_MAX_DROP, BaselineComparison, check_baseline, compare_baseline, parse_concepts
from .format import load, report_payload, write_json
from .frame import SCORE_KEYS, read, records_frame
from .model import (
    ALPHA_GATES, EXIT_NAMES, FORMAT, MERGE_FLAGS, PYTEST_FLAGS, Flags, PathLike, Report, ReportError, node_file,
    suite_collected,
)
from .settings import CHECKPOINT, SETTINGS, run_settings, setting_differences
from .shards import merge
from .suite_gates import check_suite_gates, suite_gate_finding, suite_gate_results
from .summary import concept_table, human_agreement
from .text import closing_line, concept_thresholds, segmenter_lines, suite_gate_lines, summary_lines, table_lines
from .verdict import Evaluation, evaluate
from .release import Comparison, compare
from .forest import forest_image, write_forest_plot
from .planning import plan_lines, plan_run

__all__ = [
    "ALPHA_GATES", "BASELINE_VERSION", "CHECKPOINT", "DEFAULT_MAX_DROP", "EXIT_NAMES", "FORMAT", "MERGE_FLAGS",
    "PYTEST_FLAGS", "READABLE_BASELINES", "SCORE_KEYS", "SETTINGS",
    "BaselineComparison", "BaselineUpdate", "Comparison", "Evaluation", "Flags", "PathLike", "Report", "ReportError",
    "atomic_write_json", "baseline_payload", "check_baseline", "check_suite_gates", "closing_line", "compare",
    "compare_baseline", "forest_image", "plan_lines", "plan_run", "write_forest_plot",
    "concept_table", "concept_thresholds", "evaluate", "human_agreement", "load", "main", "merge", "node_file",
    "parse_concepts", "previous_baseline", "read", "read_baseline", "record_from_json", "record_to_json",
    "records_from_text", "records_text", "records_frame", "report_payload", "run_settings", "segmenter_lines",
    "setting_differences", "suite_collected", "suite_gate_finding", "suite_gate_lines", "suite_gate_results",
    "summary_lines", "table_lines", "update_baseline", "write_baseline", "write_json",
]
