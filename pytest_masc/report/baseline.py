"""Baseline files (versions 1 to 4): writing a run's per-record and per-concept scores, its environment and canary scores, reading them, and updating a baseline from a run.

Version 4::

    {"version": 4, "model", "revision", "dtype", "max_num_patches", "checkpoint",
     "environment": {"pytest_masc", "torch", "transformers", "device", "dtype", "attention"},
     "canary": {"items": [...], "scores": {"CP": [...], "PF": [...]}} or null,
     "records": [{"key", "suite", "concept", "case_id", "seed", "CP", "PF"}, ...],   # every scored record
     "concepts": {"suite::concept": {"concept", "prompt", "cases"}}}                 # means, for people

Version 3 held one ``cases`` entry per check key (mean scores and ``concept_key``), versions 1
and 2 the per-concept means only; all are still read (:mod:`pytest_masc.report.cases`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .atomic import atomic_write_json, read_json
from .cases import as_records, baseline_rows, record_entries
from .frame import as_frame, case_rows, records_frame, scored_rows
from .model import EXIT_NAMES, PYTEST_FLAGS, Flags, PathLike, Report, ReportError
from .settings import CHECKPOINT, SETTINGS, mismatch_text, run_settings, setting_differences
from .summary import concept_table

if TYPE_CHECKING:
    from .verdict import Evaluation

BASELINE_VERSION = 4
READABLE_BASELINES = (1, 2, 3, BASELINE_VERSION)


def baseline_payload(data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None, *,
                     environment: Optional[dict[str, Any]] = None, canary: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Every scored record's CP and PF (with its seed) and the per-concept means of a run (records
    or a frame) to compare later runs against, with its settings, checkpoint identity, environment
    and canary scores (version 4, module doc)."""
    frame = as_frame(data)
    scored = frame[frame["error"].isna()]
    settings = settings if settings is not None else run_settings(runs)
    records = data if not hasattr(data, "columns") else as_records(scored)
    return {
        "version": BASELINE_VERSION,
        **{key: settings.get(key) for key in (*SETTINGS, CHECKPOINT)},
        "environment": dict(environment or {}),
        "canary": canary,
        "records": record_entries(records),
        "concepts": {
            f"{row['suite']}::{row['concept']}": {
                "concept": row["mean_concept"], "prompt": row["mean_prompt"], "cases": row["cases"],
            }
            for row in concept_table(scored_rows(case_rows(frame)))  # each case once, its seeds averaged
        },
    }


def write_baseline(path: Path, data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> None:
    """Write :func:`baseline_payload` to ``path`` (a new baseline; mode from the umask). To
    update one from a run, keeping what the run did not score, use :func:`update_baseline`."""
    atomic_write_json(Path(path), baseline_payload(data, runs, settings))


def read_baseline(path: PathLike, flags: Flags = PYTEST_FLAGS) -> dict[str, Any]:
    """Load a baseline file (version 1 to 4); :class:`ReportError` naming it when missing or
    malformed, with the option of the tool in use (``flags``) that writes one.

    Version 1 baselines record model and revision only: dtype and patch budget read as
    unknown. Versions 1 and 2 record the model by name, without its checkpoint identity.
    """
    path = Path(path)
    return checked_baseline(read_json(path, "baseline file", f" (write one with {flags.write_baseline})"), path)


def checked_baseline(data: Any, path: Path) -> dict[str, Any]:
    """A parsed baseline file read from ``path`` (named in errors), checked as :func:`read_baseline` does."""
    if not isinstance(data, dict) or data.get("version") not in READABLE_BASELINES or not isinstance(data.get("concepts"), dict):
        raise ReportError(
            f"{path}: not a pytest-masc baseline (version {', '.join(map(str, READABLE_BASELINES))} with a 'concepts' table)"
        )
    if data["version"] >= 4 and not isinstance(data.get("records"), list):
        raise ReportError(f"{path}: baseline version {data['version']} without its 'records' list (a damaged file?)")
    return data


@dataclass
class BaselineUpdate:
    """What writing a baseline from a run did. A run updates the concepts it scored in full
    and keeps the others as they were, so a partial run (``-k``, a shard) never shrinks a
    baseline; a concept its collected suite no longer declares is dropped. A failing run
    writes nothing (``refused``); ``error``: the file there cannot be updated."""

    path: str
    written: bool = False
    cases: int = 0  # cases written from this run
    updated: list[str] = field(default_factory=list)  # concepts written from this run
    kept: list[str] = field(default_factory=list)  # concepts of the previous baseline this run did not score
    partial: list[str] = field(default_factory=list)  # "suite::concept (2 of 3 cases ran)": not written
    dropped: list[str] = field(default_factory=list)  # no longer declared by their (collected) suite
    previous: bool = False  # a baseline was there and was updated
    refused: Optional[str] = None
    error: Optional[str] = None

    @property
    def findings(self) -> list[str]:
        return [f"ERROR baseline not written: {self.error}"] if self.error else []

    def lines(self) -> list[str]:
        if self.error:
            return [f"baseline NOT written to {self.path}:", f"  {self.findings[0]}"]
        if self.refused:
            return [f"baseline NOT written to {self.path}: {self.refused}"]
        concepts = f"{len(self.updated)} concept{'s' if len(self.updated) != 1 else ''}"
        if self.previous:
            lines = [
                f"baseline {self.path} updated with this run's {concepts} ({self.cases} cases); "
                "the concepts it did not score in full are left as they were"
            ]
        else:
            lines = [f"baseline written to {self.path} ({self.cases} cases, {concepts})"]
        if self.kept:
            lines.append(f"  kept, not in this run: {', '.join(self.kept)}")
        if self.partial:
            lines.append(f"  not written, only part of its cases ran: {', '.join(self.partial)}")
        if self.dropped:
            lines.append(f"  dropped, no longer declared in its suite: {', '.join(self.dropped)}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def previous_baseline(path: PathLike, settings: dict[str, Any], flags: Flags = PYTEST_FLAGS) -> Optional[dict[str, Any]]:
    """The baseline a run would update at ``path`` (``None``: no file there). :class:`ReportError`
    when the file is not a baseline, or records other settings: its concepts the run does not
    score could not be kept beside the run's."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        previous = read_baseline(path, flags)
    except ReportError as error:
        raise ReportError(f"cannot update {error}; move it away to write a new baseline there") from None
    differences = setting_differences(previous, settings)
    if differences:
        raise ReportError(
            f"cannot update: {mismatch_text(path, differences)}, so its other concepts cannot be kept beside this "
            "run's; delete it to start a new baseline from a full run"
        )
    return previous


def _failure_text(report: Report, evaluation: "Evaluation") -> str:
    parts = []
    if evaluation.failed_cases:
        parts.append(f"{evaluation.failed_cases} case(s) below their gates")
    if evaluation.errored_cases:
        parts.append(f"{evaluation.errored_cases} case(s) not scored")
    if evaluation.alpha_findings or evaluation.protocol_findings:
        parts.append(f"{len(evaluation.alpha_findings) + len(evaluation.protocol_findings)} suite gate(s) failed")
    if evaluation.baseline is not None and evaluation.baseline.failed:
        parts.append("the baseline check failed")
    if evaluation.shard_findings:
        parts.append(f"{len(evaluation.shard_findings)} shard(s) failed")
    if not parts and report.exitstatus not in (None, 0, 5):
        parts.append(f"pytest exit status {report.exitstatus}, {EXIT_NAMES.get(report.exitstatus, 'failed')}")
    return ", ".join(parts)


def _concept_suite(key: str, collected: dict[str, dict[str, Any]]) -> Optional[str]:
    return next((suite for suite in collected if key.startswith(f"{suite}::")), None)


def update_baseline(path: PathLike, report: Report, evaluation: "Evaluation", flags: Flags = PYTEST_FLAGS) -> BaselineUpdate:
    """Write the run's concepts into the baseline at ``path`` (see :class:`BaselineUpdate`): a
    concept is written when all of its collected cases were scored, others stay as they were;
    a failing run (``evaluation``, or pytest's own exit status) writes nothing."""
    result = BaselineUpdate(path=str(path))
    failure = _failure_text(report, evaluation) if evaluation.failed or report.exitstatus not in (None, 0, 5) else ""
    if failure:
        result.refused = (
            f"this run failed ({failure}); a baseline is what later runs are held to, so only a passing run writes "
            f"one: {flags.rerun}"
        )
        return result
    try:
        previous = previous_baseline(path, report.settings, flags)
    except ReportError as error:
        result.error = str(error)
        return result
    fresh = baseline_payload(report.records, report.runs, report.settings, environment=report.environment,
                             canary=report.canary)
    concepts = dict(previous["concepts"]) if previous else {}
    rows = baseline_rows(previous) if previous else []  # version 3 cases become rows with one seed
    for row in concept_table(scored_rows(case_rows(records_frame(report.records)))):  # cases, as ``declared`` counts
        key = f"{row['suite']}::{row['concept']}"
        declared = report.collected.get(row["suite"], {}).get("concepts", {}).get(row["concept"])
        if declared is not None and row["cases"] < declared:
            result.partial.append(f"{key} ({row['cases']} of {declared} cases ran)")
            continue
        concepts[key] = fresh["concepts"][key]
        result.updated.append(key)
    written = set(result.updated)
    for key in sorted(set(concepts) - written):
        suite = _concept_suite(key, report.collected)
        if suite is not None and key[len(suite) + 2:] not in report.collected[suite].get("concepts", {}):
            del concepts[key]
            result.dropped.append(key)
        elif previous and not any(p.startswith(f"{key} (") for p in result.partial):
            result.kept.append(key)
    gone = written | set(result.dropped)
    kept = [row for row in rows if f"{row.get('suite')}::{row.get('concept')}" not in gone]
    new_rows = [row for row in fresh["records"] if f"{row['suite']}::{row['concept']}" in written]
    payload = {**fresh, "records": kept + new_rows, "concepts": dict(sorted(concepts.items()))}
    atomic_write_json(Path(path), payload)
    result.written, result.previous = True, previous is not None
    result.cases = len({(row["suite"], row["concept"], row["case_id"]) for row in new_rows})
    return result
