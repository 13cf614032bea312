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
    lines += segmenter_lines(state.worker_runs)
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


def segmenter_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One line on the masks the ``--masc-segmenter`` computed, over every process that loaded it."""
    loaded = [run["segmenter"] for run in runs if run.get("segmenter", {}).get("loaded")]
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
