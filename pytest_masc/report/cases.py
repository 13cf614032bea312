"""Case tables of releases: each scored record's (suite, concept, case id, seed, CP, PF), from a run's records, a frame or a baseline file.

A case table is the input of :func:`pytest_masc.stats.compare.compare_cases`: a dict of equal-length
lists ``suite``, ``concept``, ``case_id``, ``seed`` (``""`` for a one-image case), ``CP`` and ``PF``
(NaN for a missing score). Baseline version 4 stores exactly these rows (``records``); version 3
stores one entry per check key (node id) with its concept key and mean scores, read as one seed per
case; versions 1 and 2 hold per-concept means only and give no table.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

from ..gates import Record, nan_to_none
from .model import ReportError, case_key

COLUMNS = ("suite", "concept", "case_id", "seed", "CP", "PF")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _seed_text(seed: Any) -> str:
    return "" if seed is None or (isinstance(seed, float) and math.isnan(seed)) else str(seed)


def as_records(data: Any) -> list[Record]:
    """Records as they are; a frame's scored rows as minimal records (scores, seed, keys)."""
    if not hasattr(data, "columns"):
        return [r for r in data if r.error is None]
    import pandas

    frame = data[data["error"].isna()]
    seeds = frame["seed"] if "seed" in frame else [None] * len(frame)
    return [
        Record(nodeid=row["nodeid"], kind=row["kind"], suite=row["suite"], concept=row["concept"],
               case_id=row["case_id"], prompt=row["prompt"], subject=row["subject"], image=row["image"],
               scores={"concept": row["scores.concept"], "prompt": row["scores.prompt"]},
               check_index=int(row["check_index"]), seed=None if seed is None or pandas.isna(seed) else int(seed))
        for (_, row), seed in zip(frame.iterrows(), seeds)
    ]


def record_entries(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The baseline (version 4) rows of the scored records: ``key`` (the check key), ``suite``,
    ``concept``, ``case_id``, ``seed`` (None for a one-image case), ``CP``, ``PF`` (None when NaN)."""
    return [
        {"key": case_key(r), "suite": r.suite, "concept": r.concept, "case_id": r.case_id, "seed": r.seed,
         "CP": nan_to_none(r.score("concept")), "PF": nan_to_none(r.score("prompt"))}
        for r in records if r.error is None
    ]


def _table(rows: Sequence[dict[str, Any]], where: str) -> dict[str, list[Any]]:
    table: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    seen: dict[tuple[str, str, str, str], str] = {}
    for row in rows:
        key = (str(row["suite"]), str(row["concept"]), str(row["case_id"]), _seed_text(row.get("seed")))
        if key in seen:
            raise ReportError(
                f"{where}: case {key[2]!r} of {key[0]}::{key[1]} has "
                + (f"seed {key[3]}" if key[3] else "no seed") + f" twice ({seen[key]} and {row.get('key')}): "
                "give each check of a test its own case id, or one seed per image"
            )
        seen[key] = str(row.get("key"))
        for name, value in zip(COLUMNS, (*key, _number(row.get("CP")), _number(row.get("PF")))):
            table[name].append(value)
    return table


def records_table(records: Iterable[Record], where: str = "run",
                  concepts: Optional[set[str]] = None) -> dict[str, list[Any]]:
    """The case table of a run's scored records (``concepts``: only these ``suite::concept`` keys)."""
    rows = [e for e in record_entries(records) if concepts is None or f"{e['suite']}::{e['concept']}" in concepts]
    return _table(rows, where)


def _version_3_rows(baseline: dict[str, Any], case_ids: dict[str, tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Version 3 entries as rows: the case id of the run record with the same check key, else the key itself."""
    rows = []
    for key, entry in (baseline.get("cases") or {}).items():
        if not isinstance(entry, dict) or "concept_key" not in entry:
            continue
        suite, _, concept = str(entry["concept_key"]).partition("::")
        known = case_ids.get(key)
        case_id = known[2] if known and known[:2] == (suite, concept) else key
        rows.append({"key": key, "suite": suite, "concept": concept, "case_id": case_id, "seed": None,
                     "CP": entry.get("concept"), "PF": entry.get("prompt")})
    return rows


def baseline_rows(baseline: dict[str, Any], run_records: Iterable[Record] = ()) -> list[dict[str, Any]]:
    """A baseline's case rows (version 4 ``records``, version 3 ``cases``; none for 1 and 2).
    A version-3 entry takes the case id of the run record with its check key (``run_records``)."""
    if isinstance(baseline.get("records"), list):
        return [row for row in baseline["records"] if isinstance(row, dict)]
    case_ids = {case_key(r): (r.suite, r.concept, r.case_id) for r in run_records}
    return _version_3_rows(baseline, case_ids)


def baseline_table(baseline: dict[str, Any], where: str, run_records: Iterable[Record] = (),
                   concepts: Optional[set[str]] = None) -> dict[str, list[Any]]:
    """The case table of a baseline (:func:`baseline_rows`), ``concepts`` keys only when given."""
    rows = [row for row in baseline_rows(baseline, run_records)
            if concepts is None or f"{row.get('suite')}::{row.get('concept')}" in concepts]
    bad = next((row for row in rows if any(name not in row for name in ("suite", "concept", "case_id"))), None)
    if bad is not None:
        raise ReportError(f"{where}: a baseline record lacks suite, concept or case_id: {bad}")
    return _table(rows, where)


def concepts_with_cases(table: dict[str, list[Any]]) -> set[str]:
    """The ``suite::concept`` keys with at least one row in a case table."""
    return {f"{s}::{c}" for s, c in zip(table["suite"], table["concept"])}


__all__ = ["COLUMNS", "as_records", "baseline_rows", "baseline_table", "concepts_with_cases", "record_entries", "records_table"]
