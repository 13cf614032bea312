"""Baseline files (versions 1 to 3): writing a run's per-case and per-concept scores, reading them, and updating a baseline from a run."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..gates import nan_to_none
from .atomic import atomic_write_json
from .frame import as_frame, records_frame, scored_rows
from .model import EXIT_NAMES, PYTEST_FLAGS, Flags, PathLike, Report, ReportError, check_key
from .settings import CHECKPOINT, SETTINGS, mismatch_text, run_settings, setting_differences
from .summary import concept_table

if TYPE_CHECKING:
    import pandas

    from .verdict import Evaluation

BASELINE_VERSION = 3
READABLE_BASELINES = (1, 2, BASELINE_VERSION)


def _case_entries(scored: "pandas.DataFrame") -> dict[str, dict[str, Any]]:
    return {
        check_key(row["nodeid"], row["check_index"]): {
            "concept": nan_to_none(row["scores.concept"]), "prompt": nan_to_none(row["scores.prompt"]),
            "concept_key": f"{row['suite']}::{row['concept']}",
        }
        for _, row in scored.iterrows()
    }


def baseline_payload(data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Per-case and per-concept scores of a run to compare later runs against, with its settings
    and checkpoint identity (version 3; each case names its ``concept_key``)."""
    frame = as_frame(data)
    scored = frame[frame["error"].isna()]
    settings = settings if settings is not None else run_settings(runs)
    return {
        "version": BASELINE_VERSION,
        **{key: settings.get(key) for key in (*SETTINGS, CHECKPOINT)},
        "cases": _case_entries(scored),
        "concepts": {
            f"{row['suite']}::{row['concept']}": {
                "concept": row["mean_concept"], "prompt": row["mean_prompt"], "cases": row["cases"],
            }
            for row in concept_table(scored)
        },
    }


def write_baseline(path: Path, data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> None:
    """Write :func:`baseline_payload` to ``path`` (a new baseline; mode from the umask). To
    update one from a run, keeping what the run did not score, use :func:`update_baseline`."""
    atomic_write_json(Path(path), baseline_payload(data, runs, settings))


def read_baseline(path: PathLike, flags: Flags = PYTEST_FLAGS) -> dict[str, Any]:
    """Load a baseline file (version 1, 2 or 3); :class:`ReportError` naming it when missing or
    malformed, with the option of the tool in use (``flags``) that writes one.

    Version 1 baselines record model and revision only: dtype and patch budget read as
    unknown. Versions 1 and 2 record the model by name, without its checkpoint identity.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: baseline file not found (write one with {flags.write_baseline})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: baseline file is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("version") not in READABLE_BASELINES or not isinstance(data.get("concepts"), dict):
        raise ReportError(
            f"{path}: not a pytest-masc baseline (version {', '.join(map(str, READABLE_BASELINES))} with a 'concepts' table)"
        )
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
    fresh = baseline_payload(report.records, report.runs, report.settings)
    concepts = dict(previous["concepts"]) if previous else {}
    cases = dict(previous.get("cases") or {}) if previous else {}
    for row in concept_table(scored_rows(records_frame(report.records))):
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
    cases = {k: v for k, v in cases.items() if v.get("concept_key") not in gone}
    new_cases = {k: v for k, v in fresh["cases"].items() if v["concept_key"] in written}
    payload = {**fresh, "cases": {**cases, **new_cases}, "concepts": dict(sorted(concepts.items()))}
    atomic_write_json(Path(path), payload)
    result.written, result.previous, result.cases = True, previous is not None, len(new_cases)
    return result
