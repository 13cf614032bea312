"""Release comparisons of two runs or baselines: :func:`compare`, the metric-drift canary's say on a verdict, and the comparison's text.

Each side is a ``--masc-json`` run file (format 2 or later), a baseline file (version 3 or later,
which hold per-case scores), a loaded :class:`~pytest_masc.report.model.Report` or a baseline
dict. Cases pair by (suite, concept, case id), seeds are averaged per case (paired by seed where
both sides hold the same seeds): :func:`pytest_masc.stats.compare.compare_cases`. When the two
sides ran in different environments (torch, transformers, device, dtype, attention) and both
scored the canary (:mod:`pytest_masc.metric.canary`), its drift is shown beside the verdicts
and a ``regressed`` row whose drop is within it becomes ``inconclusive``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ..gates import Record, format_against
from ..stats.compare import METRICS, VERDICTS, ReleaseComparison, RowComparison, compare_cases
from .atomic import read_json
from .cases import baseline_rows, baseline_table, records_table
from .model import FORMAT, PathLike, Report, ReportError

if TYPE_CHECKING:
    import pandas

#: environment key -> label in messages
ENVIRONMENT = {
    "pytest_masc": "pytest-masc", "torch": "torch", "transformers": "transformers", "device": "device",
    "dtype": "dtype", "attention": "attention",
}
REWRITE = ("rewrite it with this pytest-masc: pytest --masc --masc-baseline=FILE --masc-update-baseline, or "
           "python -m pytest_masc.report merge RUN.json --write-baseline=FILE")


@dataclass
class Side:
    """One side of a comparison: its name, records (a run) or baseline dict, environment and canary scores."""

    name: str
    records: Optional[list[Record]] = None
    baseline: Optional[dict[str, Any]] = None
    environment: dict[str, Any] = field(default_factory=dict)
    canary: Optional[dict[str, Any]] = None

    def table(self, other: "Side", concepts: Optional[set[str]] = None) -> dict[str, list[Any]]:
        if self.records is not None:
            return records_table(self.records, self.name, concepts)
        return baseline_table(self.baseline or {}, self.name, other.records or (), concepts)

    def concepts(self) -> set[str]:
        if self.records is not None:
            return {f"{r.suite}::{r.concept}" for r in self.records if r.error is None}
        return {f"{row.get('suite')}::{row.get('concept')}" for row in baseline_rows(self.baseline or {})}


def report_side(report: Report, name: str) -> Side:
    """A loaded report as a side (its environment and canary scores, when recorded)."""
    return Side(name, records=list(report.records), environment=dict(report.environment or {}), canary=report.canary)


def baseline_side(baseline: dict[str, Any], name: str) -> Side:
    """A baseline dict as a side; :class:`ReportError` for one with per-concept means only (version 1, 2)."""
    if not baseline_rows(baseline) and baseline.get("version") in (1, 2):
        raise ReportError(
            f"{name}: baseline version {baseline.get('version')} holds per-concept means only, too old for the "
            f"statistical comparison; {REWRITE}"
        )
    return Side(name, baseline=baseline, environment=dict(baseline.get("environment") or {}),
                canary=baseline.get("canary"))


def load_side(source: Union[PathLike, Report, dict]) -> Side:
    """A run file, a baseline file, a :class:`Report` or a baseline dict as a :class:`Side`;
    :class:`ReportError` naming the file when it is neither, unreadable or too old."""
    from .baseline import checked_baseline
    from .format import report_from_json

    if isinstance(source, Report):
        return report_side(source, "<report>")
    if isinstance(source, dict):
        return baseline_side(source, "<baseline>")
    path = Path(source)
    data = read_json(path, "file")
    if isinstance(data, dict) and "records" in data and "concepts" not in data:
        report = report_from_json(data, path)
        if report.format < FORMAT:
            raise ReportError(
                f"{path}: --masc-json format {report.format} records no run settings; compare runs of format "
                f"{FORMAT} or later (re-run with this pytest-masc)"
            )
        return report_side(report, str(path))
    if isinstance(data, dict) and "version" in data:
        return baseline_side(checked_baseline(data, path), str(path))
    raise ReportError(f"{path}: neither a --masc-json run file nor a pytest-masc baseline")


# --------------------------------------------------------------------------- the canary


@dataclass
class CanaryDrift:
    """How the metric itself moved between two environments: ``changes`` (label, before, after),
    and per metric the mean absolute change of the canary's scores (``drift``; empty when a side
    did not score the canary, ``missing`` says which)."""

    changes: list[tuple[str, str, str]]
    drift: dict[str, float] = field(default_factory=dict)
    missing: str = ""

    def between(self) -> str:
        return ", ".join(f"{label} {old} and {new}" for label, old, new in self.changes)

    def line(self) -> str:
        if not self.drift:
            return (f"environment differs ({self.between()}); the canary was not scored {self.missing}, so the "
                    "metric's own drift is unknown")
        moved = " and ".join(f"{value:.4f} {metric}" for metric, value in self.drift.items())
        return f"the metric itself moved by {moved} on the canary between {self.between()}"


def environment_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(label, before, after)`` for each environment key both sides record with different values."""
    return [(label, str(before[key]), str(after[key])) for key, label in ENVIRONMENT.items()
            if before.get(key) is not None and after.get(key) is not None and before[key] != after[key]]


def canary_drift(before: Side, after: Side) -> Optional[CanaryDrift]:
    """The canary's drift when the environments differ (None when they do not, or one is unknown)."""
    changes = environment_changes(before.environment, after.environment)
    if not changes:
        return None
    sides = [(s.name, (s.canary or {}).get("scores")) for s in (before, after)]
    absent = [name for name, scores in sides if not scores]
    if absent:
        return CanaryDrift(changes, missing="in " + " and ".join(absent))
    old, new = sides[0][1], sides[1][1]
    drift = {}
    for metric in METRICS:
        pairs = [(a, b) for a, b in zip(old.get(metric) or [], new.get(metric) or []) if a is not None and b is not None]
        if pairs:
            drift[metric] = sum(abs(b - a) for a, b in pairs) / len(pairs)
    return CanaryDrift(changes, drift, "" if drift else "with matching items")


def apply_drift(result: ReleaseComparison, drift: Optional[CanaryDrift]) -> ReleaseComparison:
    """``regressed`` rows whose drop is within the canary's drift of their metric become
    ``inconclusive`` (failing only with ``require_noninferior``), with the reason in ``note``."""
    if drift is None or not drift.drift:
        return result
    rows = []
    for row in result.rows:
        moved = drift.drift.get(row.metric)
        if row.verdict == VERDICTS[0] and moved is not None and -row.delta <= moved:
            row = dataclasses.replace(
                row, verdict=VERDICTS[2], failed=result.require_noninferior, cases_needed=None,
                note=(f"the drop {-row.delta:.4f} is within the metric's own drift {moved:.4f} {row.metric} "
                      f"between {drift.between()}: not the model, or not only"),
            )
        rows.append(row)
    return dataclasses.replace(result, rows=tuple(rows))


# --------------------------------------------------------------------------- the comparison


@dataclass
class Comparison:
    """A release comparison: ``result`` (one row per suite, concept and metric), the sides'
    names, the concepts on one side only, and the canary's drift (None: same environment)."""

    result: ReleaseComparison
    before: str
    after: str
    only_before: list[str] = field(default_factory=list)
    only_after: list[str] = field(default_factory=list)
    canary: Optional[CanaryDrift] = None

    @property
    def rows(self) -> tuple[RowComparison, ...]:
        return self.result.rows

    @property
    def failed(self) -> bool:
        return self.result.failed

    def frame(self) -> "pandas.DataFrame":
        """One row per (suite, concept, metric): ``n_cases, delta, low, high, verdict, cases_needed, failed`` and more."""
        return self.result.frame()

    def as_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, **self.result.as_dict(),
                "only_before": self.only_before, "only_after": self.only_after,
                "canary": dataclasses.asdict(self.canary) if self.canary else None}


def compare_sides(before: Side, after: Side, *, concepts: Optional[set[str]] = None, max_drop: float = 0.02,
                  confidence: float = 0.95, require_noninferior: bool = False, n_resamples: int = 2000,
                  seed: int = 0) -> Comparison:
    """Compare two sides over the concepts both hold (``concepts``: these only)."""
    shared = before.concepts() & after.concepts()
    if concepts is not None:
        shared &= set(concepts)
    if not shared:
        raise ReportError(f"{before.name} and {after.name} share no concept with scored cases: nothing to compare")
    try:
        result = compare_cases(before.table(after, shared), after.table(before, shared), max_drop=max_drop,
                               confidence=confidence, n_resamples=n_resamples, seed=seed,
                               require_noninferior=require_noninferior)
    except ReportError:
        raise
    except ValueError as error:
        raise ReportError(f"{before.name} vs {after.name}: {error}") from None
    drift = canary_drift(before, after)
    return Comparison(apply_drift(result, drift), before.name, after.name,
                      sorted(before.concepts() - after.concepts()), sorted(after.concepts() - before.concepts()), drift)


def compare(before: Union[PathLike, Report, dict], after: Union[PathLike, Report, dict], *, max_drop: float = 0.02,
            confidence: float = 0.95, require_noninferior: bool = False, n_resamples: int = 2000,
            seed: int = 0) -> Comparison:
    """Compare two releases (module doc): each a ``--masc-json`` file (format 2 or later), a
    baseline file (version 3 or later), a loaded report or a baseline dict.

    Returns a :class:`Comparison`: per (suite, concept, metric) ``n_cases``, ``delta`` (after
    minus before), ``[low, high]`` (``confidence`` bootstrap-t interval), ``verdict``
    (regressed, non-inferior, inconclusive), ``cases_needed`` and ``failed``; ``.frame()``.
    :class:`ReportError` names the file that cannot be used.
    """
    return compare_sides(load_side(before), load_side(after), max_drop=max_drop, confidence=confidence,
                         require_noninferior=require_noninferior, n_resamples=n_resamples, seed=seed)


# --------------------------------------------------------------------------- text


def _signed(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.4f}"


def interval_text(row: RowComparison) -> str:
    """``-0.0123 [-0.0200, -0.0050]`` (``-`` for an undefined bound)."""
    return f"{_signed(row.delta)} [{_signed(row.low)}, {_signed(row.high)}]"


def _cases_text(rows: list[RowComparison]) -> str:
    cases = max(r.n_cases for r in rows)
    seeds = max((r.seeds for r in rows if math.isfinite(r.seeds)), default=1.0)
    return f"{cases} x {seeds:g}"


def table_lines(result: ReleaseComparison) -> list[str]:
    """The comparison as a text table: one line per concept, delta [CI] and verdict for each metric."""
    by_concept: dict[tuple[str, str], list[RowComparison]] = {}
    for row in result.rows:
        by_concept.setdefault((row.suite, row.concept), []).append(row)
    metrics = list(dict.fromkeys(row.metric for row in result.rows))
    percent = f"{result.confidence * 100:g}%"
    header = ["concept", "cases x seeds"] + [part for m in metrics for part in (f"{m} delta [{percent} CI]", "verdict")]
    table = [header]
    for (suite, concept), rows in by_concept.items():
        cells = {row.metric: row for row in rows}
        table.append([f"{suite}::{concept}", _cases_text(rows)] + [
            part for m in metrics for part in ((interval_text(cells[m]), cells[m].verdict) if m in cells else ("-", "-"))
        ])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    return [lines[0], "  " + "  ".join("-" * w for w in widths)] + lines[1:]


def row_finding(row: RowComparison, result: ReleaseComparison) -> str:
    """What failed in a failed row, after its ``REGRESSION`` or ``INCONCLUSIVE`` label."""
    key, percent = f"{row.suite}::{row.concept}", f"{result.confidence * 100:g}%"
    if row.verdict == VERDICTS[0]:
        return (f"{key}: mean {row.metric} dropped {format_against(-row.delta, [result.max_drop])}, more than max_drop {result.max_drop:g} "
                f"({percent} CI of the change [{_signed(row.low)}, {_signed(row.high)}], {row.n_cases} cases, "
                f"Holm-adjusted p {row.adjusted_p:.2g})")
    return f"{key}: {row.metric} {inconclusive_reason(row, result)}"


def inconclusive_reason(row: RowComparison, result: ReleaseComparison) -> str:
    """Why an inconclusive row is neither regressed nor non-inferior, and what would decide it."""
    if row.note:
        return f"{interval_text(row)}: {row.note}"
    seeds = row.seeds if math.isfinite(row.seeds) else 1.0
    decide = (f"about {row.cases_needed} cases (prompts) x {seeds:g} seed(s) = {math.ceil(row.cases_needed * seeds)} "
              "images per release would decide it at the observed variance" if row.cases_needed
              else "too few cases to say how many would decide it")
    return (f"{interval_text(row)} over {row.n_cases} cases neither shows a drop beyond {result.max_drop:g} nor "
            f"rules one out; {decide}")


def comparison_lines(comparison: Comparison, require_option: str) -> list[str]:
    """The table, the canary's drift, and a warning per inconclusive row that passes."""
    result = comparison.result
    lines = table_lines(result)
    if comparison.canary is not None:
        lines.append(f"  {comparison.canary.line()}")
    for row in result.with_verdict(VERDICTS[2]):
        if not row.failed:
            lines.append(f"  WARNING inconclusive {row.suite}::{row.concept} {row.metric}: "
                         f"{inconclusive_reason(row, result)} (passes; {require_option} fails it)")
    return lines


__all__ = ["Comparison", "CanaryDrift", "ENVIRONMENT", "Side", "apply_drift", "baseline_side", "canary_drift",
           "compare", "compare_sides", "comparison_lines", "environment_changes", "interval_text", "load_side",
           "report_side", "row_finding", "table_lines"]
