"""Reports: the ``--masc-json`` file, reading it into pandas, merging shards, the summary and
baselines. Public and pytest-free; the plugin's terminal summary is built from it.

``--masc-json`` format 2 (``"format": 2``)::

    {"format": 2, "pytest_masc": "0.1.0",
     "settings": {"model", "revision", "dtype", "max_num_patches",   # what shards must share
                  "checkpoint"},     # what the model is (metric.identity), None in older files
     "exitstatus": 0,                 # pytest's status before MaSC's session-level gates
     "suite_gates": {suite: {"min_alpha_concept": 0.2, ...}},
     "collected": {suite: {"file", "concepts": {concept: cases}, "rated": {"concept": n, "prompt": n}}},
     "protocol_findings": [...],      # failed protocol gates (also failed tests)
     "runs": [...], "records": [...], "summary": {...}}

``collected`` describes each suite file as collected, deselected cases included (absent in
older files: then what ran is all that is known). A record's ``distractor_prompts`` is a
list of ``{"prompt", "score"}``. Format 1 files (no ``format`` key: ``distractor_prompts`` a
dict, no settings or suite gates) are still read by :func:`load` and :func:`read` (settings
taken from the run metadata), but :func:`merge` refuses them, since their suite-level gates
are unknown.

Command line (exit 0: every gate passes, 1: a gate failed, 2: unreadable or refused input)::

    python -m pytest_masc.report merge shard-*.json [--baseline FILE] [--baseline-skip SUITE::CONCEPT,...]
        [--max-drop X] [--allow-baseline-mismatch] [--json FILE] [--write-baseline FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from .gates import GATES, Record, format_against, nan_to_none
from .metric.identity import identity_text, local_directory, same_checkpoint

if TYPE_CHECKING:
    import pandas

FORMAT = 2
BASELINE_VERSION = 3
READABLE_BASELINES = (1, 2, BASELINE_VERSION)
DEFAULT_MAX_DROP = 0.02
#: run settings that shards, and a run and its baseline, must share -> label in messages
SETTINGS: dict[str, str] = {
    "model": "model", "revision": "revision", "dtype": "dtype", "max_num_patches": "max patches",
}
#: the settings key of the checkpoint's identity (:mod:`pytest_masc.metric.identity`)
CHECKPOINT = "checkpoint"
SCORE_KEYS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")
EXIT_NAMES = {1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
#: ``min_alpha_*`` suite gate -> the score (and rating) it gates
ALPHA_GATES = {"min_alpha_concept": "concept", "min_alpha_prompt": "prompt"}
_RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)}
_RECORD_REQUIRED = ("nodeid", "kind", "suite", "concept", "case_id", "prompt", "image")

PathLike = Union[str, "os.PathLike[str]"]


class ReportError(ValueError):
    """A report or baseline file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Flags:
    """The options of the tool the user is in, as its messages name them."""

    allow_mismatch: str
    write_baseline: str
    baseline_skip: str
    rerun: str  # how to run again without the failing cases


#: ``pytest --masc`` (the plugin)
PYTEST_FLAGS = Flags(
    allow_mismatch="--masc-allow-baseline-mismatch", write_baseline="--masc-update-baseline",
    baseline_skip="--masc-baseline-skip", rerun="fix or deselect (-k) the failing cases and run again",
)
#: ``python -m pytest_masc.report merge``
MERGE_FLAGS = Flags(
    allow_mismatch="--allow-baseline-mismatch", write_baseline="--write-baseline=FILE",
    baseline_skip="--baseline-skip", rerun="merge the shards of a passing run",
)


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    """The records of one run (a ``--masc-json`` file, a live session, or merged shards).

    ``settings``: model, revision, dtype, max_num_patches, checkpoint (``None`` where unknown).
    ``collected``: each suite file as collected (file, cases per concept, rated cases), or
    ``{}`` where unknown. ``shards``: one ``{"source", "exitstatus", "cases"}`` per file read.
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
    collected: dict[str, dict[str, Any]] = field(default_factory=dict)


def suite_collected(file: str, concepts: dict[str, int], rated: dict[str, int]) -> dict[str, Any]:
    """A ``collected`` entry: the suite's file (its node id), cases per declared concept (0 for
    a concept without cases), and cases with human ratings per rating (``concept``, ``prompt``)."""
    return {"file": str(file), "concepts": dict(concepts), "rated": {key: int(rated.get(key, 0)) for key in ALPHA_GATES.values()}}


def run_settings(runs: Sequence[dict[str, Any]], **requested: Any) -> dict[str, Any]:
    """The run settings: what the loaded model reported (``runs``), else what was requested."""
    settings = {}
    for key in (*SETTINGS, CHECKPOINT):
        reported = [run[key] for run in runs if run.get(key) is not None]
        settings[key] = reported[0] if reported else requested.get(key)
    return settings


def _legacy_model_match(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the model of ``old`` (a baseline or shard recording no checkpoint identity)
    is that of ``new``: the same string and revision, or the same local directory (an old
    relative path read from the working directory, as it was written)."""
    identity = new.get(CHECKPOINT)
    old_dir = local_directory(str(old.get("model"))) if old.get("model") else None
    if identity and identity.get("kind") == "local":
        return old.get("model") == new.get("model") or (old_dir is not None and str(old_dir) == identity.get("path"))
    if identity and identity.get("kind") == "hub":
        return old.get("model") == identity.get("id") and old.get("revision") == identity.get("revision")
    new_dir = local_directory(str(new.get("model"))) if new.get("model") else None
    if old_dir is not None and old_dir == new_dir:
        return True
    return old.get("model") == new.get("model") and old.get("revision") == new.get("revision")


def _model_text(settings: dict[str, Any], with_revision: bool = False) -> str:
    identity = settings.get(CHECKPOINT)
    text = f"model {settings.get('model')}"
    if identity:
        return f"{text} ({identity_text(identity)})"
    return text + (f", revision {settings.get('revision') or 'default'}" if with_revision else "")


def setting_differences(before: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(label, before, now)`` for each run setting in which ``now`` differs from ``before``.

    The model is compared by what it is where both sides record its identity (a local
    checkpoint by fingerprint, wherever it lies; a hub checkpoint by id and revision), else by
    its name, revision and resolved directory. A dtype that either side leaves unknown (a
    run that loaded no model) is not compared, nor a setting ``before`` does not record.
    """
    differences = []
    first, second = before.get(CHECKPOINT), now.get(CHECKPOINT)
    if first and second:
        if not same_checkpoint(first, second):
            differences.append(("model", _model_text(before), _model_text(now)))
    elif first or second:
        old, new = (now, before) if first else (before, now)
        if not _legacy_model_match(old, new):
            differences.append(("model", _model_text(before, True), _model_text(now, True)))
    elif not _legacy_model_match(before, now):
        for key in ("model", "revision"):
            if before.get(key) != now.get(key):
                differences.append((SETTINGS[key], _setting_text(key, before.get(key)), _setting_text(key, now.get(key))))
    for key in ("dtype", "max_num_patches"):
        if key not in before:  # a version-1 baseline: not recorded
            continue
        old_value, new_value = before.get(key), now.get(key)
        if key == "dtype" and (old_value is None or new_value is None):
            continue
        if old_value != new_value:
            differences.append((SETTINGS[key], _setting_text(key, old_value), _setting_text(key, new_value)))
    return differences


def _setting_text(key: str, value: Any) -> str:
    return f"{SETTINGS[key]} {value if value is not None else 'default'}"


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
        settings = {key: (data.get("settings") or {}).get(key) for key in (*SETTINGS, CHECKPOINT)}
        suite_gates = dict(data.get("suite_gates") or {})
        protocol_findings = list(data.get("protocol_findings") or [])
    exitstatus = data.get("exitstatus")
    shards = data.get("shards") or [{"source": str(path), "exitstatus": exitstatus, "cases": len(records)}]
    return Report(
        records=sorted(records, key=_record_order), runs=runs, settings=settings, suite_gates=suite_gates,
        protocols=list(summary.get("protocols") or []), protocol_findings=protocol_findings,
        exitstatus=exitstatus, shards=list(shards), format=version, collected=dict(data.get("collected") or {}),
    )


def _record_order(record: Record) -> tuple[str, int]:
    return record.nodeid, record.check_index


def _case_key(record: Record) -> str:
    return f"{record.nodeid}#{record.check_index}" if record.check_index else record.nodeid


def node_file(nodeid: str) -> str:
    """The file part of a node id: ``suites/masc_a.toml::case`` -> ``suites/masc_a.toml``."""
    return nodeid.split("::", 1)[0]


def _source(report: Report) -> str:
    return ", ".join(str(s.get("source")) for s in report.shards) or "<session>"


def merge(reports: Sequence[Report]) -> Report:
    """One report from shards of one run: records, runs and suite gates joined.

    Refused (:class:`ReportError` naming the files and values) when the shards used another
    checkpoint, dtype or patch budget, declare different gates for one suite, give one suite
    name to two suite files, share a case, or are format 1 (their suite-level gates are unknown).
    """
    if not reports:
        raise ReportError("no reports to merge")
    for report in reports:
        if report.format < FORMAT or report.suite_gates is None:
            raise ReportError(
                f"{_source(report)}: --masc-json format {report.format} records no run settings or suite-level "
                f"gates, so it cannot be merged; re-run that shard with this pytest-masc (format {FORMAT})"
            )
    first = reports[0]
    for report in reports[1:]:
        differences = setting_differences(first.settings, report.settings)
        if differences:
            labels = ", ".join(label for label, _, _ in differences)
            sides = (
                f"{_source(first)}: {', '.join(old for _, old, _ in differences)}; "
                f"{_source(report)}: {', '.join(new for _, _, new in differences)}"
            )
            raise ReportError(f"shards from different runs refused: they differ in {labels} ({sides})")
    settings = dict(first.settings)
    if settings.get("dtype") is None:  # a first shard that loaded no model: dtype from another
        settings["dtype"] = next((r.settings["dtype"] for r in reports if r.settings.get("dtype") is not None), None)
    suite_gates = _merged_suite_gates(reports)
    collected = _merged_collected(reports)
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
        collected=collected,
    )


def _merged_suite_gates(reports: Sequence[Report]) -> dict[str, dict[str, float]]:
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
    return suite_gates


def _merged_collected(reports: Sequence[Report]) -> dict[str, dict[str, Any]]:
    """The shards' ``collected`` joined. Refused: one suite name from two suite files (their
    records would pool into one concept table and one alpha), or one suite file collected
    differently (it changed between the shards)."""
    files: dict[str, dict[str, str]] = {}  # suite -> file -> first source
    for report in reports:
        for suite, entry in report.collected.items():
            files.setdefault(suite, {}).setdefault(str(entry.get("file")), _source(report))
        for record in report.records:
            if record.kind == "suite":
                files.setdefault(record.suite, {}).setdefault(node_file(record.nodeid), _source(report))
    for suite, sources in sorted(files.items()):
        if len(sources) > 1:
            (file_a, source_a), (file_b, source_b) = list(sources.items())[:2]
            raise ReportError(
                f"shards refused: suite {suite!r} comes from two suite files, {file_a} ({source_a}) and "
                f"{file_b} ({source_b}); suites of one run need distinct names (rename one)"
            )
    collected: dict[str, dict[str, Any]] = {}
    collected_source: dict[str, str] = {}
    for report in reports:
        for suite, entry in report.collected.items():
            if suite in collected and collected[suite] != entry:
                raise ReportError(
                    f"shards refused: suite {suite!r} ({entry.get('file')}) was collected as {_collected_text(collected[suite])} "
                    f"in {collected_source[suite]} but as {_collected_text(entry)} in {_source(report)}: "
                    "the suite file changed between the shards"
                )
            collected[suite] = dict(entry)
            collected_source.setdefault(suite, _source(report))
    return collected


def _collected_text(entry: dict[str, Any]) -> str:
    concepts = ", ".join(f"{name} {count}" for name, count in sorted(entry.get("concepts", {}).items()))
    rated = ", ".join(f"{key} {count}" for key, count in sorted(entry.get("rated", {}).items()))
    return f"cases per concept ({concepts}), rated cases ({rated})"


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
    ``settings``, ``runs``, ``suite_gates`` and ``collected``.
    """
    import pandas as pd

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    reports = [load(p) for p in paths]
    merged = merge(reports) if len(reports) > 1 else reports[0]
    frames = [records_frame(report.records, source=str(path)) for report, path in zip(reports, paths)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    order = sorted(range(len(frame)), key=lambda i: (frame["nodeid"].iat[i], int(frame["check_index"].iat[i])))
    frame = frame.iloc[order].reset_index(drop=True)
    frame.attrs.update(settings=merged.settings, runs=merged.runs, suite_gates=merged.suite_gates,
                       collected=merged.collected)
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


def _rated(column: "pandas.Series") -> "pandas.Series":
    """Which rows carry ratings (a non-empty list)."""
    return column.map(lambda v: isinstance(v, list) and len(v) > 0).astype(bool)


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
        rated = frame[_rated(frame[f"human.{rating_key}"]) & frame[f"scores.{score_key}"].notna()]
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


def _number(value: float) -> str:
    """A threshold as the user wrote it: ``0.2``, ``-1``."""
    text = f"{value:g}"
    return text if float(text) == float(value) else repr(float(value))


def _over(result: dict[str, Any]) -> str:
    """``over 4 of 6 rated cases`` (some deselected) or ``over 6 rated cases``."""
    used, rated = result["used"], result["rated"]
    return f"over {used} of {rated} rated cases" if rated is not None and used < rated else f"over {used} rated cases"


def _alpha_gate(suite: str, gate: str, minimum: float, rows: "pandas.DataFrame", agreement: dict[str, Any],
                rated_collected: Optional[int]) -> dict[str, Any]:
    """One ``min_alpha_*`` gate of one suite, judged on the suite's cases that ran (``rows``)."""
    key = ALPHA_GATES[gate]
    result: dict[str, Any] = {
        "suite": suite, "gate": gate, "minimum": float(minimum), "score": key, "alpha": None, "ci": [None, None],
        "used": 0, "ran": 0, "rated": rated_collected, "verdict": "not checked", "reason": "",
    }
    if rows.empty:
        result["reason"] = "none of its cases ran"
        return result
    rated = _rated(rows[f"human.{key}"])
    result["ran"] = int(rated.sum())
    result["used"] = int((rated & rows["error"].isna() & rows[f"scores.{key}"].notna()).sum())
    entry = agreement.get(key)
    if entry is not None and entry["alpha"] is not None:
        result.update(alpha=entry["alpha"], ci=list(entry["ci"]))
        result["verdict"] = "passed" if entry["alpha"] >= minimum else "failed"
        return result
    if rated_collected is not None and result["ran"] < rated_collected:  # a selection, not the suite, lacks ratings
        ran = "none" if result["ran"] == 0 else f"only {result['ran']}"
        result["reason"] = f"{ran} of its {rated_collected} rated cases ran" + (", too few for an alpha" if result["ran"] else "")
        return result
    result["verdict"] = "failed"
    if result["used"] < 3:
        result["reason"] = f"{result['used']} scored rated case(s); an alpha needs at least 3"
    else:
        result["reason"] = f"alpha is undefined over {result['used']} rated cases (no spread in scores or ratings)"
    return result


def suite_gate_results(
    suite_gates: dict[str, dict[str, float]], frame: "pandas.DataFrame", summary: dict[str, Any],
    collected: Optional[dict[str, dict[str, Any]]] = None,
) -> list[dict[str, Any]]:
    """Each ``min_alpha_*`` gate of each suite, judged on the suite's cases that ran: its alpha
    with CI, the rated cases used and collected, and a verdict (``passed``, ``failed``, or
    ``not checked`` where the run selected none of the suite's cases, or too few of its rated
    ones: deselection alone never fails a suite). ``frame``: the run's cases (errors included)."""
    collected = collected or {}
    results = []
    for suite_name, gates in sorted(suite_gates.items()):
        rows = frame[frame["suite"] == suite_name]
        agreement = summary["suites"].get(suite_name, {}).get("agreement", {})
        rated = collected.get(suite_name, {}).get("rated")
        for gate, minimum in sorted(gates.items()):
            if gate in ALPHA_GATES:
                count = None if rated is None else int(rated.get(ALPHA_GATES[gate], 0))
                results.append(_alpha_gate(suite_name, gate, minimum, rows, agreement, count))
    return results


def suite_gate_finding(result: dict[str, Any]) -> Optional[str]:
    """The ``SUITE GATE FAILED`` text of a failed suite gate result, else ``None``."""
    if result["verdict"] != "failed":
        return None
    suite, gate, minimum = result["suite"], result["gate"], result["minimum"]
    if result["alpha"] is None:
        return f"{suite}: {gate} = {_number(minimum)} but no human-rated cases give an alpha ({result['reason']})"
    alpha = format_against(result["alpha"], [minimum], 3)
    return f"{suite}: alpha of {result['score']} scores vs humans {alpha} < {gate} {_number(minimum)} ({_over(result)})"


def check_suite_gates(
    suite_gates: dict[str, dict[str, float]], summary: dict[str, Any], data: Any,
    collected: Optional[dict[str, dict[str, Any]]] = None,
) -> list[str]:
    """Failed ``min_alpha_*`` suite gates of a run (frame or records; see :func:`suite_gate_results`)."""
    results = suite_gate_results(suite_gates, _frame(data), summary, collected)
    return [f for f in map(suite_gate_finding, results) if f]


# --------------------------------------------------------------------------- baselines


def _case_entries(scored: "pandas.DataFrame") -> dict[str, dict[str, Any]]:
    return {
        (f"{row['nodeid']}#{row['check_index']}" if row["check_index"] else row["nodeid"]): {
            "concept": nan_to_none(row["scores.concept"]), "prompt": nan_to_none(row["scores.prompt"]),
            "concept_key": f"{row['suite']}::{row['concept']}",
        }
        for _, row in scored.iterrows()
    }


def baseline_payload(data: Any, runs: Sequence[dict[str, Any]] = (), settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Per-case and per-concept scores of a run to compare later runs against, with its settings
    and checkpoint identity (version 3; each case names its ``concept_key``)."""
    frame = _frame(data)
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
    _atomic_write_json(Path(path), baseline_payload(data, runs, settings))


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


def parse_concepts(value: Optional[str], option: str) -> list[str]:
    """``"studio::teapot, studio::*"`` -> ``["studio::teapot", "studio::*"]`` (``fnmatch``
    patterns over ``SUITE::CONCEPT``); ``ValueError`` naming ``option`` for an entry without ``::``."""
    entries = [part.strip() for part in (value or "").split(",") if part.strip()]
    for entry in entries:
        suite, _, concept = entry.partition("::")
        if not suite or not concept:
            raise ValueError(f"{option}: {entry!r} is not SUITE::CONCEPT (a baseline key such as dog-release::dog; * matches any)")
    return entries


@dataclass
class BaselineComparison:
    """What a baseline check compared and found. ``failed``: a regression, a baseline concept
    missing from the run (unless skipped), or nothing comparable."""

    path: str
    max_drop: float
    compared: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    only_in_run: list[str] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)  # missing + skipped
    missing: list[str] = field(default_factory=list)  # in the baseline, absent from the run: fails
    skipped: list[str] = field(default_factory=list)  # absent from the run and named by the skip option
    unmatched_skip: list[str] = field(default_factory=list)  # skip entries that name no baseline concept
    mismatch: str = ""  # "<path> was made with ...; this run uses ..." when settings differ
    unchecked: list[str] = field(default_factory=list)  # settings the baseline does not record
    legacy_model: Optional[int] = None  # the baseline's version when it records the model by name only
    error: Optional[str] = None  # why nothing could be compared
    allowed_mismatch: bool = False
    skip_option: str = PYTEST_FLAGS.baseline_skip

    @property
    def findings(self) -> list[str]:
        """The failure lines (empty when the check passed)."""
        return (
            ([f"ERROR {self.error}"] if self.error else [])
            + [f"REGRESSION {r}" for r in self.regressions]
            + [f"MISSING {key}: in the baseline, not in this run" for key in self.missing]
        )

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
        if self.missing:
            lines.append(
                "  a concept left out of a run can hide its regression: run its cases, or leave it out on purpose "
                f"with {self.skip_option}={','.join(self.missing)}"
            )
        if self.mismatch and self.allowed_mismatch:
            lines.append(f"  WARNING {self.mismatch}: compared anyway")
        if self.only_in_run:
            lines.append(f"  not in the baseline, not compared: {', '.join(self.only_in_run)}")
        if self.skipped:
            lines.append(f"  skipped as asked, not in this run: {', '.join(self.skipped)}")
        if self.unmatched_skip:
            lines.append(f"  note: {self.skip_option} names no concept of the baseline: {', '.join(self.unmatched_skip)}")
        if self.unchecked:
            lines.append(f"  note: the baseline (version 1) records no {' or '.join(self.unchecked)}: not checked")
        if self.legacy_model is not None:
            lines.append(
                f"  note: the baseline (version {self.legacy_model}) names its model without a checkpoint "
                "fingerprint: matched by name and directory"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _mismatch_text(path: PathLike, differences: list[tuple[str, str, str]]) -> str:
    return (
        f"{path} was made with {', '.join(old for _, old, _ in differences)}; "
        f"this run uses {', '.join(new for _, _, new in differences)}"
    )


def compare_baseline(
    baseline: dict[str, Any],
    data: Any,
    max_drop: float,
    *,
    settings: Optional[dict[str, Any]] = None,
    path: PathLike = "baseline",
    allow_mismatch: bool = False,
    flags: Flags = PYTEST_FLAGS,
    skip: Sequence[str] = (),
) -> BaselineComparison:
    """Compare a run (frame or records) with a baseline: per-concept mean CP and PF drops.

    A baseline made with other ``settings`` (checkpoint, dtype, patch budget) is refused
    unless ``allow_mismatch``; sharing no concept with the run is an error, and so is a
    baseline concept the run leaves out, unless ``skip`` (``fnmatch`` patterns over
    ``SUITE::CONCEPT``) names it. Messages name the options of the tool in use (``flags``).
    """
    result = BaselineComparison(path=str(path), max_drop=max_drop, allowed_mismatch=allow_mismatch,
                                skip_option=flags.baseline_skip)
    if settings is not None:
        if baseline.get("version") == 1:
            result.unchecked = [SETTINGS[key] for key in ("dtype", "max_num_patches") if key not in baseline]
        if CHECKPOINT not in baseline and settings.get(CHECKPOINT):
            result.legacy_model = baseline.get("version")
        differences = setting_differences(baseline, settings)
        if differences:
            result.mismatch = _mismatch_text(path, differences)
            if not allow_mismatch:
                result.error = f"cannot compare: {result.mismatch} (pass {flags.allow_mismatch} to compare anyway)"
                return result
    current = {f"{row['suite']}::{row['concept']}": row for row in concept_table(_scored(_frame(data)))}
    before_all = baseline["concepts"]
    result.only_in_run = sorted(set(current) - set(before_all))
    result.only_in_baseline = sorted(set(before_all) - set(current))
    result.skipped = [key for key in result.only_in_baseline if any(fnmatch.fnmatchcase(key, p) for p in skip)]
    result.missing = [key for key in result.only_in_baseline if key not in result.skipped]
    result.unmatched_skip = [p for p in skip if not any(fnmatch.fnmatchcase(key, p) for key in before_all)]
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
                    f"{key}: mean {label} {new:.4f} dropped {format_against(old - new, [max_drop])} below the "
                    f"baseline {old:.4f} (allowed {_number(max_drop)})"
                )
    if not result.compared:
        result.error = f"nothing compared: {path} shares no concept with this run"
    return result


def _scored(frame: "pandas.DataFrame") -> "pandas.DataFrame":
    return frame[frame["error"].isna()]


def check_baseline(
    path: PathLike, data: Any, settings: dict[str, Any], max_drop: float, *,
    allow_mismatch: bool = False, flags: Flags = PYTEST_FLAGS, skip: Sequence[str] = (),
) -> BaselineComparison:
    """Read the baseline at ``path`` and compare; an unreadable file is the comparison's error."""
    try:
        baseline = read_baseline(path, flags)
    except ReportError as error:
        return BaselineComparison(path=str(path), max_drop=max_drop, error=f"cannot compare: {error}")
    return compare_baseline(
        baseline, data, max_drop, settings=settings, path=path, allow_mismatch=allow_mismatch, flags=flags, skip=skip,
    )


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
            f"cannot update: {_mismatch_text(path, differences)}, so its other concepts cannot be kept beside this "
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
    for row in concept_table(_scored(records_frame(report.records))):
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
    _atomic_write_json(Path(path), payload)
    result.written, result.previous, result.cases = True, previous is not None, len(new_cases)
    return result


# --------------------------------------------------------------------------- verdict


@dataclass
class Evaluation:
    """The verdict of a report: summary statistics, suite-level gates, the baseline check, and
    the baseline written from it (``baseline_update``, set by whoever writes it)."""

    summary: dict[str, Any]
    alpha_findings: list[str]
    protocol_findings: list[str]
    baseline: Optional[BaselineComparison]
    failed_cases: int
    errored_cases: int
    shard_findings: list[str] = field(default_factory=list)
    suite_gates: list[dict[str, Any]] = field(default_factory=list)  # suite_gate_results
    errors: list[str] = field(default_factory=list)  # "suite / case: why it could not be scored"
    subject_notes: list[str] = field(default_factory=list)  # scored cases whose subject is not in the prompt
    baseline_update: Optional[BaselineUpdate] = None

    @property
    def suite_findings(self) -> list[str]:
        return self.protocol_findings + self.alpha_findings

    @property
    def session_reasons(self) -> list[str]:
        """Failures that belong to no test: the baseline check and write, ``min_alpha_*`` suite gates."""
        return (
            (self.baseline.findings if self.baseline else [])
            + (self.baseline_update.findings if self.baseline_update else [])
            + self.alpha_findings
        )

    @property
    def failed(self) -> bool:
        """Whether the run fails: a case, a suite or protocol gate, the baseline or a shard."""
        return bool(self.failed_cases or self.errored_cases or self.session_reasons
                    or self.protocol_findings or self.shard_findings)

    def counts(self) -> list[tuple[int, str]]:
        """Session-level failures as (count, noun) for a closing line: ``1 MaSC baseline regression``."""
        parts = []
        baseline = self.baseline
        errors = int(bool(baseline is not None and baseline.error)) + int(bool(self.baseline_update and self.baseline_update.error))
        if errors:
            parts.append((errors, "MaSC baseline error" + ("s" if errors > 1 else "")))
        regressions = len(baseline.regressions) if baseline else 0
        if regressions:
            parts.append((regressions, "MaSC baseline regression" + ("s" if regressions > 1 else "")))
        missing = len(baseline.missing) if baseline else 0
        if missing:
            parts.append((missing, "MaSC baseline concept" + ("s" if missing > 1 else "") + " missing"))
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


def _error_lines(records: Sequence[Record]) -> list[str]:
    """``suite / case: first line of the error`` for each case that could not be scored."""
    return [
        f"{r.suite} / {r.case_id}: {str(r.error).strip().splitlines()[0] if str(r.error).strip() else 'error'}"
        for r in records if r.error
    ]


def _subject_notes(records: Sequence[Record]) -> list[str]:
    """Scored cases whose subject does not occur in their prompt: nothing was stripped, so
    their PF also scores the subject's words (passing cases say it only here)."""
    return [
        f"{r.suite} / {r.case_id}: subject {r.subject!r}, prompt {r.prompt!r}"
        for r in records if r.error is None and r.subject and r.extras.get("subject_found") is False
    ]


def evaluate(
    report: Report,
    *,
    baseline: Optional[PathLike] = None,
    max_drop: float = DEFAULT_MAX_DROP,
    allow_mismatch: bool = False,
    flags: Flags = PYTEST_FLAGS,
    baseline_skip: Sequence[str] = (),
    n_resamples: int = 1000,
) -> Evaluation:
    """Statistics and verdict of ``report``, with the baseline at ``baseline`` when given
    (``baseline_skip``: baseline concepts the run may leave out)."""
    frame = records_frame(report.records)
    scored = _scored(frame)
    summary: dict[str, Any] = {
        "concepts": concept_table(frame), "agreement": human_agreement(scored, n_resamples), "suites": {},
    }
    for suite_name in sorted(set(scored["suite"])):
        members = scored[scored["suite"] == suite_name]
        if _rated(members["human.concept"]).any() or _rated(members["human.prompt"]).any():
            summary["suites"][suite_name] = {"agreement": human_agreement(members, n_resamples)}
    gate_results = suite_gate_results(report.suite_gates or {}, frame, summary, report.collected)
    comparison = None
    if baseline is not None and report.records:
        comparison = check_baseline(
            baseline, frame, report.settings, max_drop, allow_mismatch=allow_mismatch, flags=flags, skip=baseline_skip,
        )
    evaluation = Evaluation(
        summary=summary, alpha_findings=[f for f in map(suite_gate_finding, gate_results) if f],
        protocol_findings=list(report.protocol_findings), baseline=comparison,
        failed_cases=int((frame["verdict"] == "failed").sum()), errored_cases=int((frame["verdict"] == "error").sum()),
        shard_findings=list(report.shard_findings), suite_gates=gate_results,
        errors=_error_lines(report.records), subject_notes=_subject_notes(report.records),
    )
    summary["suite_gates"] = gate_results
    summary["suite_findings"] = evaluation.suite_findings
    summary["baseline_regressions"] = comparison.findings if comparison else []
    summary["baseline"] = comparison.as_dict() if comparison else None
    summary["protocols"] = list(report.protocols)
    return evaluation


# --------------------------------------------------------------------------- text


def _fmt(value: Optional[float], digits: int = 3, thresholds: Sequence[float] = ()) -> str:
    return "-" if value is None else format_against(value, thresholds, digits)


def segmenter_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line on the masks the ``--masc-segmenter`` computed, over every process that loaded it."""
    loaded = [run["segmenter"] for run in runs if (run.get("segmenter") or {}).get("loaded")]
    if not loaded:
        return []
    first = loaded[0]
    revision = f", revision {first['revision']}" if first.get("revision") else ""
    processes = f" over {len(loaded)} processes" if len(loaded) > 1 else ""
    return [
        f"segmenter {first['kind']} {first['model']}{revision}, threshold {first['threshold']:g}: "
        f"{sum(r['segmented'] for r in loaded)} masks computed{processes}, "
        f"{sum(r['seconds'] for r in loaded):.1f} s"
    ]


def _run_lines(runs: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """The model line, the segmenter's line, the encode counts."""
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
        *segmenter_lines(runs),
        f"images encoded {encoded}, served from cache {cached}, encode time {seconds:.1f} s"
        + (f" over {len(runs)} processes" if len(runs) > 1 else ""),
    ]


def concept_thresholds(records: Sequence[Record]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """``(suite, concept) -> {gate: thresholds}``: the distinct ``min_concept`` and
    ``min_prompt_margin`` thresholds of each concept's cases, which its min columns are read against."""
    thresholds: dict[tuple[str, str], dict[str, set[float]]] = {}
    for record in records:
        entry = thresholds.setdefault((record.suite, record.concept), {"min_concept": set(), "min_prompt_margin": set()})
        for gate, values in entry.items():
            if gate in record.gates:
                values.add(float(record.gates[gate]))
    return {key: {gate: sorted(values) for gate, values in entry.items()} for key, entry in thresholds.items()}


def table_lines(rows: Sequence[dict[str, Any]],
                thresholds: Optional[dict[tuple[str, str], dict[str, list[float]]]] = None) -> list[str]:
    """The per-suite/concept table as aligned text. With ``thresholds`` (:func:`concept_thresholds`)
    the min columns show as many decimals as it takes to fall on the same side of every gate of
    the concept's cases as the score does."""
    if not rows:
        return []
    header = ("suite", "concept", "cases", "pass", "mean CP", "min CP", "mean PF", "min margin")
    table = [header]
    for row in rows:
        gates = (thresholds or {}).get((row["suite"], row["concept"]), {})
        table.append((
            row["suite"], row["concept"], str(row["cases"]), str(row["passed"]),
            _fmt(row["mean_concept"]), _fmt(row["min_concept"], thresholds=gates.get("min_concept", ())),
            _fmt(row["mean_prompt"]), _fmt(row["min_margin"], thresholds=gates.get("min_prompt_margin", ())),
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, row in enumerate(table):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _agreement_lines(agreement: dict[str, dict[str, Any]]) -> list[str]:
    if not agreement:
        return []
    lines = ["agreement with human ratings, all suites pooled (Krippendorff's alpha, interval; 95% bootstrap CI):"]
    for key, entry in agreement.items():
        ci = entry["ci"]
        lines.append(f"  {key:<15} {_fmt(entry['alpha'], 2)} [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]  ({entry['units']} cases)")
    return lines


def suite_gate_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """Each suite's ``min_alpha_*`` gate with the alpha it was judged on (passing ones too)."""
    if not results:
        return []
    width = max(len(r["suite"]) for r in results)
    lines = ["suite-level gates (each suite's Krippendorff's alpha vs humans; 95% bootstrap CI):"]
    for r in results:
        head = f"  {r['suite']:<{width}}  {r['gate']} {_number(r['minimum'])}"
        if r["alpha"] is not None:
            low, high = r["ci"]
            alpha = format_against(r["alpha"], [r["minimum"]], 2)
            lines.append(f"{head}: alpha {alpha} [{_fmt(low, 2)}, {_fmt(high, 2)}] {_over(r)}: {r['verdict']}")
        else:
            lines.append(f"{head}: {r['verdict']}, {r['reason']}")
    return lines


def summary_lines(report: Report, evaluation: Evaluation) -> list[str]:
    """The MaSC summary, the same for a session and for a merge of its ``--masc-json`` files:
    run, segmenter, per-suite/concept table, agreement, suite gates, baseline, protocol
    tables, failures, the cases that could not be scored, subject notes."""
    lines = _run_lines(report.runs, report.settings)
    lines += table_lines(evaluation.summary["concepts"], concept_thresholds(report.records))
    lines += _agreement_lines(evaluation.summary["agreement"])
    lines += suite_gate_lines(evaluation.suite_gates)
    if evaluation.baseline_update is not None:
        lines += evaluation.baseline_update.lines()
    if evaluation.baseline is not None:
        lines += evaluation.baseline.lines()
    for table in report.protocols:
        lines.append(f"protocol {table['kind']} ({table['suite']}):")
        lines += [f"  {line}" for line in table["table"].splitlines()]
    for finding in evaluation.suite_findings:
        lines.append(f"SUITE GATE FAILED {finding}")
    for finding in evaluation.shard_findings:
        lines.append(f"SHARD FAILED {finding}")
    if evaluation.errors:
        lines.append(f"{len(evaluation.errors)} case(s) could not be scored:")
        lines += [f"  {error}" for error in evaluation.errors]
    if evaluation.failed_cases:
        lines.append(f"{evaluation.failed_cases} case(s) below their gates")
    if evaluation.subject_notes:
        lines.append(
            f"note: in {len(evaluation.subject_notes)} case(s) the subject does not occur in the prompt, "
            "so nothing was stripped for PF:"
        )
        lines += [f"  {note}" for note in evaluation.subject_notes]
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
        "records": [_record_json(r) for r in report.records],
        "summary": summary,
    }
    if len(report.shards) > 1:
        payload["shards"] = list(report.shards)
    return payload


def write_json(path: PathLike, report: Report, evaluation: Evaluation) -> None:
    """``--masc-json``: every record, the run settings and metadata, the summary statistics."""
    _atomic_write_json(Path(path), report_payload(report, evaluation))


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_masc.report", description=__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
