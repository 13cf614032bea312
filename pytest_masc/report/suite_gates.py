"""Suite-level gates: each suite's ``min_alpha_*`` gates judged on the alpha of its cases that ran."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..gates import format_against
from .frame import as_frame, case_rows
from .model import ALPHA_GATES, number_text
from .summary import rated_mask

if TYPE_CHECKING:
    import pandas


def over_text(result: dict[str, Any]) -> str:
    """``over 4 of 6 rated cases`` (some deselected) or ``over 6 rated cases``."""
    used, rated = result["used"], result["rated"]
    return f"over {used} of {rated} rated cases" if rated is not None and used < rated else f"over {used} rated cases"


def _alpha_gate(suite: str, gate: str, minimum: float, rows: "pandas.DataFrame", agreement: dict[str, Any],
                rated_collected: Optional[int]) -> dict[str, Any]:
    """One ``min_alpha_*`` gate of one suite, judged on the suite's cases that ran (``rows``)."""
    key = ALPHA_GATES[gate]
    result: dict[str, Any] = {
        "suite": suite, "gate": gate, "minimum": float(minimum), "score": key, "alpha": None, "ci": [None, None],
        "used": 0, "ran": 0, "rated": rated_collected, "verdict": "not checked", "reason": "",
    }
    if rows.empty:
        result["reason"] = "none of its cases ran"
        return result
    rows = case_rows(rows)  # rated cases, not their seeds' records: ``rated`` counts cases
    rated = rated_mask(rows[f"human.{key}"])
    result["ran"] = int(rated.sum())
    result["used"] = int((rated & rows["error"].isna() & rows[f"scores.{key}"].notna()).sum())
    entry = agreement.get(key)
    if entry is not None and entry["alpha"] is not None:
        result.update(alpha=entry["alpha"], ci=list(entry["ci"]))
        result["verdict"] = "passed" if entry["alpha"] >= minimum else "failed"
        return result
    if rated_collected is not None and result["ran"] < rated_collected:  # a selection, not the suite, lacks ratings
        ran = "none" if result["ran"] == 0 else f"only {result['ran']}"
        result["reason"] = f"{ran} of its {rated_collected} rated cases ran" + (", too few for an alpha" if result["ran"] else "")
        return result
    result["verdict"] = "failed"
    if result["used"] < 3:
        result["reason"] = f"{result['used']} scored rated case(s); an alpha needs at least 3"
    else:
        result["reason"] = f"alpha is undefined over {result['used']} rated cases (no spread in scores or ratings)"
    return result


def suite_gate_results(
    suite_gates: dict[str, dict[str, float]], frame: "pandas.DataFrame", summary: dict[str, Any],
    collected: Optional[dict[str, dict[str, Any]]] = None,
) -> list[dict[str, Any]]:
    """Each ``min_alpha_*`` gate of each suite, judged on the suite's cases that ran: its alpha
    with CI, the rated cases used and collected, and a verdict (``passed``, ``failed``, or
    ``not checked`` where the run selected none of the suite's cases, or too few of its rated
    ones: deselection alone never fails a suite). ``frame``: the run's cases (errors included)."""
    collected = collected or {}
    results = []
    for suite_name, gates in sorted(suite_gates.items()):
        rows = frame[frame["suite"] == suite_name]
        agreement = summary["suites"].get(suite_name, {}).get("agreement", {})
        rated = collected.get(suite_name, {}).get("rated")
        for gate, minimum in sorted(gates.items()):
            if gate in ALPHA_GATES:
                count = None if rated is None else int(rated.get(ALPHA_GATES[gate], 0))
                results.append(_alpha_gate(suite_name, gate, minimum, rows, agreement, count))
    return results


def suite_gate_finding(result: dict[str, Any]) -> Optional[str]:
    """The ``SUITE GATE FAILED`` text of a failed suite gate result, else ``None``."""
    if result["verdict"] != "failed":
        return None
    suite, gate, minimum = result["suite"], result["gate"], result["minimum"]
    if result["alpha"] is None:
        return f"{suite}: {gate} = {number_text(minimum)} but no human-rated cases give an alpha ({result['reason']})"
    alpha = format_against(result["alpha"], [minimum], 3)
    return f"{suite}: alpha of {result['score']} scores vs humans {alpha} < {gate} {number_text(minimum)} ({over_text(result)})"


def check_suite_gates(
    suite_gates: dict[str, dict[str, float]], summary: dict[str, Any], data: Any,
    collected: Optional[dict[str, dict[str, Any]]] = None,
) -> list[str]:
    """Failed ``min_alpha_*`` suite gates of a run (frame or records; see :func:`suite_gate_results`)."""
    results = suite_gate_results(suite_gates, as_frame(data), summary, collected)
    return [f for f in map(suite_gate_finding, results) if f]
