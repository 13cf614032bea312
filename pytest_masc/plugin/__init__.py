"""pytest-masc's entry module (the ``pytest11`` entry point): the part that is on in every
pytest run. It adds the options and markers, checks the ini keys and option values, warns
about ``--masc-* VALUE`` written with a space, collects a suite file named on the command
line without ``--masc`` and skips the MaSC tests then ("pass --masc"). Under ``--masc`` it
registers :class:`~.gates_plugin.MascGatesPlugin`, whose hooks run the gates, and
unregisters it in ``pytest_unconfigure``. Session state lives on ``config.stash[SESSION_KEY]``.

Nothing here imports torch or transformers: they load when a gate first needs the model.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ..suite import is_suite_file
from .collect import MascCaseItem, MascProtocolItem, MascSuiteFile, refuse_shared_suite_names
from .fixtures import masc, masc_model, masc_segmenter  # noqa: F401  (fixtures the plugin provides)
from .gates_plugin import GATES_PLUGIN, MascGatesPlugin
from .markers import GATES_OFF, register_markers, validate_marker
from .options import Settings, add_options, values_taken_as_test_paths
from .session import SESSION_KEY, MascSession

#: the warnings for ``--masc-* VALUE`` written with a space, printed when the session starts
SPACED_VALUES_KEY: "pytest.StashKey[list[str]]" = pytest.StashKey()
# True when the command line left pytest-xdist's --dist at its default (read before xdist
# turns ``-n N`` into ``--dist load``): only then does pytest-masc pick the scheduler.
DIST_LEFT_AT_DEFAULT = pytest.StashKey[bool]()


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
    if settings.enabled:
        gates = MascGatesPlugin(config, state, dist_left_at_default=config.stash.get(DIST_LEFT_AT_DEFAULT, False))
        config.pluginmanager.register(gates, GATES_PLUGIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    gates = config.pluginmanager.get_plugin(GATES_PLUGIN)
    if gates is not None:
        config.pluginmanager.unregister(gates)


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


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """Without ``--masc``: a suite file named on the command line or in ``testpaths``, whose
    cases are then skipped ("pass --masc"). With it the gates plugin collects every suite file."""
    if parent.config.stash[SESSION_KEY].settings.enabled:
        return None
    if is_suite_file(file_path) and parent.session.isinitpath(file_path):
        return MascSuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]):
    """Before every other implementation (-k and the like, and the gates plugin's count): one
    error for suite names shared by several suites, whatever the selection; the markers
    checked; and without ``--masc`` the MaSC tests marked to skip."""
    refuse_shared_suite_names(session, items)
    skip = None if config.stash[SESSION_KEY].settings.enabled else pytest.mark.skip(reason=GATES_OFF)
    for item in items:
        if item.get_closest_marker("masc") is not None:
            problem = validate_marker(item)
            if problem:
                raise pytest.UsageError(problem)
        elif not isinstance(item, (MascCaseItem, MascProtocolItem)):
            continue
        if skip is not None:
            item.add_marker(skip)
    return (yield)
