"""Comparing a run with a baseline: per-concept drops of mean CP and PF, and baseline concepts the run left out."""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..gates import format_against
from .baseline import read_baseline
from .frame import as_frame, scored_rows
from .model import PYTEST_FLAGS, Flags, PathLike, ReportError, number_text
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
            result.mismatch = mismatch_text(path, differences)
            if not allow_mismatch:
                result.error = f"cannot compare: {result.mismatch} (pass {flags.allow_mismatch} to compare anyway)"
                return result
    current = {f"{row['suite']}::{row['concept']}": row for row in concept_table(scored_rows(as_frame(data)))}
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
                    f"baseline {old:.4f} (allowed {number_text(max_drop)})"
                )
    if not result.compared:
        result.error = f"nothing compared: {path} shares no concept with this run"
    return result



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

