"""Comparing a run with a baseline: the release comparison per concept and metric (:mod:`.release`),
the point rule for baselines holding per-concept means only (versions 1, 2), and baseline concepts the run left out."""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..gates import format_against
from ..stats.compare import VERDICTS
from .baseline import read_baseline
from .cases import as_records, baseline_rows
from .frame import as_frame, case_rows, scored_rows
from .model import PYTEST_FLAGS, Flags, PathLike, ReportError, number_text
from .release import REWRITE, Comparison, Side, compare_sides, comparison_lines, row_finding
from .settings import CHECKPOINT, SETTINGS, mismatch_text, setting_differences
from .summary import concept_table

DEFAULT_MAX_DROP = 0.02


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
    """What a baseline check compared and found. ``failed``: a regression (or, with
    ``require_noninferior``, an inconclusive row), a baseline concept missing from the run
    (unless skipped), or nothing comparable. ``release``: the case-by-case comparison of the
    concepts whose baseline holds per-case scores; ``point_rule``: concepts compared by their
    means only (a baseline of version 1 or 2)."""

    path: str
    max_drop: float
    compared: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)  # failing inconclusive rows (require_noninferior)
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
    flags: Flags = PYTEST_FLAGS
    release: Optional[Comparison] = None
    point_rule: list[str] = field(default_factory=list)
    version: Any = None
    plot: Optional[str] = None  # the forest plot's PNG, where one was written

    @property
    def findings(self) -> list[str]:
        """The failure lines (empty when the check passed)."""
        return (
            ([f"ERROR {self.error}"] if self.error else [])
            + [f"REGRESSION {r}" for r in self.regressions]
            + [f"INCONCLUSIVE {r}" for r in self.inconclusive]
            + [f"MISSING {key}: in the baseline, not in this run" for key in self.missing]
        )

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    def _head(self) -> str:
        if self.failed:
            return f"baseline check against {self.path} failed:"
        compared = f"{len(self.compared)} concept{'s' if len(self.compared) != 1 else ''} compared"
        if self.release is None:
            return f"baseline {self.path}: no concept dropped more than {self.max_drop:g} ({compared})"
        return (f"baseline {self.path}: no concept regressed by more than {self.max_drop:g} ({compared}, case by case: "
                "paired by case, seeds averaged)")

    def lines(self) -> list[str]:
        """The summary lines of this check."""
        lines = [self._head()] + ([f"  {f}" for f in self.findings] if self.failed else [])
        if self.release is not None:
            lines += comparison_lines(self.release, self.flags.require_noninferior)
        if self.plot:
            lines.append(f"  forest plot: {self.plot}")
        if self.missing:
            lines.append(
                "  a concept left out of a run can hide its regression: run its cases, or leave it out on purpose "
                f"with {self.flags.baseline_skip}={','.join(self.missing)}"
            )
        if self.mismatch and self.allowed_mismatch:
            lines.append(f"  WARNING {self.mismatch}: compared anyway")
        if self.only_in_run:
            lines.append(f"  not in the baseline, not compared: {', '.join(self.only_in_run)}")
        if self.skipped:
            lines.append(f"  skipped as asked, not in this run: {', '.join(self.skipped)}")
        if self.unmatched_skip:
            lines.append(f"  note: {self.flags.baseline_skip} names no concept of the baseline: {', '.join(self.unmatched_skip)}")
        if self.unchecked:
            lines.append(f"  note: the baseline (version 1) records no {' or '.join(self.unchecked)}: not checked")
        if self.legacy_model is not None:
            lines.append(
                f"  note: the baseline (version {self.legacy_model}) names its model without a checkpoint "
                "fingerprint: matched by name and directory"
            )
        if self.point_rule:
            lines.append(
                f"  note: the baseline (version {self.version}) holds per-concept means only, too old for the statistical "
                f"comparison: {', '.join(self.point_rule)} compared by the point rule (a mean that dropped more than "
                f"{self.max_drop:g} fails, whatever the noise); {REWRITE.replace('FILE', self.path, 1)}"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("release", "flags")}
        return {**data, "release": self.release.as_dict() if self.release else None}


def _point_rule(result: BaselineComparison, before_all: dict[str, Any], current: dict[str, dict[str, Any]],
                keys: Sequence[str], max_drop: float) -> None:
    """Per-concept means of a baseline without per-case scores: a mean that dropped more than ``max_drop`` fails."""
    for key in keys:
        before, now = before_all[key], current[key]
        for score, column, label in (("concept", "mean_concept", "CP"), ("prompt", "mean_prompt", "PF")):
            old, new = before.get(score), now[column]
            if old is None:
                continue
            if new is None:
                result.regressions.append(f"{key}: mean {label} is now NaN (baseline {old:.4f})")
            elif old - new > max_drop:
                result.regressions.append(
                    f"{key}: mean {label} {new:.4f} dropped {format_against(old - new, [max_drop])} below the "
                    f"baseline {old:.4f} (allowed {number_text(max_drop)})"
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
    require_noninferior: bool = False,
    run: Optional[Side] = None,
    n_resamples: int = 2000,
) -> BaselineComparison:
    """Compare a run (records or frame) with a baseline.

    Concepts whose baseline holds per-case scores (version 3 or later) get the release
    comparison (:func:`pytest_masc.report.release.compare_sides`: regressed fails, inconclusive
    fails with ``require_noninferior``); the others the point rule on the means. ``run``: the run
    as a side (its environment and canary scores), else built from ``data``. A baseline made with
    other ``settings`` (checkpoint, dtype, patch budget) is refused unless ``allow_mismatch``;
    sharing no concept with the run is an error, and so is a baseline concept the run leaves out,
    unless ``skip`` (``fnmatch`` patterns over ``SUITE::CONCEPT``) names it. Messages name the
    options of the tool in use (``flags``).
    """
    result = BaselineComparison(path=str(path), max_drop=max_drop, allowed_mismatch=allow_mismatch, flags=flags,
                                version=baseline.get("version"))
    if settings is not None:
        if baseline.get("version") == 1:
            result.unchecked = [SETTINGS[key] for key in ("dtype", "max_num_patches") if key not in baseline]
        if CHECKPOINT not in baseline and settings.get(CHECKPOINT):
            result.legacy_model = baseline.get("version")
        differences = setting_differences(baseline, settings)
        if differences:
            result.mismatch = mismatch_text(path, differences)
            if not allow_mismatch:
                result.error = f"cannot compare: {result.mismatch} (pass {flags.allow_mismatch} to compare anyway)"
                return result
    records = run.records if run is not None and run.records is not None else as_records(data)
    current = {f"{row['suite']}::{row['concept']}": row for row in concept_table(scored_rows(case_rows(as_frame(records))))} if records else {}
    before_all = baseline["concepts"]
    result.only_in_run = sorted(set(current) - set(before_all))
    result.only_in_baseline = sorted(set(before_all) - set(current))
    result.skipped = [key for key in result.only_in_baseline if any(fnmatch.fnmatchcase(key, p) for p in skip)]
    result.missing = [key for key in result.only_in_baseline if key not in result.skipped]
    result.unmatched_skip = [p for p in skip if not any(fnmatch.fnmatchcase(key, p) for key in before_all)]
    result.compared = sorted(set(current) & set(before_all))
    if not result.compared:
        result.error = f"nothing compared: {path} shares no concept with this run"
        return result
    with_cases = {f"{row.get('suite')}::{row.get('concept')}" for row in baseline_rows(baseline)}
    statistical = [key for key in result.compared if key in with_cases]
    result.point_rule = [key for key in result.compared if key not in with_cases]
    _point_rule(result, before_all, current, result.point_rule, max_drop)
    if statistical:
        before = Side(str(path), baseline=baseline, environment=dict(baseline.get("environment") or {}),
                      canary=baseline.get("canary"))
        after = run if run is not None else Side("run", records=records)
        try:
            result.release = compare_sides(before, after, concepts=set(statistical), max_drop=max_drop,
                                           require_noninferior=require_noninferior, n_resamples=n_resamples)
        except ReportError as error:
            result.error = f"cannot compare: {error}"
            return result
        for row in result.release.rows:
            if row.failed:
                (result.regressions if row.verdict == VERDICTS[0] else result.inconclusive).append(
                    row_finding(row, result.release.result))
    return result


def check_baseline(
    path: PathLike, data: Any, settings: dict[str, Any], max_drop: float, *,
    allow_mismatch: bool = False, flags: Flags = PYTEST_FLAGS, skip: Sequence[str] = (),
    require_noninferior: bool = False, run: Optional[Side] = None,
) -> BaselineComparison:
    """Read the baseline at ``path`` and compare; an unreadable file is the comparison's error."""
    try:
        baseline = read_baseline(path, flags)
    except ReportError as error:
        return BaselineComparison(path=str(path), max_drop=max_drop, error=f"cannot compare: {error}", flags=flags)
    return compare_baseline(
        baseline, data, max_drop, settings=settings, path=path, allow_mismatch=allow_mismatch, flags=flags, skip=skip,
        require_noninferior=require_noninferior, run=run,
    )
