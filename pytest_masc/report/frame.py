"""Reports as pandas DataFrames: one row per case, flat columns (pandas is imported on first use only)."""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from ..gates import GATES, Record
from .format import load
from .model import PathLike, record_order
from .shards import merge

if TYPE_CHECKING:
    import pandas

SCORE_KEYS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")


def records_frame(records: Sequence[Record], source: Optional[str] = None) -> "pandas.DataFrame":
    """One row per case, flat columns (see :func:`read`)."""
    import pandas as pd

    fixed = [
        "source", "nodeid", "check_index", "kind", "suite", "concept", "case_id", "seed", "prompt", "subject", "image",
        *(f"scores.{k}" for k in SCORE_KEYS), *(f"gates.{g}" for g in GATES),
        "verdict", "passed", "error", "failures", "panel",
        "concept_per_reference", "distractor_prompts", "human.concept", "human.prompt",
    ]
    rows = []
    extras: dict[str, None] = {}
    for record in records:
        row: dict[str, Any] = {
            "source": source, "nodeid": record.nodeid, "check_index": record.check_index, "kind": record.kind,
            "suite": record.suite, "concept": record.concept, "case_id": record.case_id, "seed": record.seed, "prompt": record.prompt,
            "subject": record.subject, "image": record.image,
            "verdict": "error" if record.error else ("passed" if record.passed else "failed"),
            "passed": bool(record.passed), "error": record.error, "failures": list(record.failures),
            "panel": record.panel, "concept_per_reference": list(record.concept_per_reference),
            "distractor_prompts": [{"prompt": p, "score": s} for p, s in record.distractor_prompts.items()],
            "human.concept": record.human.get("concept"), "human.prompt": record.human.get("prompt"),
        }
        for key in SCORE_KEYS:
            value = record.scores.get(key)
            row[f"scores.{key}"] = math.nan if value is None else float(value)
        for gate in GATES:
            row[f"gates.{gate}"] = float(record.gates[gate]) if gate in record.gates else math.nan
        for key, value in record.extras.items():
            row[f"extras.{key}"] = value
            extras[f"extras.{key}"] = None
        rows.append(row)
    frame = pd.DataFrame(rows, columns=fixed + sorted(extras))
    return frame.astype({"check_index": "int64", "seed": "Int64", "passed": "bool", **{c: "float64" for c in fixed if c.startswith(("scores.", "gates."))}})


def read(path_or_paths: Union[PathLike, Iterable[PathLike]]) -> "pandas.DataFrame":
    """``--masc-json`` file(s) as a DataFrame, one row per case (several files are merged shards).

    Columns: ``source`` (the file), ``nodeid``, ``check_index``, ``kind``, ``suite``,
    ``concept``, ``case_id``, ``seed`` (the image's generation seed, None for a one-image case), ``prompt``, ``subject``, ``image``, ``scores.<score>`` (NaN when
    undefined), ``gates.<gate>`` (NaN when not gated), ``verdict`` (passed, failed, error),
    ``passed``, ``error``, ``failures``, ``panel``, ``concept_per_reference``,
    ``distractor_prompts`` (list of ``{prompt, score}``), ``human.concept``, ``human.prompt``
    (ratings or None) and ``extras.<key>`` for each diagnostic. ``frame.attrs`` holds the run
    ``settings``, ``runs``, ``suite_gates`` and ``collected``.
    """
    import pandas as pd

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    reports = [load(p) for p in paths]
    merged = merge(reports) if len(reports) > 1 else reports[0]
    frames = [records_frame(report.records, source=str(path)) for report, path in zip(reports, paths)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    order = sorted(range(len(frame)), key=lambda i: (frame["nodeid"].iat[i], int(frame["check_index"].iat[i])))
    frame = frame.iloc[order].reset_index(drop=True)
    frame.attrs.update(settings=merged.settings, runs=merged.runs, suite_gates=merged.suite_gates,
                       collected=merged.collected)
    return frame


def as_frame(data: Any) -> "pandas.DataFrame":
    """``data`` as a frame: a frame as it is, records through :func:`records_frame`."""
    if hasattr(data, "columns"):
        return data
    return records_frame(sorted(data, key=record_order))


def scored_rows(frame: "pandas.DataFrame") -> "pandas.DataFrame":
    """The rows of cases that were scored (no error)."""
    return frame[frame["error"].isna()]


#: what identifies a case: its seeds' records share these (a python test's seeds share its node id)
CASE_KEY = ["suite", "concept", "case_id", "nodeid"]


def case_rows(data: Any) -> "pandas.DataFrame":
    """One row per case of a records frame (or records): a case's seeds collapsed, cases in the
    order of their first record; what every count, alpha and per-concept mean of a run is made of.

    Each row: the case's fields from its first record (``suite``, ``concept``, ``case_id``,
    ``nodeid``, ``prompt``, ``gates.*``, ``human.*`` ratings, ``failures``: every seed carries
    the case's); ``scores.<score>`` the mean over its seeds, NaN when any seed's is NaN (the
    plugin's rule for a case's gates); ``seeds`` its records (1 for a one-image case; summed when
    ``data`` is already one row per case); ``error`` the first seed's error, so a case with any
    unscorable seed is one errored case; ``passed`` every seed passed and none errored;
    ``verdict`` ``error``, ``failed`` or ``passed``. A one-record case's row is its record's row.
    """
    frame = as_frame(data)
    keys = [frame[k].fillna("") for k in CASE_KEY]
    cases = frame[~frame[CASE_KEY].fillna("").duplicated(keep="first")].reset_index(drop=True)
    if frame.empty:
        return cases.assign(seeds=cases["check_index"].astype("int64"))

    def per_case(values: "pandas.Series", how: str) -> "pandas.Series":
        return getattr(values.groupby(keys, sort=False, dropna=False), how)().reset_index(drop=True)

    for column in frame.columns:
        if column.startswith("scores."):
            cases[column] = per_case(frame[column], "mean").mask(per_case(frame[column].isna(), "any"))
    errored = per_case(frame["error"].notna(), "any")
    cases["error"] = per_case(frame["error"], "first").where(errored, None)  # the first seed's error
    cases["passed"] = ~per_case(~frame["passed"].astype(bool), "any") & ~errored
    cases["verdict"] = ["error" if e else ("passed" if p else "failed") for e, p in zip(errored, cases["passed"])]
    seeds = per_case(frame["seeds"], "sum") if "seeds" in frame.columns else per_case(frame["case_id"], "size")
    cases["seeds"] = seeds.astype("int64")
    cases.loc[cases["seeds"] > 1, "seed"] = None  # several seeds: no one seed is the case's
    return cases
