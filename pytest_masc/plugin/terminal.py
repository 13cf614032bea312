"""What the plugin writes on the terminal: the MaSC summary at the end of a session and a
one-line progress bar while a batch is scored. The numbers come from :mod:`pytest_masc.report`."""
from __future__ import annotations

from typing import Any

from ..report import format_summary
from .session import MascSession


def summary_lines(state: MascSession) -> list[str]:
    """The terminal summary: run line, per-concept table, agreement, regressions."""
    records = state.sorted_records()
    if not records and not state.worker_runs and not state.protocol_tables:
        return []
    summary = state.statistics()
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
    lines += subject_absent_lines(records)
    for finding in state.suite_findings:
        lines.append(f"SUITE GATE FAILED {finding}")
    errors = [r for r in records if r.error]
    if errors:
        lines.append(f"{len(errors)} case(s) could not be scored (see errors above)")
    if any(r.failures for r in records):
        failing = sum(1 for r in records if r.failures)
        lines.append(f"{failing} case(s) below their gates")
    return lines


def subject_absent_lines(records: list) -> list[str]:
    """A note naming each scored case whose subject does not occur in its prompt: nothing was
    stripped, so its PF also scores the subject's words (passing cases say it only here)."""
    absent = [r for r in records if r.error is None and r.subject and r.extras.get("subject_found") is False]
    if not absent:
        return []
    lines = [f"note: in {len(absent)} case(s) the subject does not occur in the prompt, so nothing was stripped for PF:"]
    lines += [f"  {r.suite} / {r.case_id}: subject {r.subject!r}, prompt {r.prompt!r}" for r in absent]
    return lines


class ProgressLine:
    """A one-line progress bar on an interactive terminal; silent elsewhere (CI, xdist workers)."""

    def __init__(self, config: Any, label: str) -> None:
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.label = label
        self.active = bool(
            self.reporter is not None and getattr(self.reporter, "isatty", False)
            and not getattr(config, "workerinput", None)
        )
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if not self.active or total <= 0:
            return
        width = 24
        filled = int(width * done / total)
        self.reporter.write(f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
        self.reporter.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.reporter.write("\r" + " " * 80 + "\r")
