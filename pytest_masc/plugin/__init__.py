"""pytest-masc hooks and options. Session state lives on ``config.stash[SESSION_KEY]``.

Nothing here imports torch or transformers: they load when a gate first needs the model.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .fixtures import GATES_OFF, MARKER_KWARGS, masc, masc_model, masc_segmenter, validate_marker  # noqa: F401  (fixtures)
from .collect import MascCaseItem, MascSuiteFile
from .session import OPTIONS, SESSION_KEY, MascSession, Settings

XDIST_GROUP_PREFIX = "masc-suite:"
METAVARS = {
    "model": "ID_OR_DIR", "revision": "REV", "device": "DEVICE", "dtype": "DTYPE", "max_patches": "N",
    "batch_size": "N", "json": "PATH", "baseline": "PATH", "max_drop": "FLOAT", "artifacts": "DIR",
    "protocol": "KIND=ROOT[,...]", "baselines": "clip,dino",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("masc", "MaSC release gates (pytest-masc)")
    group.addoption("--masc", action="store_true", default=False,
                    help="run MaSC gates: masc-marked tests and masc_*.toml suite files")
    for name, (ini, _kind, default, help_text) in OPTIONS.items():
        flag = "--masc-" + name.replace("_", "-")
        metavar = METAVARS.get(name, name.upper())
        shown_default = f"; default: {default}" if default is not None else ""
        group.addoption(flag, dest=f"masc_{name}", default=None, metavar=metavar,
                        help=f"{help_text} (ini: {ini}{shown_default})")
        parser.addini(ini, help=help_text, default=None)
    group.addoption("--masc-update-baseline", dest="masc_update_baseline", action="store_true", default=False,
                    help="write this run's per-case and per-concept scores to the --masc-baseline file")
    group.addoption("--masc-allow-baseline-mismatch", dest="masc_allow_baseline_mismatch", action="store_true",
                    default=False, help="compare against a baseline made with another model, revision, dtype or "
                    "patch budget, with a warning (default: refused)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"masc({', '.join(MARKER_KWARGS)}): a MaSC gate; runs with --masc",
    )
    config.addinivalue_line("markers", "masc_suite: a case collected from a masc_*.toml suite file")
    settings = Settings.from_config(config)
    config.stash[SESSION_KEY] = MascSession(config=config, settings=settings)
    if not settings.enabled:
        return
    if settings.update_baseline and settings.baseline is None:
        raise pytest.UsageError("--masc-update-baseline needs --masc-baseline PATH to write to")
    from .html_report import install as install_html

    install_html(config)  # pytest-html with --html: MaSC summary and failure panels in the report
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    if isinstance(workers, int) and workers > 1 and not hasattr(config, "workerinput"):
        if settings.update_baseline:
            raise pytest.UsageError(
                f"--masc-update-baseline is refused with {workers} xdist workers: write baselines with -n 0 or -n 1"
            )
        if config.getoption("dist", "no") == "load":
            config.option.dist = "loadgroup"  # keep each suite file on one worker: one batch per suite


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SESSION_KEY].settings
    if not settings.enabled:
        return []
    return [
        f"masc: model {settings.model}, device {settings.device or 'auto'}, dtype {settings.dtype or 'auto'}, "
        f"{settings.max_patches} patches"
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if not parent.config.stash[SESSION_KEY].settings.enabled:
        return None
    from ..suite.toml import is_suite_file

    if is_suite_file(file_path):
        return MascSuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    enabled = config.stash[SESSION_KEY].settings.enabled
    skip = pytest.mark.skip(reason=GATES_OFF)
    grouped = enabled and config.pluginmanager.hasplugin("xdist")
    protocol = config.stash[SESSION_KEY].settings.protocol
    if enabled and protocol:
        from .protocol_item import MascProtocolItem

        items.append(MascProtocolItem.from_parent(
            session, name=f"masc-protocol-{protocol['kind']}",
            protocol=protocol, suite_name=protocol["kind"], suite_gates={},
        ))
    for item in items:
        if item.get_closest_marker("masc") is not None:
            problem = validate_marker(item)
            if problem:
                raise pytest.UsageError(problem)
            if not enabled:
                item.add_marker(skip)
        if grouped and isinstance(item, MascCaseItem):
            item.add_marker(pytest.mark.xdist_group(name=f"{XDIST_GROUP_PREFIX}{item.path.name}"))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[SESSION_KEY]
    if not state.settings.enabled:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand records to the controller
        workeroutput["masc_records"] = json.dumps([r.as_dict() for r in state.records])
        workeroutput["masc_run"] = json.dumps(state.run_metadata() if state.model_loaded else {})
        workeroutput["masc_suite_gates"] = json.dumps(state.suite_gates)
        workeroutput["masc_protocols"] = json.dumps(state.protocol_tables)
        workeroutput["masc_findings"] = json.dumps(state.suite_findings)
        return
    if state.model_loaded:
        state.worker_runs.append(state.run_metadata())
    from .terminal import finish_session

    if finish_session(state, exitstatus):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: collect a worker's records and run metadata."""
    output = getattr(node, "workeroutput", None) or {}
    state = node.config.stash[SESSION_KEY]
    if "masc_records" not in output:
        return
    from ..gates import Record

    state.records.extend(Record.from_dict(r) for r in json.loads(output["masc_records"]))
    state.suite_gates.update(json.loads(output.get("masc_suite_gates") or "{}"))
    state.protocol_tables.extend(json.loads(output.get("masc_protocols") or "[]"))
    state.suite_findings.extend(json.loads(output.get("masc_findings") or "[]"))
    run = json.loads(output.get("masc_run") or "{}")
    if run:
        state.worker_runs.append(run)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[SESSION_KEY]
    if not state.settings.enabled or hasattr(config, "workerinput"):
        return
    from .terminal import summary_lines

    lines = summary_lines(state)
    if lines:
        terminalreporter.write_sep("=", "MaSC summary")
        for line in lines:
            terminalreporter.write_line(line)
    from .terminal import SessionGateReport, closing_counts

    for count, noun in closing_counts(state):  # pytest's last line: "3 passed, 1 MaSC baseline regression"
        terminalreporter.stats.setdefault(noun, []).extend(SessionGateReport(noun) for _ in range(count))
