"""pytest-html integration: the MaSC summary in the HTML report, each failing case's panel in its row.

Active with ``--masc`` when pytest-html is installed and ``--html`` is given. Panels are the
``--masc-artifacts`` PNGs; without that option they are written to ``masc-panels/`` beside
the HTML report. They are embedded as pytest-html image extras (inline with
``--self-contained-html``, else copied to the report's ``assets/``).
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import pytest

from .verdict import plain_nodeid
from .session import SESSION_KEY

PANEL_DIRECTORY = "masc-panels"


def install(config: pytest.Config) -> None:
    """Register the hooks when pytest-html writes a report; default the panel directory."""
    html_path = config.getoption("htmlpath", None) if config.pluginmanager.hasplugin("html") else None
    if not html_path:
        return
    state = config.stash[SESSION_KEY]
    if state.settings.artifacts is None:
        report = Path(os.path.expandvars(html_path)).expanduser()
        if not report.is_absolute():
            report = Path(config.invocation_params.dir) / report
        state.settings.artifacts = report.parent / PANEL_DIRECTORY
    config.pluginmanager.register(MascHtml(config), "masc-html")


def panel_extras(config: pytest.Config, item: pytest.Item) -> list[dict[str, Any]]:
    """pytest-html image extras: the panel of each failing check of ``item``."""
    from pytest_html import extras

    nodeid = plain_nodeid(item)
    found = []
    for record in config.stash[SESSION_KEY].records:
        if record.nodeid != nodeid or record.passed or not record.panel or not Path(record.panel).is_file():
            continue
        content = base64.b64encode(Path(record.panel).read_bytes()).decode("ascii")
        found.append(extras.png(content, name=f"MaSC panel: {record.suite} / {record.case_id}"))
    return found


def summary_html(config: pytest.Config) -> str:
    """The MaSC summary as an HTML block (empty when there is nothing to show)."""
    from .terminal import summary_lines

    state = config.stash[SESSION_KEY]
    lines = summary_lines(state)
    if not lines:
        return ""
    reasons = state.finished[1].session_reasons if state.finished else []
    failed = "".join(
        f'<li>{html.escape(reason)}</li>' for reason in reasons
    )
    banner = (
        '<p class="masc-failed" style="color:#c0392b;font-weight:bold">MaSC session gates failed '
        f"(exit status 1):</p><ul class=\"masc-failed\" style=\"color:#c0392b\">{failed}</ul>"
    ) if reasons else ""
    text = html.escape("\n".join(lines))
    return (
        '<div class="masc-summary"><h2>MaSC summary</h2>' + banner
        + f'<pre style="font-size:12px;line-height:1.35;overflow-x:auto">{text}</pre></div>'
    )


class MascHtml:
    """The pytest-html hooks, registered by :func:`install`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" and report.failed:
            found = panel_extras(self.config, item)
            if found:
                report.extras = list(getattr(report, "extras", [])) + found

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix, summary, postfix, session) -> None:
        block = summary_html(self.config)
        if block:
            postfix.append(block)
