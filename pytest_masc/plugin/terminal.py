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
    """The session's records, run metadata, settings, suite gates and collected suites as a report."""
    from ..metric.identity import checkpoint_identity
    from ..report import Report, run_settings

    settings, options = state.settings, state.settings.model_options
    requested = None  # what the options name, where no process loaded the model to say what it is
    if not any(run.get("checkpoint") for run in state.worker_runs):
        requested = checkpoint_identity(options.model, options.revision, base=state.config.invocation_params.dir)
    return Report(
        records=state.sorted_records(),
        runs=list(state.worker_runs),
        settings=run_settings(state.worker_runs, **options.recorded(), checkpoint=requested),
        suite_gates={name: dict(gates) for name, gates in state.suite_gates.items()},
        protocols=list(state.protocol_tables),
        protocol_findings=list(state.suite_findings),  # before the session end: protocol items only
        exitstatus=None if exitstatus is None else int(exitstatus),
        shards=[{"source": str(settings.json) if settings.json else None, "exitstatus": exitstatus,
                 "cases": len(state.records)}],
        collected={name: dict(entry) for name, entry in state.collected.items()},
        environment=next((dict(run["environment"]) for run in state.worker_runs if run.get("environment")), {}),
    )


def _canary_needed(state: "MascSession", report: "Report", compare: bool) -> bool:
    """Whether this run needs the canary's scores: to write a baseline, to compare with a
    baseline that holds canary scores from another environment, or for its ``--masc-json`` (so
    that a merge of shards can check the drift)."""
    from ..report import ReportError, read_baseline
    from ..report.release import environment_changes

    settings = state.settings
    if not report.records or not (state.model_loaded or state.worker_runs):
        return False
    if settings.update_baseline or (settings.json is not None and state.model_loaded):
        return True
    if not compare:
        return False
    try:
        baseline = read_baseline(settings.baseline)
    except ReportError:
        return False  # the comparison reports it
    return bool(baseline.get("canary")) and bool(environment_changes(baseline.get("environment") or {}, report.environment))


def session_canary(state: "MascSession", report: "Report", compare: bool) -> Optional[dict]:
    """The canary's scores: sent by a worker, scored here before, or scored now when needed
    (with the session's model, loaded here if no process of this session has it); None when
    not needed or the model cannot load."""
    from ..errors import MaSCError

    if state.canary is not None or not _canary_needed(state, report, compare):
        return state.canary
    try:
        state.model()
    except (MaSCError, ValueError, RuntimeError):
        return None
    return state.session_canary()


def finish_session(state: "MascSession", exitstatus: Optional[int] = None) -> bool:
    """Compare or update the baseline, check suite-level gates, write JSON. True: fail the session.
    Scores the metric-drift canary when a baseline is written, or compared across environments;
    with ``--masc-artifacts`` writes the comparison's forest plot there.

    ``--masc-update-baseline`` writes what this run scored in full into the baseline and keeps
    the rest (:func:`pytest_masc.report.update_baseline`); a failing run writes nothing."""
    from ..report import evaluate, update_baseline, write_json

    settings = state.settings
    if state.model_loaded or state.ray_scored:
        state.worker_runs.append(state.run_metadata())
    report = session_report(state, exitstatus)
    compare = settings.baseline is not None and not settings.update_baseline
    report.canary = session_canary(state, report, compare)
    if report.canary and not report.environment:
        report.environment = dict(report.canary["environment"])
    evaluation = evaluate(
        report, baseline=settings.baseline if compare else None, max_drop=settings.max_drop,
        allow_mismatch=settings.allow_baseline_mismatch, baseline_skip=settings.baseline_skip,
        require_noninferior=settings.require_noninferior,
    )
    if settings.baseline is not None and settings.update_baseline and report.records:
        evaluation.baseline_update = update_baseline(settings.baseline, report, evaluation)
    comparison = evaluation.baseline
    if settings.artifacts is not None and comparison is not None and comparison.release is not None:
        from ..report.forest import FILE_NAME, write_forest_plot

        comparison.plot = str(write_forest_plot(settings.artifacts / FILE_NAME, comparison.release.result,
                                                f"MaSC release comparison: this run vs {settings.baseline}"))
    state.finished = (report, evaluation)
    if settings.json is not None:
        write_json(settings.json, report, evaluation)
    return bool(evaluation.session_reasons)


def summary_lines(state: "MascSession") -> list[str]:
    """The terminal summary (:func:`pytest_masc.report.summary_lines`, which a merge of the
    session's ``--masc-json`` prints too)."""
    from ..report import summary_lines as report_lines

    if state.finished is None or (not state.records and not state.worker_runs and not state.protocol_tables):
        return []
    return report_lines(*state.finished)


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
