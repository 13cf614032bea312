"""pytest-masc's hooks (the ``pytest11`` entry point). Session state lives on
``config.stash[SESSION_KEY]``; the work is in the modules of this package.

Nothing here imports torch or transformers: they load when a gate first needs the model.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ..suite import is_suite_file
from .collect import MascCaseItem, MascProtocolItem, MascSuiteFile, refuse_shared_suite_names
from .fixtures import masc, masc_model, masc_segmenter  # noqa: F401  (fixtures the plugin provides)
from .fixtures import unchecked_reason
from .markers import GATES_OFF, register_markers, validate_marker
from .masks import SessionSegmenter
from .options import Settings, add_options, values_taken_as_test_paths
from .session import SESSION_KEY, MascSession
from .html_report import install as install_html_report
from .terminal import SessionGateReport, closing_counts, finish_session, summary_lines

#: the warnings for ``--masc-* VALUE`` written with a space, printed when the session starts
SPACED_VALUES_KEY: "pytest.StashKey[list[str]]" = pytest.StashKey()
# True when the command line left pytest-xdist's --dist at its default (read before xdist
# turns ``-n N`` into ``--dist load``): only then does pytest-masc pick the scheduler.
DIST_LEFT_AT_DEFAULT = pytest.StashKey[bool]()
# How many MaSC items (suite cases, ``@pytest.mark.masc`` tests, protocols) were collected;
# None until known (an xdist controller learns it from its workers).
MASC_ITEMS_COLLECTED = pytest.StashKey[int]()
MASC_ITEMS_KEY = "masc_items_collected"  # in an xdist worker's workeroutput
NOTHING_TO_GATE = (
    "masc: --masc collected nothing to gate. pytest-masc collects suite files named masc_*.toml "
    "(under testpaths or the paths given), tests marked @pytest.mark.masc, and the protocol of "
    "--masc-protocol."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)
    spaced = config.stash[SPACED_VALUES_KEY] = values_taken_as_test_paths(config)
    try:
        settings = Settings.from_config(config)
    except pytest.UsageError as error:
        if not spaced:
            raise
        raise pytest.UsageError("\n".join([str(error), *(f"note: {message}" for message in spaced)])) from None
    state = config.stash[SESSION_KEY] = MascSession(config=config, settings=settings)
    if not settings.enabled:
        return
    if settings.segmenter is not None:  # loads when the first mask is needed
        state.segmenter = SessionSegmenter(settings.segmenter, threshold=settings.segmenter_threshold,
                                           dtype=settings.dtype, device=state.device)
    if settings.update_baseline and settings.baseline is None:
        raise pytest.UsageError("--masc-update-baseline needs --masc-baseline=PATH to write to")
    install_html_report(config)  # pytest-html with --html: MaSC summary and failure panels in the report
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    if isinstance(workers, int) and workers > 1 and not hasattr(config, "workerinput"):
        if settings.update_baseline:
            raise pytest.UsageError(
                f"--masc-update-baseline is refused with {workers} xdist workers: write baselines with -n 0 or -n 1"
            )


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """Note whether --dist was left at its default, before pytest-xdist's own hook turns plain
    ``-n N`` into ``--dist load`` (a wrapper runs before every plain implementation)."""
    config.stash[DIST_LEFT_AT_DEFAULT] = (
        config.getoption("dist", None) == "no" and not config.getoption("distload", False)
    )
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session):
    """Before anything is collected, under the header (rootdir, configfile): the
    ``--masc-* VALUE`` written with a space (:func:`values_taken_as_test_paths`)."""
    result = yield
    config = session.config
    if hasattr(config, "workerinput"):
        return result
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for message in config.stash.get(SPACED_VALUES_KEY, []):
        if reporter is not None:
            reporter.write_line(f"pytest-masc warning: {message}", yellow=True, bold=True)
        else:
            sys.stderr.write(f"pytest-masc warning: {message}\n")
    return result


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist controller: with --masc and --dist left at its default, schedule one test file
    at a time (xdist's ``LoadFileScheduling``, what ``--dist loadfile`` uses), so each suite file's
    cases run on one worker and its images are encoded once. An explicit --dist is left alone."""
    if not config.stash[SESSION_KEY].settings.enabled or not config.stash.get(DIST_LEFT_AT_DEFAULT, False):
        return None
    if config.getoption("dist", None) != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    return LoadFileScheduling(config, log)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SESSION_KEY].settings
    if not settings.enabled:
        return []
    return [
        f"masc: model {settings.model}, device {settings.device or 'auto'}, dtype {settings.dtype or 'auto'}, "
        f"{settings.max_patches} patches"
    ] + ([f"masc: missing masks segmented with {settings.segmenter.kind} ({settings.segmenter.model})"]
         if settings.segmenter is not None else [])


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """Suite files with ``--masc``; without it only a suite file named on the command line or
    in ``testpaths``, whose cases are then skipped ("pass --masc")."""
    if not is_suite_file(file_path):
        return None
    if parent.config.stash[SESSION_KEY].settings.enabled or parent.session.isinitpath(file_path):
        return MascSuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    refuse_shared_suite_names(session, items)  # before -k and the like: the same error for any selection
    settings = config.stash[SESSION_KEY].settings
    skip = pytest.mark.skip(reason=GATES_OFF)
    masc_items = 0
    if settings.enabled and settings.protocol:
        items.append(MascProtocolItem.from_parent(
            session, name=f"masc-protocol-{settings.protocol.kind}",
            protocol=settings.protocol, suite_name=settings.protocol.kind, suite_gates={},
        ))
    for item in items:
        if item.get_closest_marker("masc") is not None:
            masc_items += 1
            problem = validate_marker(item)
            if problem:
                raise pytest.UsageError(problem)
            if not settings.enabled:
                item.add_marker(skip)
        elif isinstance(item, (MascCaseItem, MascProtocolItem)):
            masc_items += 1
            if not settings.enabled:
                item.add_marker(skip)
    config.stash[MASC_ITEMS_COLLECTED] = masc_items


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail a ``@pytest.mark.masc`` test that passed without calling ``masc.check()``."""
    result = yield
    reason = unchecked_reason(item)
    if reason:
        pytest.fail(reason, pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[SESSION_KEY]
    if not state.settings.enabled:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand records to the controller
        workeroutput.update(state.worker_output())
        workeroutput[MASC_ITEMS_KEY] = str(config.stash.get(MASC_ITEMS_COLLECTED, 0))
        return
    if finish_session(state, exitstatus):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: collect a worker's records and run metadata."""
    output = getattr(node, "workeroutput", None) or {}
    node.config.stash[SESSION_KEY].merge_worker_output(output)
    if MASC_ITEMS_KEY in output:  # every worker collects the same items
        known = node.config.stash.get(MASC_ITEMS_COLLECTED, 0)
        node.config.stash[MASC_ITEMS_COLLECTED] = max(known, int(output[MASC_ITEMS_KEY]))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[SESSION_KEY]
    if not state.settings.enabled or hasattr(config, "workerinput"):
        return
    if config.stash.get(MASC_ITEMS_COLLECTED, None) == 0:
        terminalreporter.write_line(NOTHING_TO_GATE)
    lines = summary_lines(state)
    if lines:
        terminalreporter.write_sep("=", "MaSC summary")
        for line in lines:
            terminalreporter.write_line(line)
    for count, noun in closing_counts(state):  # pytest's last line: "3 passed, 1 MaSC baseline regression"
        terminalreporter.stats.setdefault(noun, []).extend(SessionGateReport(noun) for _ in range(count))
