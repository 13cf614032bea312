"""Scoring the benchmark protocols' data and judging the metrics: alpha against human
ratings (DreamBench++), identity AUC (ORIDa), and :func:`run_protocol`, which loads a
:class:`~pytest_masc.protocols.spec.ProtocolSpec`'s data set, scores it and returns its table
and the values its suite-level gates read."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..stats.agreement import (
    human_alpha,
    human_alpha_ci,
    human_vs_human_alpha,
    human_vs_human_alpha_ci,
    identity_auc,
    identity_auc_ci,
)
from ..metric.baselines import baseline_metrics
from .dreambench_plus import ProtocolData, load_dreambench_plus
from .orida import IdentityData, load_orida
from .spec import ProtocolSpec
from .tables import HUMAN_CEILING, POOLED, Estimate, Row, format_identity, format_table

#: MaSC metrics by dimension: (row label, ``Score`` attribute).
MASC_METRICS = {
    "concept": (("MaSC CP", "concept"), ("global concept", "global_concept")),
    "prompt": (("MaSC PF", "prompt"), ("global prompt", "global_prompt")),
}

def _score_values(scores: Sequence[Any], attribute: str) -> np.ndarray:
    values = []
    for score in scores:
        value = getattr(score, attribute, None) if not isinstance(score, BaseException) else None
        values.append(math.nan if value is None else float(value))
    return np.asarray(values, dtype=np.float64)


def evaluate_dreambench(
    data: ProtocolData,
    scores: Sequence[Any],
    extra_metrics: Optional[Mapping[str, np.ndarray]] = None,
    *,
    prompt_metrics: Iterable[str] = ("CLIP-T",),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Row]:
    """Alpha of each metric against the human ratings, per method and pooled.

    Concept-preservation metrics (MaSC CP, the global image cosine, extra metrics not named
    in ``prompt_metrics``) are judged against the ``concept`` ratings; prompt-following ones
    (MaSC PF, the global image-text cosine, ``prompt_metrics``) against ``prompt``, on the
    units where PF applies (not style subjects). Each cell is
    :func:`~pytest_masc.stats.agreement.human_alpha` (metric min-max normalised over the cell's
    units, ratings / 4, two-rater interval alpha per group, mean over groups) with a
    percentile bootstrap CI over the cell's units. The normalisation scope follows from the
    cell: the ``"pooled"`` column normalises over every unit of the dimension, all methods
    together, as the paper does; a method's column normalises within that method's units, so
    it does not depend on the other methods' scores (and the columns do not average to the
    pooled figure). With two or more groups a
    ``"human-human"`` row gives the inter-group alpha (the ceiling).

    Args:
        data: from :func:`load_dreambench_plus`.
        scores: one :class:`~pytest_masc.Score` per ``data.samples`` entry (an exception in
            its place, as ``score_many(errors="return")`` leaves, counts as NaN).
        extra_metrics: ``{name: (n,) values}`` of baselines (CLIP-I, DINO-I, CLIP-T ...).
        prompt_metrics: names of extra metrics judged against prompt following.
        n_resamples, confidence, seed: bootstrap settings (same seed, same CIs).

    Returns:
        Rows in table order: dimension, metric, then the methods and ``"pooled"``.
    """
    metrics = _metrics_by_dimension(data, scores, extra_metrics, set(prompt_metrics))
    method_of = data.method_of
    columns = [m for m in data.methods if (method_of == m).any()] + [POOLED]
    boot = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows: list[Row] = []
    for dimension in ("concept", "prompt"):
        applies = data.pf_applies if dimension == "prompt" else np.ones(len(data), dtype=bool)
        cells = {column: applies & ((method_of == column) if column != POOLED else True) for column in columns}
        ratings = data.ratings[dimension]
        for label, values in metrics[dimension]:
            for column, cell in cells.items():
                estimate, units = _metric_alpha(values[cell], ratings[:, cell], data.scale_max, boot)
                rows.append(Row(dimension, label, column, estimate, units))
        if len(data.groups) >= 2:
            for column, cell in cells.items():
                estimate, units = _human_ceiling(ratings[:, cell], data.scale_max, boot)
                rows.append(Row(dimension, HUMAN_CEILING, column, estimate, units))
    return rows


def _metrics_by_dimension(
    data: ProtocolData, scores: Sequence[Any], extra_metrics: Optional[Mapping[str, np.ndarray]],
    prompt_metrics: set[str],
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``{"concept": [(label, (n,) values)], "prompt": [...]}``: MaSC's metrics, then the extra
    ones (judged against prompt following when named in ``prompt_metrics``)."""
    n = len(data)
    if len(scores) != n:
        raise ValueError(f"got {len(scores)} scores for {n} samples")
    metrics: dict[str, list[tuple[str, np.ndarray]]] = {
        dimension: [(label, _score_values(scores, attribute)) for label, attribute in entries]
        for dimension, entries in MASC_METRICS.items()
    }
    for name, values in (extra_metrics or {}).items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"extra metric {name!r} has shape {array.shape}, expected ({n},)")
        metrics["prompt" if name in prompt_metrics else "concept"].append((name, array))
    return metrics


def _metric_alpha(values: np.ndarray, ratings: np.ndarray, scale_max: float, boot: dict[str, Any]) -> tuple[Estimate, int]:
    """One cell: alpha of ``(m,)`` metric values against ``(G, m)`` ratings with its bootstrap
    CI, over the units with a finite value and at least one rating (NaN under two such units)."""
    rated = np.isfinite(values) & np.isfinite(ratings).any(axis=0)
    if rated.sum() < 2:
        return Estimate(math.nan), int(rated.sum())
    return Estimate(human_alpha(values, ratings, scale_max), *human_alpha_ci(values, ratings, scale_max, **boot)), int(rated.sum())


def _human_ceiling(ratings: np.ndarray, scale_max: float, boot: dict[str, Any]) -> tuple[Estimate, int]:
    """One cell of the human-human row: inter-group alpha over the units two groups rated."""
    both = int((np.isfinite(ratings).sum(axis=0) >= 2).sum())
    if both < 2:
        return Estimate(math.nan), both
    return Estimate(human_vs_human_alpha(ratings, scale_max), *human_vs_human_alpha_ci(ratings, scale_max, **boot)), both


def evaluate_identity(
    data: IdentityData,
    scores: Sequence[Any],
    extra_metrics: Optional[Mapping[str, np.ndarray]] = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Identity AUC (P(same-subject > cross-subject), ties half) with bootstrap CIs.

    Returns:
        ``{"metrics": {"MaSC CP": Estimate, "global concept": Estimate, <extra>: ...},
        "n_same": int, "n_cross": int}``; NaN-scored pairs are left out of each AUC.
    """
    if len(scores) != len(data):
        raise ValueError(f"got {len(scores)} scores for {len(data)} pairs")
    columns = {"MaSC CP": _score_values(scores, "concept"), "global concept": _score_values(scores, "global_concept")}
    for name, values in (extra_metrics or {}).items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(data),):
            raise ValueError(f"extra metric {name!r} has shape {array.shape}, expected ({len(data)},)")
        columns[name] = array
    boot = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    estimates = {
        name: Estimate(identity_auc(values, data.same), *identity_auc_ci(values, data.same, **boot))
        for name, values in columns.items()
    }
    n_same = int(data.same.sum())
    return {"metrics": estimates, "n_same": n_same, "n_cross": len(data) - n_same, "confidence": confidence}


@dataclass(frozen=True)
class ProtocolOutcome:
    """What a protocol run gives: its printed table and the values of the suite-level gates
    it can check (``min_alpha_concept``, ``min_alpha_prompt`` or ``min_auc``; ``None``
    where undefined)."""

    table: str
    values: dict[str, Optional[float]]


def run_protocol(
    spec: ProtocolSpec,
    masc: Any,
    *,
    baselines: Optional[Mapping[str, Any]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> ProtocolOutcome:
    """Load ``spec``'s data set, score every pair in one ``score_many`` batch and judge it.

    Args:
        spec: the protocol and its data.
        masc: a :class:`~pytest_masc.MaSC`.
        baselines: loaded baseline scorers by name (``clip``, ``dino``) whose metrics join
            the DreamBench++ table.
        progress: passed to ``score_many``.
    """
    if spec.kind == "dreambench_plus":
        data = load_dreambench_plus(spec.root, spec.masks)
        scores = masc.score_many(data.samples, progress=progress, errors="return")
        extra = None
        if baselines:
            extra = baseline_metrics(data.samples, **baselines)
        rows = evaluate_dreambench(data, scores, extra)
        pooled = {(r.dimension, r.metric): r.estimate.value for r in rows if r.column == POOLED}
        values = {
            "min_alpha_concept": pooled.get(("concept", "MaSC CP")),
            "min_alpha_prompt": pooled.get(("prompt", "MaSC PF")),
        }
        return ProtocolOutcome(format_table(rows) + "\n\n" + data.summary(), {k: _finite_or_none(v) for k, v in values.items()})
    data = load_orida(spec.root, spec.split, n_subjects=spec.n_subjects, min_backgrounds=spec.min_backgrounds)
    scores = masc.score_many(data.samples, progress=progress, errors="return")
    result = evaluate_identity(data, scores)
    return ProtocolOutcome(format_identity(result), {"min_auc": _finite_or_none(result["metrics"]["MaSC CP"].value)})


def _finite_or_none(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else float(value)
