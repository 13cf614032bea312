"""Summary statistics of a run: the per-concept table and Krippendorff's alpha of the scores against human ratings."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..gates import nan_to_none
from .frame import case_rows

if TYPE_CHECKING:
    import pandas


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _min(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return min(finite) if finite else None


def concept_table(data: Any) -> list[dict[str, Any]]:
    """One row per (suite, concept) of a frame (or records), over its cases (:func:`case_rows`:
    a case's seeds are one case, its scores their mean): cases, cases passed, mean/min CP, mean
    PF and min margin over the cases, each case weighing the same however many seeds it has."""
    frame = case_rows(data)
    rows = []
    if frame.empty:
        return rows
    for (suite, concept), group in frame.groupby(["suite", "concept"], sort=True):
        rows.append({
            "suite": suite,
            "concept": concept,
            "cases": len(group),
            "passed": int(group["passed"].sum()),
            "mean_concept": _mean(group["scores.concept"].tolist()),
            "min_concept": _min(group["scores.concept"].tolist()),
            "mean_prompt": _mean(group["scores.prompt"].tolist()),
            "min_margin": _min(group["scores.prompt_margin"].tolist()),
        })
    return rows


def rated_mask(column: "pandas.Series") -> "pandas.Series":
    """Which rows carry ratings (a non-empty list)."""
    return column.map(lambda v: isinstance(v, list) and len(v) > 0).astype(bool)


def human_agreement(data: Any, n_resamples: int = 1000) -> dict[str, dict[str, Any]]:
    """Krippendorff's alpha (interval, the paper's protocol) of each score against human ratings.

    Uses the scored cases that carry ``human`` ratings, one unit per case (:func:`case_rows`: its
    scores the mean over its seeds, rated once); CP and global_concept against the concept
    ratings, PF and global_prompt against the prompt ratings. Each entry: alpha, CI, units (cases).
    """
    import numpy as np

    from ..stats.agreement import human_alpha, human_alpha_ci

    frame = case_rows(data)
    frame = frame[frame["error"].isna()]
    pairs = {"concept": "concept", "global_concept": "concept", "prompt": "prompt", "global_prompt": "prompt"}
    results: dict[str, dict[str, Any]] = {}
    for score_key, rating_key in pairs.items():
        rated = frame[rated_mask(frame[f"human.{rating_key}"]) & frame[f"scores.{score_key}"].notna()]
        if len(rated) < 3:
            continue
        lists = rated[f"human.{rating_key}"].tolist()
        ratings = np.full((max(len(v) for v in lists), len(lists)), np.nan)
        for unit, values in enumerate(lists):
            ratings[: len(values), unit] = values
        metric = rated[f"scores.{score_key}"].to_numpy(dtype=float)
        alpha = human_alpha(metric, ratings)
        low, high = human_alpha_ci(metric, ratings, n_resamples=n_resamples, seed=0)
        results[score_key] = {"alpha": nan_to_none(alpha), "ci": [nan_to_none(low), nan_to_none(high)], "units": len(rated)}
    return results
