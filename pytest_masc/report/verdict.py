"""The verdict of a report: its statistics, suite-level gates and baseline check, and whether the run fails."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..gates import Record
from .baseline import BaselineUpdate
from .baseline_check import DEFAULT_MAX_DROP, BaselineComparison, check_baseline
from .frame import case_rows, records_frame, scored_rows
from .model import PYTEST_FLAGS, Flags, PathLike, Report
from .release import report_side
from .suite_gates import suite_gate_finding, suite_gate_results
from .summary import concept_table, human_agreement, rated_mask


@dataclass
class Evaluation:
    """The verdict of a report: summary statistics, suite-level gates, the baseline check, and
    the baseline written from it (``baseline_update``, set by whoever writes it)."""

    summary: dict[str, Any]
    alpha_findings: list[str]
    protocol_findings: list[str]
    baseline: Optional[BaselineComparison]
    failed_cases: int  # cases (a case's seeds count once) below their gates
    errored_cases: int  # cases with a seed that could not be scored (not also counted as failed)
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
        inconclusive = len(baseline.inconclusive) if baseline else 0
        if inconclusive:
            parts.append((inconclusive, "MaSC baseline comparison" + ("s" if inconclusive > 1 else "") + " inconclusive"))
        if self.alpha_findings:
            parts.append((len(self.alpha_findings), "MaSC suite gate" + ("s" if len(self.alpha_findings) > 1 else "") + " failed"))
        return parts


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
        for r in records if r.error is None and r.subject and r.diagnostics is not None and not r.diagnostics.subject_found
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
    require_noninferior: bool = False,
) -> Evaluation:
    """Statistics and verdict of ``report``, with the baseline at ``baseline`` when given
    (``baseline_skip``: baseline concepts the run may leave out; ``require_noninferior``: an
    inconclusive comparison fails too). The plugin and ``merge`` both judge here."""
    frame = records_frame(report.records)
    cases = case_rows(frame)  # counts, alpha and means are over cases: a case's seeds are one case
    scored = scored_rows(cases)  # a case with an unscorable seed is not scored (its mean is not formed)
    summary: dict[str, Any] = {
        "concepts": concept_table(cases), "agreement": human_agreement(scored, n_resamples), "suites": {},
    }
    for suite_name in sorted(set(scored["suite"])):
        members = scored[scored["suite"] == suite_name]
        if rated_mask(members["human.concept"]).any() or rated_mask(members["human.prompt"]).any():
            summary["suites"][suite_name] = {"agreement": human_agreement(members, n_resamples)}
    gate_results = suite_gate_results(report.suite_gates or {}, cases, summary, report.collected)
    comparison = None
    if baseline is not None and report.records:
        comparison = check_baseline(
            baseline, frame, report.settings, max_drop, allow_mismatch=allow_mismatch, flags=flags, skip=baseline_skip,
            require_noninferior=require_noninferior, run=report_side(report, "this run"),
        )
    evaluation = Evaluation(
        summary=summary, alpha_findings=[f for f in map(suite_gate_finding, gate_results) if f],
        protocol_findings=list(report.protocol_findings), baseline=comparison,
        failed_cases=int((cases["verdict"] == "failed").sum()), errored_cases=int((cases["verdict"] == "error").sum()),
        shard_findings=list(report.shard_findings), suite_gates=gate_results,
        errors=_error_lines(report.records), subject_notes=_subject_notes(report.records),
    )
    summary["suite_gates"] = gate_results
    summary["suite_findings"] = evaluation.suite_findings
    summary["baseline_regressions"] = comparison.findings if comparison else []
    summary["baseline"] = comparison.as_dict() if comparison else None
    summary["protocols"] = list(report.protocols)
    return evaluation
