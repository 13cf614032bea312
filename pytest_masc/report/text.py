"""The report as text: the run and segmenter lines, the concept table, agreement, suite gates, the MaSC summary and the closing line."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ..gates import Record, format_against
from .model import Report, number_text
from .suite_gates import over_text
from .verdict import Evaluation


def _fmt(value: Optional[float], digits: int = 3, thresholds: Sequence[float] = ()) -> str:
    return "-" if value is None else format_against(value, thresholds, digits)


def segmenter_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line on the masks the ``--masc-segmenter`` computed, over every process that loaded it."""
    loaded = [run["segmenter"] for run in runs if (run.get("segmenter") or {}).get("loaded")]
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


def _run_lines(runs: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    """The model line, the segmenter's line, the encode counts."""
    if not runs:
        return []
    encoded = sum(int(r.get("images_encoded", 0)) for r in runs)
    cached = sum(int(r.get("images_cached", 0)) for r in runs)
    seconds = sum(float(r.get("encode_seconds", 0.0)) for r in runs)
    devices = sorted({str(r.get("device")) for r in runs if r.get("device")})
    first = runs[0]
    return [
        f"model {settings.get('model') or first.get('model')} (revision {settings.get('revision') or 'default'}), "
        f"device {', '.join(devices) or 'not loaded'}, dtype {settings.get('dtype') or first.get('dtype', '-')}, "
        f"{settings.get('max_num_patches') or first.get('max_num_patches', '-')} patches",
        *segmenter_lines(runs),
        f"images encoded {encoded}, served from cache {cached}, encode time {seconds:.1f} s"
        + (f" over {len(runs)} processes" if len(runs) > 1 else ""),
    ]


def concept_thresholds(records: Sequence[Record]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """``(suite, concept) -> {gate: thresholds}``: the distinct ``min_concept`` and
    ``min_prompt_margin`` thresholds of each concept's cases, which its min columns are read against."""
    thresholds: dict[tuple[str, str], dict[str, set[float]]] = {}
    for record in records:
        entry = thresholds.setdefault((record.suite, record.concept), {"min_concept": set(), "min_prompt_margin": set()})
        for gate, values in entry.items():
            if gate in record.gates:
                values.add(float(record.gates[gate]))
    return {key: {gate: sorted(values) for gate, values in entry.items()} for key, entry in thresholds.items()}


def table_lines(rows: Sequence[dict[str, Any]],
                thresholds: Optional[dict[tuple[str, str], dict[str, list[float]]]] = None) -> list[str]:
    """The per-suite/concept table as aligned text. With ``thresholds`` (:func:`concept_thresholds`)
    the min columns show as many decimals as it takes to fall on the same side of every gate of
    the concept's cases as the score does."""
    if not rows:
        return []
    header = ("suite", "concept", "cases", "pass", "mean CP", "min CP", "mean PF", "min margin")
    table = [header]
    for row in rows:
        gates = (thresholds or {}).get((row["suite"], row["concept"]), {})
        table.append((
            row["suite"], row["concept"], str(row["cases"]), str(row["passed"]),
            _fmt(row["mean_concept"]), _fmt(row["min_concept"], thresholds=gates.get("min_concept", ())),
            _fmt(row["mean_prompt"]), _fmt(row["min_margin"], thresholds=gates.get("min_prompt_margin", ())),
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, row in enumerate(table):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _agreement_lines(agreement: dict[str, dict[str, Any]]) -> list[str]:
    if not agreement:
        return []
    lines = ["agreement with human ratings, all suites pooled (Krippendorff's alpha, interval; 95% bootstrap CI):"]
    for key, entry in agreement.items():
        ci = entry["ci"]
        lines.append(f"  {key:<15} {_fmt(entry['alpha'], 2)} [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]  ({entry['units']} cases)")
    return lines


def suite_gate_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """Each suite's ``min_alpha_*`` gate with the alpha it was judged on (passing ones too)."""
    if not results:
        return []
    width = max(len(r["suite"]) for r in results)
    lines = ["suite-level gates (each suite's Krippendorff's alpha vs humans; 95% bootstrap CI):"]
    for r in results:
        head = f"  {r['suite']:<{width}}  {r['gate']} {number_text(r['minimum'])}"
        if r["alpha"] is not None:
            low, high = r["ci"]
            alpha = format_against(r["alpha"], [r["minimum"]], 2)
            lines.append(f"{head}: alpha {alpha} [{_fmt(low, 2)}, {_fmt(high, 2)}] {over_text(r)}: {r['verdict']}")
        else:
            lines.append(f"{head}: {r['verdict']}, {r['reason']}")
    return lines


def summary_lines(report: Report, evaluation: Evaluation) -> list[str]:
    """The MaSC summary, the same for a session and for a merge of its ``--masc-json`` files:
    run, segmenter, per-suite/concept table, agreement, suite gates, baseline, protocol
    tables, failures, the cases that could not be scored, subject notes."""
    lines = _run_lines(report.runs, report.settings)
    lines += table_lines(evaluation.summary["concepts"], concept_thresholds(report.records))
    lines += _agreement_lines(evaluation.summary["agreement"])
    lines += suite_gate_lines(evaluation.suite_gates)
    if evaluation.baseline_update is not None:
        lines += evaluation.baseline_update.lines()
    if evaluation.baseline is not None:
        lines += evaluation.baseline.lines()
    for table in report.protocols:
        lines.append(f"protocol {table['kind']} ({table['suite']}):")
        lines += [f"  {line}" for line in table["table"].splitlines()]
    for finding in evaluation.suite_findings:
        lines.append(f"SUITE GATE FAILED {finding}")
    for finding in evaluation.shard_findings:
        lines.append(f"SHARD FAILED {finding}")
    if evaluation.errors:
        lines.append(f"{len(evaluation.errors)} case(s) could not be scored:")
        lines += [f"  {error}" for error in evaluation.errors]
    if evaluation.failed_cases:
        lines.append(f"{evaluation.failed_cases} case(s) below their gates")
    if evaluation.subject_notes:
        lines.append(
            f"note: in {len(evaluation.subject_notes)} case(s) the subject does not occur in the prompt, "
            "so nothing was stripped for PF:"
        )
        lines += [f"  {note}" for note in evaluation.subject_notes]
    return lines


def closing_line(report: Report, evaluation: Evaluation) -> str:
    """``7 cases: 6 passed, 1 failed, 1 MaSC baseline regression``: the merge's last line."""
    passed = sum(1 for r in report.records if r.passed)
    parts = [f"{passed} passed"]
    if evaluation.failed_cases:
        parts.append(f"{evaluation.failed_cases} failed")
    if evaluation.errored_cases:
        parts.append(f"{evaluation.errored_cases} error")
    parts += [f"{count} {noun}" for count, noun in evaluation.counts()]
    if evaluation.protocol_findings:
        parts.append(f"{len(evaluation.protocol_findings)} protocol gate(s) failed")
    if evaluation.shard_findings:
        parts.append(f"{len(evaluation.shard_findings)} shard(s) failed")
    verdict = "FAILED" if evaluation.failed else "PASSED"
    return f"MaSC {verdict}: {len(report.records)} cases from {len(report.shards)} shard(s): {', '.join(parts)}"
