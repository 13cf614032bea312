"""pytest-html integration: the MaSC summary (tables, the release comparison and its forest plot) in the HTML report, each failing case's panel in its row.

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


_STYLE = (
    "<style>.masc-summary table{border-collapse:collapse;margin:6px 0 12px;font-size:12px}"
    ".masc-summary th,.masc-summary td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    ".masc-summary td.masc-key,.masc-summary th.masc-key{text-align:left}"
    ".masc-summary td.masc-fail{background:#f9d6d5;color:#c0392b;font-weight:bold}"
    ".masc-summary td.masc-regressed{color:#c02626}.masc-summary td.masc-non-inferior{color:#228b3c}"
    ".masc-summary td.masc-inconclusive{color:#b87400}</style>"
)


def _cell(value: Any, css: str = "") -> str:
    return f'<td class="{css}">{html.escape(str(value))}</td>' if css else f"<td>{html.escape(str(value))}</td>"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def concept_table_html(rows: list[dict[str, Any]]) -> str:
    """The per-suite/concept table; a pass count short of the cases is marked ``masc-fail``."""
    head = "".join(f'<th class="{"masc-key" if i < 2 else ""}">{name}</th>' for i, name in enumerate(
        ("suite", "concept", "cases", "pass", "mean CP", "min CP", "mean PF", "min margin")))
    body = "".join(
        "<tr>" + _cell(row["suite"], "masc-key") + _cell(row["concept"], "masc-key") + _cell(row["cases"])
        + _cell(row["passed"], "masc-fail" if row["passed"] < row["cases"] else "")
        + "".join(_cell(_number(row[key])) for key in ("mean_concept", "min_concept", "mean_prompt", "min_margin"))
        + "</tr>"
        for row in rows
    )
    return f'<table class="masc-concepts"><tr>{head}</tr>{body}</table>'


def comparison_table_html(result: Any) -> str:
    """The release comparison: per concept, delta [CI] and verdict of each metric; a failing
    row's cells are marked ``masc-fail``, each verdict cell has its verdict's class."""
    from ..report.release import interval_text

    metrics = list(dict.fromkeys(row.metric for row in result.rows))
    percent = f"{result.confidence * 100:g}%"
    head = '<th class="masc-key">concept</th><th>cases</th>' + "".join(
        f"<th>{m} delta [{percent} CI]</th><th>{m} verdict</th>" for m in metrics)
    by_concept: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        by_concept.setdefault(f"{row.suite}::{row.concept}", {})[row.metric] = row
    body = ""
    for key, cells in by_concept.items():
        body += "<tr>" + _cell(key, "masc-key") + _cell(max(r.n_cases for r in cells.values()))
        for metric in metrics:
            row = cells.get(metric)
            if row is None:
                body += _cell("-") + _cell("-")
                continue
            fail = " masc-fail" if row.failed else ""
            body += _cell(interval_text(row), fail.strip()) + _cell(row.verdict, f"masc-{row.verdict}{fail}")
        body += "</tr>"
    return f'<table class="masc-comparison"><tr>{head}</tr>{body}</table>'


def summary_html(config: pytest.Config) -> str:
    """The MaSC summary as an HTML block (empty when there is nothing to show): the concept
    table and the baseline comparison as tables (failing cells marked), the forest plot, then
    the rest of the summary as text."""
    from ..report import concept_thresholds, table_lines
    from ..report.release import table_lines as comparison_lines
    from .terminal import summary_lines

    state = config.stash[SESSION_KEY]
    lines = summary_lines(state)
    if not lines:
        return ""
    report, evaluation = state.finished
    reasons = evaluation.session_reasons
    failed = "".join(f'<li>{html.escape(reason)}</li>' for reason in reasons)
    banner = (
        '<p class="masc-failed" style="color:#c0392b;font-weight:bold">MaSC session gates failed '
        f"(exit status 1):</p><ul class=\"masc-failed\" style=\"color:#c0392b\">{failed}</ul>"
    ) if reasons else ""
    rows = evaluation.summary["concepts"]
    tables, shown = concept_table_html(rows) if rows else "", set(table_lines(rows, concept_thresholds(report.records))) if rows else set()
    comparison = evaluation.baseline
    if comparison is not None and comparison.release is not None:
        tables += f"<h3>Baseline comparison ({html.escape(comparison.path)})</h3>"
        tables += comparison_table_html(comparison.release.result)
        shown |= set(comparison_lines(comparison.release.result))
        if comparison.plot and Path(comparison.plot).is_file():
            content = base64.b64encode(Path(comparison.plot).read_bytes()).decode("ascii")
            tables += f'<p><img class="masc-forest" alt="forest plot" src="data:image/png;base64,{content}"></p>'
    text = html.escape("\n".join(line for line in lines if line not in shown))
    return (
        f'<div class="masc-summary">{_STYLE}<h2>MaSC summary</h2>' + banner + tables
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
