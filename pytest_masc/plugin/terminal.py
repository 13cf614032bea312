"""End of a session (controller or single process): baselines, suite-level gates, JSON, summary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import MascSession


def _summary(state: "MascSession") -> dict[str, Any]:
    """Summary statistics (per-concept table, agreement with humans), computed once per session."""
    if state.summary is not None:
        return state.summary
    from ..report import concept_table, human_agreement

    records = state.sorted_records()
    scored = [r for r in records if r.error is None]
    state.summary = {"concepts": concept_table(records), "agreement": human_agreement(scored), "suites": {}}
    for suite_name in sorted({r.suite for r in scored}):
        members = [r for r in scored if r.suite == suite_name]
        if any(r.human for r in members):
            state.summary["suites"][suite_name] = {"agreement": human_agreement(members)}
    return state.summary


def _check_suite_gates(state: "MascSession", summary: dict[str, Any]) -> list[str]:
    findings = []
    labels = {"min_alpha_concept": "concept", "min_alpha_prompt": "prompt"}
    for suite_name, gates in sorted(state.suite_gates.items()):
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


def finish_session(state: "MascSession") -> bool:
    """Compare or write the baseline, check suite-level gates, write JSON. True: fail the session."""
    from ..report import compare_baseline, read_baseline, write_baseline, write_json

    settings = state.settings
    records = state.sorted_records()
    failed = False
    if settings.baseline is not None and records:
        if settings.update_baseline:
            write_baseline(settings.baseline, records, state.worker_runs)
            state.baseline_written = settings.baseline
        else:
            try:
                baseline = read_baseline(settings.baseline)
            except ValueError as error:
                state.baseline_findings.append(f"ERROR cannot compare: {error}")
            else:
                state.baseline_findings.extend(
                    f"REGRESSION {finding}" for finding in compare_baseline(baseline, records, settings.max_drop)
                )
            failed = failed or bool(state.baseline_findings)
    summary = _summary(state)
    state.suite_findings.extend(_check_suite_gates(state, summary))
    summary["suite_findings"] = list(state.suite_findings)
    summary["baseline_regressions"] = list(state.baseline_findings)
    summary["protocols"] = list(state.protocol_tables)
    failed = failed or bool(state.suite_findings)
    if settings.json is not None:
        write_json(settings.json, records, state.worker_runs, summary)
    return failed


def summary_lines(state: "MascSession") -> list[str]:
    """The terminal summary: run line, per-concept table, agreement, regressions."""
    from ..report import format_summary

    records = state.sorted_records()
    if not records and not state.worker_runs and not state.protocol_tables:
        return []
    summary = _summary(state)
    lines = format_summary(records, state.worker_runs, summary["agreement"])
    if state.baseline_written is not None:
        lines.append(f"baseline written to {state.baseline_written} ({len(records)} cases)")
    elif state.settings.baseline is not None:
        if state.baseline_findings:
            lines.append(f"baseline check against {state.settings.baseline} failed:")
            lines += [f"  {finding}" for finding in state.baseline_findings]
        else:
            lines.append(f"baseline {state.settings.baseline}: no concept dropped more than {state.settings.max_drop:g}")
    for table in state.protocol_tables:
        lines.append(f"protocol {table['kind']} ({table['suite']}):")
        lines += [f"  {line}" for line in table["table"].splitlines()]
    for finding in state.suite_findings:
        lines.append(f"SUITE GATE FAILED {finding}")
    errors = [r for r in records if r.error]
    if errors:
        lines.append(f"{len(errors)} case(s) could not be scored (see errors above)")
    if any(r.failures for r in records):
        failing = sum(1 for r in records if r.failures)
        lines.append(f"{failing} case(s) below their gates")
    return lines
