"""Summary statistics of a run: the per-concept table and Krippendorff's alpha of the scores against human ratings."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..gates import nan_to_none
from .frame import as_frame

if TYPE_CHECKING:
    import pandas


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _min(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return min(finite) if finite else None


def concept_table(data: Any) -> list[dict[str, Any]]:
    """One row per (suite, concept) of a frame (or records): cases (a case's seeds count once), cases
    passed (every seed's record passed), mean/min CP, mean PF, min margin (over records)."""
    frame = as_frame(data)
    rows = []
    if frame.empty:
        return rows
    for (suite, concept), group in frame.groupby(["suite", "concept"], sort=True):
        rows.append({
            "suite": suite,
            "concept": concept,
            "cases": int(group["case_id"].nunique()),  # a case's seeds are one case
            "passed": int(group.groupby("case_id")["passed"].all().sum()),
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

    Uses the scored rows that carry ``human`` ratings; CP and global_concept against the concept
    ratings, PF and global_prompt against the prompt ratings. Each entry: alpha, CI, units.
    """
    import numpy as np

    from ..stats.agreement import human_alpha, human_alpha_ci

    frame = as_frame(data)
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
