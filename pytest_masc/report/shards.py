"""Merging the reports of one run's shards into one report, refusing shards that are not of one run."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from .model import EXIT_NAMES, FORMAT, Report, ReportError, case_key, node_file, record_order, shard_sources
from .settings import setting_differences


def merge(reports: Sequence[Report]) -> Report:
    """One report from shards of one run: records, runs and suite gates joined.

    Refused (:class:`ReportError` naming the files and values) when the shards used another
    checkpoint, dtype or patch budget, declare different gates for one suite, give one suite
    name to two suite files, share a case, or are format 1 (their suite-level gates are unknown).
    """
    if not reports:
        raise ReportError("no reports to merge")
    for report in reports:
        if report.format < FORMAT or report.suite_gates is None:
            raise ReportError(
                f"{shard_sources(report)}: --masc-json format {report.format} records no run settings or suite-level "
                f"gates, so it cannot be merged; re-run that shard with this pytest-masc (format {FORMAT})"
            )
    first = reports[0]
    for report in reports[1:]:
        differences = setting_differences(first.settings, report.settings)
        if differences:
            labels = ", ".join(label for label, _, _ in differences)
            sides = (
                f"{shard_sources(first)}: {', '.join(old for _, old, _ in differences)}; "
                f"{shard_sources(report)}: {', '.join(new for _, _, new in differences)}"
            )
            raise ReportError(f"shards from different runs refused: they differ in {labels} ({sides})")
    settings = dict(first.settings)
    if settings.get("dtype") is None:  # a first shard that loaded no model: dtype from another
        settings["dtype"] = next((r.settings["dtype"] for r in reports if r.settings.get("dtype") is not None), None)
    suite_gates = _merged_suite_gates(reports)
    collected = _merged_collected(reports)
    owners: dict[str, str] = {}
    for report in reports:
        for record in report.records:
            key = case_key(record)
            if key in owners:
                raise ReportError(f"shards overlap: case {key} is in {owners[key]} and in {shard_sources(report)}")
            owners[key] = shard_sources(report)
    return Report(
        records=sorted((r for report in reports for r in report.records), key=record_order),
        runs=[run for report in reports for run in report.runs],
        settings=settings,
        suite_gates=suite_gates,
        protocols=[table for report in reports for table in report.protocols],
        protocol_findings=[finding for report in reports for finding in report.protocol_findings],
        exitstatus=_worst_exit([report.exitstatus for report in reports]),
        shards=[shard for report in reports for shard in report.shards],
        shard_findings=[f for f in map(shard_finding, reports) if f],
        collected=collected,
        environment=next((dict(r.environment) for r in reports if r.environment), {}),
        canary=next((r.canary for r in reports if r.canary), None),
    )


def _merged_suite_gates(reports: Sequence[Report]) -> dict[str, dict[str, float]]:
    suite_gates: dict[str, dict[str, float]] = {}
    gate_source: dict[str, str] = {}
    for report in reports:
        for suite, gates in (report.suite_gates or {}).items():
            if suite in suite_gates and suite_gates[suite] != gates:
                raise ReportError(
                    f"shards refused: suite {suite!r} has gates {suite_gates[suite]} in {gate_source[suite]} "
                    f"but {gates} in {shard_sources(report)}"
                )
            suite_gates[suite] = dict(gates)
            gate_source.setdefault(suite, shard_sources(report))
    return suite_gates


def _merged_collected(reports: Sequence[Report]) -> dict[str, dict[str, Any]]:
    """The shards' ``collected`` joined. Refused: one suite name from two suite files (their
    records would pool into one concept table and one alpha), or one suite file collected
    differently (it changed between the shards)."""
    files: dict[str, dict[str, str]] = {}  # suite -> file -> first source
    for report in reports:
        for suite, entry in report.collected.items():
            files.setdefault(suite, {}).setdefault(str(entry.get("file")), shard_sources(report))
        for record in report.records:
            if record.kind == "suite":
                files.setdefault(record.suite, {}).setdefault(node_file(record.nodeid), shard_sources(report))
    for suite, sources in sorted(files.items()):
        if len(sources) > 1:
            (file_a, source_a), (file_b, source_b) = list(sources.items())[:2]
            raise ReportError(
                f"shards refused: suite {suite!r} comes from two suite files, {file_a} ({source_a}) and "
                f"{file_b} ({source_b}); suites of one run need distinct names (rename one)"
            )
    collected: dict[str, dict[str, Any]] = {}
    collected_source: dict[str, str] = {}
    for report in reports:
        for suite, entry in report.collected.items():
            if suite in collected and collected[suite] != entry:
                raise ReportError(
                    f"shards refused: suite {suite!r} ({entry.get('file')}) was collected as {_collected_text(collected[suite])} "
                    f"in {collected_source[suite]} but as {_collected_text(entry)} in {shard_sources(report)}: "
                    "the suite file changed between the shards"
                )
            collected[suite] = dict(entry)
            collected_source.setdefault(suite, shard_sources(report))
    return collected


def _collected_text(entry: dict[str, Any]) -> str:
    concepts = ", ".join(f"{name} {count}" for name, count in sorted(entry.get("concepts", {}).items()))
    rated = ", ".join(f"{key} {count}" for key, count in sorted(entry.get("rated", {}).items()))
    return f"cases per concept ({concepts}), rated cases ({rated})"


def _worst_exit(statuses: Iterable[Optional[int]]) -> Optional[int]:
    known = [s for s in statuses if s is not None]
    failing = [s for s in known if s not in (0, 5)]
    return failing[0] if failing else (0 if 0 in known else (known[0] if known else None))


def shard_finding(report: Report) -> Optional[str]:
    """Why a shard fails a merge although its MaSC cases and protocol gates passed, if it does:
    pytest itself failed there (a test outside MaSC, a collection error, an interruption)."""
    status = report.exitstatus
    if status in (None, 0, 5) or report.protocol_findings or any(not r.passed for r in report.records):
        return None
    return f"{shard_sources(report)}: pytest exited with status {status} ({EXIT_NAMES.get(status, 'failed')}) although its MaSC cases passed"
