"""The ``--masc-json`` file: reading it (formats 1 and 2) into a :class:`Report` and writing a report with its evaluation.

Format 2 (``"format": 2``)::

    {"format": 2, "pytest_masc": "0.1.0",
     "settings": {"model", "revision", "dtype", "max_num_patches",   # what shards must share
                  "checkpoint"},     # what the model is (metric.identity), None in older files
     "exitstatus": 0,                 # pytest's status before MaSC's session-level gates
     "suite_gates": {suite: {"min_alpha_concept": 0.2, ...}},
     "collected": {suite: {"file", "concepts": {concept: cases}, "rated": {"concept": n, "prompt": n}}},
     "protocol_findings": [...],      # failed protocol gates (also failed tests)
     "runs": [...], "records": [...], "summary": {...},
     "environment": {...}, "canary": {...}}   # when known: report.release (the metric-drift canary)

``collected`` describes each suite file as collected, deselected cases included (absent in
older files: then what ran is all that is known). A record's ``distractor_prompts`` is a
list of ``{"prompt", "score"}``. Format 1 files (no ``format`` key: ``distractor_prompts`` a
dict, no settings or suite gates) are still read by :func:`load` and :func:`read` (settings
taken from the run metadata), but :func:`merge` refuses them, since their suite-level gates
are unknown.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_json, read_json
from .codec import record_from_json, record_to_json
from .model import FORMAT, PathLike, Report, ReportError, record_order
from .settings import CHECKPOINT, SETTINGS, run_settings

if TYPE_CHECKING:
    from .verdict import Evaluation


def load(path: PathLike) -> Report:
    """Read one ``--masc-json`` file (format 1 or 2); :class:`ReportError` naming it when unusable."""
    return report_from_json(read_json(Path(path), "report file"), Path(path))


def report_from_json(data: Any, path: Path) -> Report:
    """The :class:`Report` of a parsed ``--masc-json`` file read from ``path`` (named in errors)."""
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ReportError(f"{path}: not a pytest-masc --masc-json report (no 'records' list)")
    version = data.get("format", 1)
    if version not in (1, FORMAT):
        raise ReportError(
            f"{path}: --masc-json format {version!r}; this pytest-masc reads formats 1 and {FORMAT} (upgrade it)"
        )
    records = [record_from_json(r, f"{path}: record {i}") for i, r in enumerate(data["records"])]
    runs = list(data.get("runs") or [])
    summary = data.get("summary") or {}
    if version == 1:
        settings, suite_gates, protocol_findings = run_settings(runs), None, []
    else:
        settings = {key: (data.get("settings") or {}).get(key) for key in (*SETTINGS, CHECKPOINT)}
        suite_gates = dict(data.get("suite_gates") or {})
        protocol_findings = list(data.get("protocol_findings") or [])
    exitstatus = data.get("exitstatus")
    shards = data.get("shards") or [{"source": str(path), "exitstatus": exitstatus, "cases": len(records)}]
    return Report(
        records=sorted(records, key=record_order), runs=runs, settings=settings, suite_gates=suite_gates,
        protocols=list(summary.get("protocols") or []), protocol_findings=protocol_findings,
        exitstatus=exitstatus, shards=list(shards), format=version, collected=dict(data.get("collected") or {}),
        environment=dict(data.get("environment") or {}), canary=data.get("canary"),
    )


def report_payload(report: Report, evaluation: Evaluation) -> dict[str, Any]:
    """The ``--masc-json`` document (format 2) of a report and its evaluation."""
    from .. import __version__

    summary = dict(evaluation.summary)
    summary["baseline_update"] = evaluation.baseline_update.as_dict() if evaluation.baseline_update else None
    payload: dict[str, Any] = {
        "format": FORMAT,
        "pytest_masc": __version__,
        "settings": {key: report.settings.get(key) for key in (*SETTINGS, CHECKPOINT)},
        "exitstatus": report.exitstatus,
        "suite_gates": report.suite_gates or {},
        "collected": report.collected,
        "protocol_findings": list(report.protocol_findings),
        "runs": list(report.runs),
        "records": [record_to_json(r) for r in report.records],
        "summary": summary,
    }
    if report.environment:
        payload["environment"] = dict(report.environment)
    if report.canary:
        payload["canary"] = report.canary
    if len(report.shards) > 1:
        payload["shards"] = list(report.shards)
    return payload


def write_json(path: PathLike, report: Report, evaluation: Evaluation) -> None:
    """``--masc-json``: every record, the run settings and metadata, the summary statistics."""
    atomic_write_json(Path(path), report_payload(report, evaluation))


# --------------------------------------------------------------------------- command line
