"""The hooks that run MaSC gates: :class:`MascGatesPlugin`, registered as a plugin object by
the entry module's ``pytest_configure`` only under ``--masc`` (as pytest's junitxml registers
its ``LogXML``) and unregistered in ``pytest_unconfigure``. Its hooks never ask whether the
gates are on: without ``--masc`` it is not there.

Nothing here imports torch or transformers: they load when a gate first needs the model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from ..suite import is_suite_file
from .collect import MascCaseItem, MascProtocolItem, MascSuiteFile
from .fixtures import seeded_case_failure, unchecked_reason
from .html_report import install as install_html_report
from .masks import SessionSegmenter
from .session import MascSession
from .terminal import SessionGateReport, closing_counts, finish_session, summary_lines

#: the name the plugin object is registered under (``config.pluginmanager.get_plugin(GATES_PLUGIN)``)
GATES_PLUGIN = "masc-gates"
MASC_ITEMS_KEY = "masc_items_collected"  # in an xdist worker's workeroutput
NOTHING_TO_GATE = (
    "masc: --masc collected nothing to gate. pytest-masc collects suite files named masc_*.toml "
    "(under testpaths or the paths given), tests marked @pytest.mark.masc, and the protocol of "
    "--masc-protocol."
)


class MascGatesPlugin:
    """The ``--masc`` hooks of one pytest process (controller, worker or single process):
    protocol item, report header, xdist scheduling and worker hand-off, the check that a marked
    test called ``masc.check()``, the session's end and the terminal summary.

    ``dist_left_at_default``: the command line left pytest-xdist's ``--dist`` at its default (read
    before xdist turns ``-n N`` into ``--dist load``); only then does pytest-masc pick the scheduler.
    """

    def __init__(self, config: pytest.Config, state: MascSession, *, dist_left_at_default: bool) -> None:
        settings = state.settings
        if settings.update_baseline and settings.baseline is None:
            raise pytest.UsageError("--masc-update-baseline needs --masc-baseline=PATH to write to")
        workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
        if settings.update_baseline and isinstance(workers, int) and workers > 1 and not hasattr(config, "workerinput"):
            raise pytest.UsageError(
                f"--masc-update-baseline is refused with {workers} xdist workers: write baselines with -n 0 or -n 1"
            )
        self.config = config
        self.state = state
        self.dist_left_at_default = dist_left_at_default
        # MaSC items (suite cases, @pytest.mark.masc tests, protocols) collected; None until
        # known (an xdist controller collects nothing and learns it from its workers)
        self.masc_items: Optional[int] = None
        if settings.segmenter is not None:  # loads when the first mask is needed
            state.segmenter = SessionSegmenter(settings.segmenter, threshold=settings.segmenter_threshold,
                                               dtype=settings.model_options.dtype, device=state.device)
        install_html_report(config)  # pytest-html with --html: MaSC summary and failure panels in the report

    # -- configuration and collection

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        settings, options = self.state.settings, self.state.settings.model_options
        return [
            f"masc: model {options.model}, device {options.device or 'auto'}, dtype {options.dtype or 'auto'}, "
            f"{options.max_num_patches} patches"
        ] + ([f"masc: missing masks segmented with {settings.segmenter.kind} ({settings.segmenter.model})"]
             if settings.segmenter is not None else [])

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> Optional[MascSuiteFile]:
        """Every suite file (``masc_*.toml`` and the like) under the paths collected."""
        if not is_suite_file(file_path):
            return None
        return MascSuiteFile.from_parent(parent, path=file_path)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        """Append the ``--masc-protocol`` item and count the MaSC items, before -k and the like
        deselect any (the entry module's wrapper has checked markers and suite names already)."""
        protocol = self.state.settings.protocol
        if protocol:
            items.append(MascProtocolItem.from_parent(
                session, name=f"masc-protocol-{protocol.kind}",
                protocol=protocol, suite_name=protocol.kind, suite_gates={},
            ))
        self.masc_items = sum(
            1 for item in items
            if item.get_closest_marker("masc") is not None or isinstance(item, (MascCaseItem, MascProtocolItem))
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """pytest-xdist controller: with --dist left at its default, schedule one test file at a
        time (xdist's ``LoadFileScheduling``, what ``--dist loadfile`` uses), so each suite file's
        cases run on one worker and its images are encoded once. An explicit --dist is left alone."""
        if not self.dist_left_at_default or config.getoption("dist", None) != "load":
            return None
        from xdist.scheduler import LoadFileScheduling

        return LoadFileScheduling(config, log)

    # -- running

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        """Fail a ``@pytest.mark.masc`` test that passed without calling ``masc.check()``, or
        whose seeded checks fail their gates on the mean over the seeds."""
        result = yield
        reason = unchecked_reason(item) or seeded_case_failure(item)
        if reason:
            pytest.fail(reason, pytrace=False)
        return result

    # -- the session's end

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: hand records to the controller
            workeroutput.update(self.state.worker_output())
            workeroutput[MASC_ITEMS_KEY] = str(self.masc_items or 0)
            return
        if finish_session(self.state, exitstatus):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist controller: collect a worker's records and run metadata."""
        output = getattr(node, "workeroutput", None) or {}
        self.state.merge_worker_output(output)
        if MASC_ITEMS_KEY in output:  # every worker collects the same items
            self.masc_items = max(self.masc_items or 0, int(output[MASC_ITEMS_KEY]))

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        if self.masc_items == 0:
            terminalreporter.write_line(NOTHING_TO_GATE)
        lines = summary_lines(self.state)
        if lines:
            terminalreporter.write_sep("=", "MaSC summary")
            for line in lines:
                terminalreporter.write_line(line)
        for count, noun in closing_counts(self.state):  # pytest's last line: "3 passed, 1 MaSC baseline regression"
            terminalreporter.stats.setdefault(noun, []).extend(SessionGateReport(noun) for _ in range(count))


__all__ = ["GATES_PLUGIN", "MASC_ITEMS_KEY", "MascGatesPlugin", "NOTHING_TO_GATE"]
