"""Reports: the ``--masc-json`` file, reading it into pandas, merging shards, the summary and
baselines. Public and pytest-free; the plugin's terminal summary is built from it.

``--masc-json`` format 2 (``"format": 2``)::

    {"format": 2, "pytest_masc": "0.1.0",
     "settings": {"model", "revision", "dtype", "max_num_patches"},   # what shards must share
     "exitstatus": 0,                 # pytest's status before MaSC's session-level gates
     "suite_gates": {suite: {"min_alpha_concept": 0.2, ...}},
     "protocol_findings": [...],      # failed protocol gates (also failed tests)
     "runs": [...], "records": [...], "summary": {...}}

A record's ``distractor_prompts`` is a list of ``{"prompt", "score"}``. Format 1 files (no
``format`` key: ``distractor_prompts`` a dict, no settings or suite gates) are still read by
:func:`load` and :func:`read` (settings taken from the run metadata), but :func:`merge` refuses
them, since their suite-level gates are unknown.

Command line (exit 0: every gate passes, 1: a gate failed, 2: unreadable or refused input)::

    python -m pytest_masc.report merge shard-*.json [--baseline FILE] [--max-drop X] [--json FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from .gates import GATES, Record, nan_to_none

if TYPE_CHECKING:
    import pandas

FORMAT = 2
BASELINE_VERSION = 2
DEFAULT_MAX_DROP = 0.02
#: run settings that shards, and a run and its baseline, must share -> label in messages
SETTINGS: dict[str, str] = {
    "model": "model", "revision": "revision", "dtype": "dtype", "max_num_patches": "max patches",
}
SCORE_KEYS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")
EXIT_NAMES = {1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
_RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)}
_RECORD_REQUIRED = ("nodeid", "kind", "suite", "concept", "case_id", "prompt", "image")

PathLike = Union[str, "os.PathLike[str]"]


class ReportError(ValueError):
    """A report or baseline file that cannot be used; the message names the file and the problem."""


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    """The records of one run (a ``--masc-json`` file, a live session, or merged shards).

    ``settings``: model, revision, dtype, max_num_patches (``None`` where unknown).
    ``shards``: one ``{"source", "exitstatus", "cases"}`` per file read.
    """

    records: list[Record]
    runs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    suite_gates: Optional[dict[str, dict[str, float]]] = field(default_factory=dict)  # None: unknown (format 1)
    protocols: list[dict[str, Any]] = field(default_factory=list)
    protocol_findings: list[str] = field(default_factory=list)
    exitstatus: Optional[int] = None
    shards: list[dict[str, Any]] = field(default_factory=list)
    shard_findings: list[str] = field(default_factory=list)  # shards whose pytest run failed outside MaSC
    format: int = FORMAT


def run_settings(runs: Sequence[dict[str, Any]], **requested: Any) -> dict[str, Any]:
    """The run settings: what the loaded model reported (``runs``), else what was requested."""
    settings = {}
    for key in SETTINGS:
        reported = [run[key] for run in runs if run.get(key) is not None]
        settings[key] = reported[0] if reported else requested.get(key)
    return settings


def _record_json(record: Record) -> dict[str, Any]:
    data = record.as_dict()
    data["distractor_prompts"] = [{"prompt": p, "score": s} for p, s in record.distractor_prompts.items()]
    return data


def _record_from_json(data: Any, where: str) -> Record:
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [key for key in _RECORD_REQUIRED if key not in data]
    if missing:
        raise ReportError(f"{where}: missing {', '.join(missing)}")
    values = {key: value for key, value in data.items() if key in _RECORD_FIELDS}
    distractors = values.get("distractor_prompts") or []
    if isinstance(distractors, dict):  # format 1
        values["distractor_prompts"] = dict(distractors)
    else:
        try:
            values["distractor_prompts"] = {d["prompt"]: d["score"] for d in distractors}
        except (TypeError, KeyError):
            raise ReportError(f"{where}: distractor_prompts must be a list of {{prompt, score}}") from None
    values.setdefault("subject", None)
    return Record(**values)


def load(path: PathLike) -> Report:
    """Read one ``--masc-json`` file (format 1 or 2); :class:`ReportError` naming it when unusable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: report file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not a readable JSON report ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ReportError(f"{path}: not a pytest-masc --masc-json report (no 'records' list)")
    version = data.get("format", 1)
    if version not in (1, FORMAT):
        raise ReportError(
            f"{path}: --masc-json format {version!r}; this pytest-masc reads formats 1 and {FORMAT} (upgrade it)"
        )
    records = [_record_from_json(r, f"{path}: record {i}") for i, r in enumerate(data["records"])]
    runs = list(data.get("runs") or [])
    summary = data.get("summary") or {}
    if version == 1:
        settings, suite_gates, protocol_findings = run_settings(runs), None, []
    else:
        settings = {key: (data.get("settings") or {}).get(key) for key in SETTINGS}
        suite_gates = dict(data.get("suite_gates") or {})
        protocol_findings = list(data.get("protocol_findings") or [])
    exitstatus = data.get("exitstatus")
    shards = data.get("shards") or [{"source": str(path), "exitstatus": exitstatus, "cases": len(records)}]
    return Report(
        records=sorted(records, key=_record_order), runs=runs, settings=settings, suite_gates=suite_gates,
        protocols=list(summary.get("protocols") or []), protocol_findings=protocol_findings,
        exitstatus=exitstatus, shards=list(shards), format=version,
    )


def _record_order(record: Record) -> tuple[str, int]:
    return record.nodeid, record.check_index


def _case_key(record: Record) -> str:
    return f"{record.nodeid}#{record.check_index}" if record.check_index else record.nodeid


def _source(report: Report) -> str:
    return ", ".join(str(s.get("source")) for s in report.shards) or "<session>"


def merge(reports: Sequence[Report]) -> Report:
    """One report from shards of one run: records, runs and suite gates joined.

    Refused (:class:`ReportError` naming the files and values) when the shards used another
    model, revision, dtype or patch budget, declare different gates for one suite, share a
    case, or are format 1 (their suite-level gates are unknown).
    """
    if not reports:
        raise ReportError("no reports to merge")
    for report in reports:
        if report.format < FORMAT or report.suite_gates is None:
            raise ReportError(
                f"{_source(report)}: --masc-json format {report.format} records no run settings or suite-level "
                f"gates, so it cannot be merged; re-run that shard with this pytest-masc (format {FORMAT})"
            )
    settings: dict[str, Any] = {}
    for key, label in SETTINGS.items():
        seen = {}  # value -> first source
        for report in reports:
            value = report.settings.get(key)
            if value is None and key == "dtype":  # a shard that loaded no model: dtype unknown
                continue
            seen.setdefault(value, _source(report))
        if len(seen) > 1:
            sides = "; ".join(f"{source}: {label} {value if value is not None else 'default'}" for value, source in seen.items())
            raise ReportError(f"shards from different runs refused: they differ in {label} ({sides})")
        settings[key] = next(iter(seen)) if seen else None
    suite_gates: dict[str, dict[str, float]] = {}
    gate_source: dict[str, str] = {}
    for report in reports:
        for suite, gates in (report.suite_gates or {}).items():
            if suite in suite_gates and suite_gates[suite] != gates:
                raise ReportError(
                    f"shards refused: suite {suite!r} has gates {suite_gates[suite]} in {gate_source[suite]} "
                    f"but {gates} in {_source(report)}"
                )
            suite_gates[suite] = dict(gates)
            gate_source.setdefault(suite, _source(report))
    owners: dict[str, str] = {}
    for report in reports:
        for record in report.records:
            key = _case_key(record)
            if key in owners:
                raise ReportError(f"shards overlap: case {key} is in {owners[key]} and in {_source(report)}")
            owners[key] = _source(report)
    return Report(
        records=sorted((r for report in reports for r in report.records), key=_record_order),
        runs=[run for report in reports for run in report.runs],
        settings=settings,
        suite_gates=suite_gates,
        protocols=[table for report in reports for table in report.protocols],
        protocol_findings=[finding for report in reports for finding in report.protocol_findings],
        exitstatus=_worst_exit([report.exitstatus for report in reports]),
        shards=[shard for report in reports for shard in report.shards],
        shard_findings=[f for f in map(_shard_finding, reports) if f],
    )


def _worst_exit(statuses: Iterable[Optional[int]]) -> Optional[int]:
    known = [s for s in statuses if s is not None]
    failing = [s for s in known if s not in (0, 5)]
    return failing[0] if failing else (0 if 0 in known else (known[0] if known else None))


# --------------------------------------------------------------------------- pandas


def records_frame(records: Sequence[Record], source: Optional[str] = None) -> "pandas.DataFrame":
    """One row per case, flat columns (see :func:`read`)."""
    import pandas as pd

    fixed = [
        "source", "nodeid", "check_index", "kind", "suite", "concept", "case_id", "prompt", "subject", "image",
        *(f"scores.{k}" for k in SCORE_KEYS), *(f"gates.{g}" for g in GATES),
        "verdict", "passed", "error", "failures", "panel",
        "concept_per_reference", "distractor_prompts", "human.concept", "human.prompt",
    ]
    rows = []
    extras: dict[str, None] = {}
    for record in records:
        row: dict[str, Any] = {
            "source": source, "nodeid": record.nodeid, "check_index": record.check_index, "kind": record.kind,
            "suite": record.suite, "concept": record.concept, "case_id": record.case_id, "prompt": record.prompt,
            "subject": record.subject, "image": record.image,
            "verdict": "error" if record.error else ("passed" if record.passed else "failed"),
            "passed": bool(record.passed), "error": record.error, "failures": list(record.failures),
            "panel": record.panel, "concept_per_reference": list(record.concept_per_reference),
            "distractor_prompts": [{"prompt": p, "score": s} for p, s in record.distractor_prompts.items()],
            "human.concept": record.human.get("concept"), "human.prompt": record.human.get("prompt"),
        }
        for key in SCORE_KEYS:
            value = record.scores.get(key)
            row[f"scores.{key}"] = math.nan if value is None else float(value)
        for gate in GATES:
            row[f"gates.{gate}"] = float(record.gates[gate]) if gate in record.gates else math.nan
        for key, value in record.extras.items():
            row[f"extras.{key}"] = value
            extras[f"extras.{key}"] = None
        rows.append(row)
    frame = pd.DataFrame(rows, columns=fixed + sorted(extras))
    return frame.astype({"check_index": "int64", "passed": "bool", **{c: "float64" for c in fixed if c.startswith(("scores.", "gates."))}})


def read(path_or_paths: Union[PathLike, Iterable[PathLike]]) -> "pandas.DataFrame":
    """``--masc-json`` file(s) as a DataFrame, one row per case (several files are merged shards).

    Columns: ``source`` (the file), ``nodeid``, ``check_index``, ``kind``, ``suite``,
    ``concept``, ``case_id``, ``prompt``, ``subject``, ``image``, ``scores.<score>`` (NaN when
    undefined), ``gates.<gate>`` (NaN when not gated), ``verdict`` (passed, failed, error),
    ``passed``, ``error``, ``failures``, ``panel``, ``concept_per_reference``,
    ``distractor_prompts`` (list of ``{prompt, score}``), ``human.concept``, ``human.prompt``
    (ratings or None) and ``extras.<key>`` for each diagnostic. ``frame.attrs`` holds the run
    ``settings``, ``runs`` and ``suite_gates``.
    """
    import pandas as pd

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    reports = [load(p) for p in paths]
    merged = merge(reports) if len(reports) > 1 else reports[0]
    frames = [records_frame(report.records, source=str(path)) for report, path in zip(reports, paths)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    order = sorted(range(len(frame)), key=lambda i: (frame["nodeid"].iat[i], int(frame["check_index"].iat[i])))
    frame = frame.iloc[order].reset_index(drop=True)
    frame.attrs.update(settings=merged.settings, runs=merged.runs, suite_gates=merged.suite_gates)
    return frame


def _frame(data: Any) -> "pandas.DataFrame":
    if hasattr(data, "columns"):
        return data
    return records_frame(sorted(data, key=_record_order))


# --------------------------------------------------------------------------- statistics


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _min(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return min(finite) if finite else None


def concept_table(data: Any) -> list[dict[str, Any]]:
    """One row per (suite, concept) of a frame (or records): cases, passed, mean/min CP, mean PF, min margin."""
    frame = _frame(data)
    rows = []
    if frame.empty:
        return rows
    for (suite, concept), group in frame.groupby(["suite", "concept"], sort=True):
        rows.append({
            "suite": suite,
            "concept": concept,
            "cases": int(len(group)),
            "passed": int(group["passed"].sum()),
            "mean_concept": _mean(group["scores.concept"].tolist()),
            "min_concept": _min(group["scores.concept"].tolist()),
            "mean_prompt": _mean(group["scores.prompt"].tolist()),
            "min_margin": _min(group["scores.prompt_margin"].tolist()),
        })
    return rows


def human_agreement(data: Any, n_resamples: int = 1000) -> dict[str, dict[str, Any]]:
    """Krippendorff's alpha (interval, the paper's protocol) of each score against human ratings.

    Uses the scored rows that carry ``human`` ratings; CP and global_concept against the concept
    ratings, PF and global_prompt against the prompt ratings. Each entry: alpha, CI, units.
    """
    import numpy as np

    from .stats.agreement import human_alpha, human_alpha_ci

    frame = _frame(data)
    frame = frame[frame["error"].isna()]
    pairs = {"concept": "concept", "global_concept": "concept", "prompt": "prompt", "global_prompt": "prompt"}
    results: dict[str, dict[str, Any]] = {}
    for score_key, rating_key in pairs.items():
        ratings_column = frame[f"human.{rating_key}"]
        has_ratings = ratings_column.map(lambda v: isinstance(v, list) and len(v) > 0).astype(bool)
        rated = frame[has_ratings & frame[f"scores.{score_key}"].notna()]
        if len(rated) < 3:
            continue
        lists = rated[f"human.{rating_key}"].tolist()
        ratings = np.full((max(len(v) for v in lists), len(lists)), np.nan)
        for unit, values in enumerate(lists):
            ratings[: len(values), unit] = values
        metric = rated[f"scores.{score_key}"].to_numpy(dtype=float)
        alpha = human_alpha(metric, ratings)
        low, high = human_alpha_ci(metric, ratings, n_resamples=n_resamples, seed=0)
        results[score_key] = {"alpha": nan_to_none(alpha), "ci": [nan_to_none(low), nan_to_none(high)], "units": len(rated)}
    return results


def check_suite_gates(suite_gates: dict[str, dict[str, float]], summary: dict[str, Any]) -> list[str]:
    """Failed ``min_alpha_*`` suite gates, from the per-suite agreement in ``summary``."""
    findings = []
    labels = {"min_alpha_concept": "concept", "min_alpha_prompt": "prompt"}
    for suite_name, gates in sorted(suite_gates.items()):
        agreement = summary["suites"].get(suite_name, {}).get("agreement", {})
        for gate, minimum in sorted(gates.items()):
            if gate not in labels:
                continue
            entry = agreement.get(labels[gate])
            alpha = None if entry is None else entry["alpha"]
            if alpha is None:
                findings.append(f"{suite_name}: {gate} = {minimum:g} but no human-rated cases give an alpha")
            elif alpha < minimum:
                findings.append(f"{suite_name}: alpha of {labels[gate]} scores vs humans {alpha:.3f} < {gate} {minimum:g}")
    return findings


# --------------------------------------------------------------------------- baselines


def baseline_payload(data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Per-case and per-concept scores to compare later runs against, with the run settings."""
    frame = _frame(data)
    scored = frame[frame["error"].isna()]
    settings = settings if settings is not None else run_settings(runs)
    return {
        "version": BASELINE_VERSION,
        **{key: settings.get(key) for key in SETTINGS},
        "cases": {
            (f"{row['nodeid']}#{row['check_index']}" if row["check_index"] else row["nodeid"]): {
                "concept": nan_to_none(row["scores.concept"]), "prompt": nan_to_none(row["scores.prompt"]),
            }
            for _, row in scored.iterrows()
        },
        "concepts": {
            f"{row['suite']}::{row['concept']}": {
                "concept": row["mean_concept"], "prompt": row["mean_prompt"], "cases": row["cases"],
            }
            for row in concept_table(scored)
        },
    }


def write_baseline(path: Path, data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> None:
    """Write :func:`baseline_payload` to ``path`` (mode from the umask)."""
    _atomic_write_json(Path(path), baseline_payload(data, runs, settings))


def read_baseline(path: PathLike) -> dict[str, Any]:
    """Load a baseline file (version 1 or 2); :class:`ReportError` naming it when missing or malformed.

    Version 1 baselines record model and revision only: dtype and patch budget read as ``None``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: baseline file not found (write one with --masc-update-baseline)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: baseline file is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("version") not in (1, BASELINE_VERSION) or not isinstance(data.get("concepts"), dict):
        raise ReportError(f"{path}: not a pytest-masc baseline (version 1 or {BASELINE_VERSION} with a 'concepts' table)")
    return data


@dataclass
class BaselineComparison:
    """What a baseline check compared and found. ``failed``: a regression, or nothing comparable."""

    path: str
    max_drop: float
    compared: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    only_in_run: list[str] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    mismatch: str = ""  # "<path> was made with ...; this run uses ..." when settings differ
    unchecked: list[str] = field(default_factory=list)  # settings the baseline does not record
    error: Optional[str] = None  # why nothing could be compared
    allowed_mismatch: bool = False

    @property
    def findings(self) -> list[str]:
        """The failure lines (empty when the check passed)."""
        return ([f"ERROR {self.error}"] if self.error else []) + [f"REGRESSION {r}" for r in self.regressions]

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    def lines(self) -> list[str]:
        """The summary lines of this check."""
        if self.failed:
            lines = [f"baseline check against {self.path} failed:"] + [f"  {f}" for f in self.findings]
        else:
            lines = [
                f"baseline {self.path}: no concept dropped more than {self.max_drop:g} "
                f"({len(self.compared)} concept{'s' if len(self.compared) != 1 else ''} compared)"
            ]
        if self.mismatch and self.allowed_mismatch:
            lines.append(f"  WARNING {self.mismatch}: compared anyway")
        if self.only_in_run:
            lines.append(f"  not in the baseline, not compared: {', '.join(self.only_in_run)}")
        if self.only_in_baseline:
            lines.append(f"  in the baseline but not in this run: {', '.join(self.only_in_baseline)}")
        if self.unchecked:
            lines.append(f"  note: the baseline (version 1) records no {' or '.join(self.unchecked)}: not checked")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _setting_text(key: str, value: Any) -> str:
    return f"{SETTINGS[key]} {value if value is not None else 'default'}"


def compare_baseline(
    baseline: dict[str, Any],
    data: Any,
    max_drop: float,
    *,
    settings: Optional[dict[str, Any]] = None,
    path: PathLike = "baseline",
    allow_mismatch: bool = False,
    allow_option: str = "--masc-allow-baseline-mismatch",
) -> BaselineComparison:
    """Compare a run (frame or records) with a baseline: per-concept mean CP and PF drops.

    A baseline made with other ``settings`` (model, revision, dtype, patch budget) is refused
    unless ``allow_mismatch``; sharing no concept with the run is an error too.
    """
    result = BaselineComparison(path=str(path), max_drop=max_drop, allowed_mismatch=allow_mismatch)
    if settings is not None:
        differ = []
        for key in SETTINGS:
            if key not in baseline and baseline.get("version") == 1:
                result.unchecked.append(SETTINGS[key])
                continue
            before, now = baseline.get(key), settings.get(key)
            if before != now and not (key == "dtype" and now is None):
                differ.append(key)
        if differ:
            result.mismatch = (
                f"{path} was made with {', '.join(_setting_text(k, baseline.get(k)) for k in differ)}; "
                f"this run uses {', '.join(_setting_text(k, settings.get(k)) for k in differ)}"
            )
            if not allow_mismatch:
                result.error = f"cannot compare: {result.mismatch} (pass {allow_option} to compare anyway)"
                return result
    current = {
        f"{row['suite']}::{row['concept']}": row
        for row in concept_table(_scored(_frame(data)))
    }
    before_all = baseline["concepts"]
    result.only_in_run = sorted(set(current) - set(before_all))
    result.only_in_baseline = sorted(set(before_all) - set(current))
    for key in sorted(set(current) & set(before_all)):
        before, now = before_all[key], current[key]
        result.compared.append(key)
        for score, column, label in (("concept", "mean_concept", "CP"), ("prompt", "mean_prompt", "PF")):
            old, new = before.get(score), now[column]
            if old is None:
                continue
            if new is None:
                result.regressions.append(f"{key}: mean {label} is now NaN (baseline {old:.4f})")
            elif old - new > max_drop:
                result.regressions.append(
                    f"{key}: mean {label} {new:.4f} dropped {old - new:.4f} below the baseline {old:.4f} (allowed {max_drop:g})"
                )
    if not result.compared:
        result.error = f"nothing compared: {path} shares no concept with this run"
    return result


def _scored(frame: "pandas.DataFrame") -> "pandas.DataFrame":
    return frame[frame["error"].isna()]


def check_baseline(
    path: PathLike, data: Any, settings: dict[str, Any], max_drop: float, *,
    allow_mismatch: bool = False, allow_option: str = "--masc-allow-baseline-mismatch",
) -> BaselineComparison:
    """Read the baseline at ``path`` and compare; an unreadable file is the comparison's error."""
    try:
        baseline = read_baseline(path)
    except ReportError as error:
        return BaselineComparison(path=str(path), max_drop=max_drop, error=f"cannot compare: {error}")
    return compare_baseline(
        baseline, data, max_drop, settings=settings, path=path,
        allow_mismatch=allow_mismatch, allow_option=allow_option,
    )


# --------------------------------------------------------------------------- verdict


@dataclass
class Evaluation:
    """The verdict of a report: summary statistics, suite-level gates, the baseline check."""

    summary: dict[str, Any]
    alpha_findings: list[str]
    protocol_findings: list[str]
    baseline: Optional[BaselineComparison]
    failed_cases: int
    errored_cases: int
    shard_findings: list[str] = field(default_factory=list)

    @property
    def suite_findings(self) -> list[str]:
        return self.protocol_findings + self.alpha_findings

    @property
    def session_reasons(self) -> list[str]:
        """Failures that belong to no test: the baseline check and ``min_alpha_*`` suite gates."""
        return (self.baseline.findings if self.baseline else []) + self.alpha_findings

    @property
    def failed(self) -> bool:
        """Whether the run fails: a case, a suite or protocol gate, the baseline or a shard."""
        return bool(self.failed_cases or self.errored_cases or self.session_reasons
                    or self.protocol_findings or self.shard_findings)

    def counts(self) -> list[tuple[int, str]]:
        """Session-level failures as (count, noun) for a closing line: ``1 MaSC baseline regression``."""
        parts = []
        regressions = len(self.baseline.regressions) if self.baseline else 0
        if self.baseline is not None and self.baseline.error:
            parts.append((1, "MaSC baseline error"))
        if regressions:
            parts.append((regressions, "MaSC baseline regression" + ("s" if regressions > 1 else "")))
        if self.alpha_findings:
            parts.append((len(self.alpha_findings), "MaSC suite gate" + ("s" if len(self.alpha_findings) > 1 else "") + " failed"))
        return parts


def _shard_finding(report: Report) -> Optional[str]:
    """Why a shard fails a merge although its MaSC cases and protocol gates passed, if it does:
    pytest itself failed there (a test outside MaSC, a collection error, an interruption)."""
    status = report.exitstatus
    if status in (None, 0, 5) or report.protocol_findings or any(not r.passed for r in report.records):
        return None
    return f"{_source(report)}: pytest exited with status {status} ({EXIT_NAMES.get(status, 'failed')}) although its MaSC cases passed"


def evaluate(
    report: Report,
    *,
    baseline: Optional[PathLike] = None,
    max_drop: float = DEFAULT_MAX_DROP,
    allow_mismatch: bool = False,
    allow_option: str = "--masc-allow-baseline-mismatch",
    n_resamples: int = 1000,
) -> Evaluation:
    """Statistics and verdict of ``report``, with the baseline at ``baseline`` when given."""
    frame = records_frame(report.records)
    scored = _scored(frame)
    summary: dict[str, Any] = {
        "concepts": concept_table(frame), "agreement": human_agreement(scored, n_resamples), "suites": {},
    }
    for suite_name in sorted(set(scored["suite"])):
        members = scored[scored["suite"] == suite_name]
        if members["human.concept"].notna().any() or members["human.prompt"].notna().any():
            summary["suites"][suite_name] = {"agreement": human_agreement(members, n_resamples)}
    alpha = check_suite_gates(report.suite_gates or {}, summary)
    comparison = None
    if baseline is not None and report.records:
        comparison = check_baseline(
            baseline, frame, report.settings, max_drop, allow_mismatch=allow_mismatch, allow_option=allow_option,
        )
    evaluation = Evaluation(
        summary=summary, alpha_findings=alpha, protocol_findings=list(report.protocol_findings),
        baseline=comparison,
        failed_cases=int((frame["verdict"] == "failed").sum()), errored_cases=int((frame["verdict"] == "error").sum()),
    )
    evaluation.shard_findings = list(report.shard_findings)
    summary["suite_findings"] = evaluation.suite_findings
    summary["baseline_regressions"] = comparison.findings if comparison else []
    summary["baseline"] = comparison.as_dict() if comparison else None
    summary["protocols"] = list(report.protocols)
    return evaluation


# --------------------------------------------------------------------------- text


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _run_lines(runs: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    if not runs:
        return []
    encoded = sum(int(r.get("images_encoded", 0)) for r in runs)
    cached = sum(int(r.get("images_cached", 0)) for r in runs)
    seconds = sum(float(r.get("encode_seconds", 0.0)) for r in runs)
    devices = sorted({str(r.get("device")) for r in runs if r.get("device")})
    first = runs[0]
    return [
        f"model {settings.get('model') or first.get('model')} (revision {settings.get('revision') or 'default'}), "
        f"device {', '.join(devices) or 'not loaded'}, dtype {settings.get('dtype') or first.get('dtype', '-')}, "
        f"{settings.get('max_num_patches') or first.get('max_num_patches', '-')} patches",
        f"images encoded {encoded}, served from cache {cached}, encode time {seconds:.1f} s"
        + (f" over {len(runs)} processes" if len(runs) > 1 else ""),
    ]


def table_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The per-suite/concept table as aligned text."""
    if not rows:
        return []
    header = ("suite", "concept", "cases", "pass", "mean CP", "min CP", "mean PF", "min margin")
    table = [header] + [
        (row["suite"], row["concept"], str(row["cases"]), str(row["passed"]),
         _fmt(row["mean_concept"]), _fmt(row["min_concept"]), _fmt(row["mean_prompt"]), _fmt(row["min_margin"]))
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, row in enumerate(table):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def summary_lines(report: Report, evaluation: Evaluation, *, baseline_written: Optional[PathLike] = None) -> list[str]:
    """The MaSC summary: run, per-suite/concept table, agreement, baseline, suite gates, counts."""
    lines = _run_lines(report.runs, report.settings) + table_lines(evaluation.summary["concepts"])
    agreement = evaluation.summary["agreement"]
    if agreement:
        lines.append("agreement with human ratings (Krippendorff's alpha, interval; 95% bootstrap CI):")
        for key, entry in agreement.items():
            ci = entry["ci"]
            lines.append(
                f"  {key:<15} {_fmt(entry['alpha'], 2)} [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]  ({entry['units']} cases)"
            )
    if baseline_written is not None:
        lines.append(f"baseline written to {baseline_written} ({len(report.records)} cases)")
    elif evaluation.baseline is not None:
        lines += evaluation.baseline.lines()
    for table in report.protocols:
        lines.append(f"protocol {table['kind']} ({table['suite']}):")
        lines += [f"  {line}" for line in table["table"].splitlines()]
    for finding in evaluation.suite_findings:
        lines.append(f"SUITE GATE FAILED {finding}")
    for finding in evaluation.shard_findings:
        lines.append(f"SHARD FAILED {finding}")
    if evaluation.errored_cases:
        lines.append(f"{evaluation.errored_cases} case(s) could not be scored (see errors above)")
    if evaluation.failed_cases:
        lines.append(f"{evaluation.failed_cases} case(s) below their gates")
    return lines


def closing_line(report: Report, evaluation: Evaluation) -> str:
    """``7 cases: 6 passed, 1 failed, 1 MaSC baseline regression``: the merge's last line."""
    passed = sum(1 for r in report.records if r.passed)
    parts = [f"{passed} passed"]
    if evaluation.failed_cases:
        parts.append(f"{evaluation.failed_cases} failed")
    if evaluation.errored_cases:
        parts.append(f"{evaluation.errored_cases} error")
    parts += [f"{count} {noun}" for count, noun in evaluation.counts()]
    if evaluation.protocol_findings:
        parts.append(f"{len(evaluation.protocol_findings)} protocol gate(s) failed")
    if evaluation.shard_findings:
        parts.append(f"{len(evaluation.shard_findings)} shard(s) failed")
    verdict = "FAILED" if evaluation.failed else "PASSED"
    return f"MaSC {verdict}: {len(report.records)} cases from {len(report.shards)} shard(s): {', '.join(parts)}"


# --------------------------------------------------------------------------- files


def _atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename; the file mode follows the umask."""
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def report_payload(report: Report, evaluation: Evaluation) -> dict[str, Any]:
    """The ``--masc-json`` document (format 2) of a report and its evaluation."""
    from . import __version__

    payload: dict[str, Any] = {
        "format": FORMAT,
        "pytest_masc": __version__,
        "settings": {key: report.settings.get(key) for key in SETTINGS},
        "exitstatus": report.exitstatus,
        "suite_gates": report.suite_gates or {},
        "protocol_findings": list(report.protocol_findings),
        "runs": list(report.runs),
        "records": [_record_json(r) for r in report.records],
        "summary": evaluation.summary,
    }
    if len(report.shards) > 1:
        payload["shards"] = list(report.shards)
    return payload


def write_json(path: PathLike, report: Report, evaluation: Evaluation) -> None:
    """``--masc-json``: every record, the run settings and metadata, the summary statistics."""
    _atomic_write_json(Path(path), report_payload(report, evaluation))


# --------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pytest_masc.report merge SHARD.json ...``: the summary a single run would print."""
    parser = argparse.ArgumentParser(prog="python -m pytest_masc.report", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merge_parser = commands.add_parser("merge", help="merge the --masc-json files of CI shards and gate the whole run")
    merge_parser.add_argument("shards", nargs="+", type=Path, metavar="SHARD.json")
    merge_parser.add_argument("--baseline", type=Path, metavar="FILE", help="compare against this baseline")
    merge_parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="X",
                              help=f"largest allowed drop of a concept's mean CP or PF (default {DEFAULT_MAX_DROP})")
    merge_parser.add_argument("--allow-baseline-mismatch", action="store_true",
                              help="compare against a baseline made with other settings, with a warning")
    merge_parser.add_argument("--json", type=Path, metavar="FILE", help="write the merged report here")
    merge_parser.add_argument("--write-baseline", type=Path, metavar="FILE",
                              help="write the merged run's per-concept means as a new baseline")
    args = parser.parse_args(argv)
    if args.max_drop < 0:
        parser.error(f"--max-drop must be >= 0, got {args.max_drop}")
    try:
        report = merge([load(path) for path in args.shards])
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    baseline = args.baseline.expanduser().absolute() if args.baseline else None
    evaluation = evaluate(
        report, baseline=baseline, max_drop=args.max_drop,
        allow_mismatch=args.allow_baseline_mismatch, allow_option="--allow-baseline-mismatch",
    )
    written = None
    if args.write_baseline:
        written = args.write_baseline.expanduser().absolute()
        write_baseline(written, report.records, report.runs, report.settings)
    print(f"MaSC summary, merged from {len(report.shards)} shard(s): {', '.join(str(p) for p in args.shards)}")
    for line in summary_lines(report, evaluation, baseline_written=written):
        print(line)
    if args.json:
        write_json(args.json, report, evaluation)
        print(f"merged report written to {args.json}")
    print(closing_line(report, evaluation))
    return 1 if evaluation.failed else 0


if __name__ == "__main__":
    sys.exit(main())
