"""End of a session (controller or single process): baselines, suite-level gates, JSON, the
summary; and the one-line progress bar shown while a batch is scored.

The statistics, the verdict and the text come from :mod:`pytest_masc.report`; this module
builds its :class:`~pytest_masc.report.Report` from the session.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ..report import Report
    from .session import MascSession


def session_report(state: "MascSession", exitstatus: Optional[int] = None) -> "Report":
    """The session's records, run metadata, settings and suite gates as a report."""
    from ..report import Report, run_settings

    settings = state.settings
    return Report(
        records=state.sorted_records(),
        runs=list(state.worker_runs),
        settings=run_settings(
            state.worker_runs, model=settings.model, revision=settings.revision,
            dtype=settings.dtype, max_num_patches=settings.max_patches,
        ),
        suite_gates={name: dict(gates) for name, gates in state.suite_gates.items()},
        protocols=list(state.protocol_tables),
        protocol_findings=list(state.suite_findings),  # before the session end: protocol items only
        exitstatus=None if exitstatus is None else int(exitstatus),
        shards=[{"source": str(settings.json) if settings.json else None, "exitstatus": exitstatus,
                 "cases": len(state.records)}],
    )


def finish_session(state: "MascSession", exitstatus: Optional[int] = None) -> bool:
    """Compare or write the baseline, check suite-level gates, write JSON. True: fail the session."""
    from ..report import evaluate, write_baseline, write_json

    settings = state.settings
    if state.model_loaded or state.ray_scored:
        state.worker_runs.append(state.run_metadata())
    report = session_report(state, exitstatus)
    compare = settings.baseline is not None and not settings.update_baseline
    evaluation = evaluate(
        report, baseline=settings.baseline if compare else None, max_drop=settings.max_drop,
        allow_mismatch=settings.allow_baseline_mismatch,
    )
    if settings.baseline is not None and settings.update_baseline and report.records:
        write_baseline(settings.baseline, report.records, report.runs, report.settings)
        state.baseline_written = settings.baseline
    state.finished = (report, evaluation)
    if settings.json is not None:
        write_json(settings.json, report, evaluation)
    return bool(evaluation.session_reasons)


def summary_lines(state: "MascSession") -> list[str]:
    """The terminal summary: run line, per-concept table, agreement, baseline, suite gates."""
    from ..report import summary_lines as report_lines

    if state.finished is None or (not state.records and not state.worker_runs and not state.protocol_tables):
        return []
    report, evaluation = state.finished
    lines = report_lines(report, evaluation, baseline_written=state.baseline_written)
    notes = subject_absent_lines(state.sorted_records())
    return lines[:1] + segmenter_lines(state.worker_runs) + lines[1:] + notes  # segmenter after the run line


def closing_counts(state: "MascSession") -> list[tuple[int, str]]:
    """Session-level failures for pytest's last line (``1 MaSC baseline regression``)."""
    if state.finished is None:
        return []
    return state.finished[1].counts()


class SessionGateReport:
    """Stands in ``terminalreporter.stats`` for one failed session-level gate, so that pytest's
    closing line counts it next to the tests (as pytest-rerunfailures counts reruns)."""

    nodeid = ""
    when = "sessionfinish"
    outcome = "failed"
    count_towards_summary = True

    def __init__(self, reason: Any) -> None:
        self.longrepr = str(reason)


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
