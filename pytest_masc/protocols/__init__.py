"""Benchmark protocols: DreamBench++ human alignment and the ORIDa identity test.

* :func:`load_dreambench_plus` / :func:`evaluate_dreambench` / :func:`format_table`:
  Krippendorff's alpha (:func:`pytest_masc.agreement.human_alpha`, with a bootstrap CI)
  of MaSC's CP and PF, the global SigLIP2 cosines and any baseline metric against the
  human ratings, per method and pooled, with the human-vs-human ceiling.
* :func:`load_orida` / :func:`evaluate_identity` / :func:`format_identity`: identity AUC
  (:func:`pytest_masc.agreement.identity_auc`) of CP and of the global image cosine.
* :func:`demo_table`: the whole DreamBench++ path on a small fixture tree.

Importing this package imports numpy only; scoring needs a :class:`~pytest_masc.MaSC`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..stats.agreement import (
    format_estimate,
    human_alpha,
    human_alpha_ci,
    human_vs_human_alpha,
    human_vs_human_alpha_ci,
    identity_auc,
    identity_auc_ci,
)
from .dreambench_plus import (
    DROP_REASONS,
    PUBLISHED_METHODS,
    DreamBenchUnit,
    ProtocolData,
    load_dreambench_plus,
    write_dreambench_fixture,
)
from .orida import IdentityData, IdentityPair, load_orida, write_orida_fixture

POOLED = "pooled"
HUMAN_CEILING = "human-human"
#: MaSC metrics by dimension: (row label, ``Score`` attribute).
MASC_METRICS = {
    "concept": (("MaSC CP", "concept"), ("global concept", "global_concept")),
    "prompt": (("MaSC PF", "prompt"), ("global prompt", "global_prompt")),
}
DIMENSION_TITLES = {"concept": "Concept preservation", "prompt": "Prompt following"}


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its bootstrap CI; ``str()`` gives ``"0.47 [0.44, 0.50]"``."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def __str__(self) -> str:
        return format_estimate(self.value, self.low, self.high)


@dataclass(frozen=True)
class Row:
    """One cell of the alignment table: ``metric`` judged on ``dimension`` over ``column``.

    ``column`` is a method name or ``"pooled"``; ``n_units`` counts the units with a finite
    metric value and at least one human rating (for the ceiling: rated by two groups).
    """

    dimension: str
    metric: str
    column: str
    estimate: Estimate
    n_units: int


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
    :func:`~pytest_masc.agreement.human_alpha` (metric min-max normalised over the cell's
    units, ratings / 4, two-rater interval alpha per group, mean over groups) with a
    percentile bootstrap CI over the cell's units. With two or more groups a
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
    n = len(data)
    if len(scores) != n:
        raise ValueError(f"got {len(scores)} scores for {n} samples")
    prompt_metrics = set(prompt_metrics)
    metrics: dict[str, list[tuple[str, np.ndarray]]] = {"concept": [], "prompt": []}
    for dimension, entries in MASC_METRICS.items():
        for label, attribute in entries:
            metrics[dimension].append((label, _score_values(scores, attribute)))
    for name, values in (extra_metrics or {}).items():
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"extra metric {name!r} has shape {array.shape}, expected ({n},)")
        metrics["prompt" if name in prompt_metrics else "concept"].append((name, array))

    method_of = data.method_of
    columns = [m for m in data.methods if (method_of == m).any()] + [POOLED]
    pf_applies = data.pf_applies
    boot = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    rows: list[Row] = []
    for dimension in ("concept", "prompt"):
        ratings = data.ratings[dimension]
        applies = pf_applies if dimension == "prompt" else np.ones(n, dtype=bool)
        entries = list(metrics[dimension])
        for label, values in entries:
            for column in columns:
                cell = applies & ((method_of == column) if column != POOLED else True)
                x = values[cell]
                y = ratings[:, cell]
                rated = np.isfinite(x) & np.isfinite(y).any(axis=0)
                if rated.sum() >= 2:
                    estimate = Estimate(
                        human_alpha(x, y, data.scale_max), *human_alpha_ci(x, y, data.scale_max, **boot)
                    )
                else:
                    estimate = Estimate(math.nan)
                rows.append(Row(dimension, label, column, estimate, int(rated.sum())))
        if len(data.groups) >= 2:
            for column in columns:
                cell = applies & ((method_of == column) if column != POOLED else True)
                y = ratings[:, cell]
                both = int((np.isfinite(y).sum(axis=0) >= 2).sum())
                if both >= 2:
                    estimate = Estimate(human_vs_human_alpha(y, data.scale_max),
                                        *human_vs_human_alpha_ci(y, data.scale_max, **boot))
                else:
                    estimate = Estimate(math.nan)
                rows.append(Row(dimension, HUMAN_CEILING, column, estimate, both))
    return rows


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in body)]


def format_table(rows: Sequence[Row], confidence: float = 0.95) -> str:
    """A paper-style table: one Markdown table per dimension, metrics as rows, methods and
    ``pooled`` as columns, cells ``alpha [low, high]`` (``n/a`` where undefined)."""
    if not rows:
        return "(no rows)"
    lines = [f"Krippendorff's alpha vs. human ratings ({confidence:.0%} bootstrap CI)"]
    for dimension in ("concept", "prompt"):
        selected = [r for r in rows if r.dimension == dimension]
        if not selected:
            continue
        columns = list(dict.fromkeys(r.column for r in selected))
        metrics = list(dict.fromkeys(r.metric for r in selected))
        cells = {(r.metric, r.column): str(r.estimate) for r in selected}
        units = {r.column: r.n_units for r in selected if r.metric == metrics[0]}
        header = [DIMENSION_TITLES.get(dimension, dimension)] + [f"{c} (n={units.get(c, 0)})" for c in columns]
        body = [[metric] + [cells.get((metric, c), "") for c in columns] for metric in metrics]
        lines += ["", *_markdown(header, body)]
    return "\n".join(lines)


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


def format_identity(result: Mapping[str, Any]) -> str:
    """The identity result as a Markdown table: metric | AUC [CI]."""
    confidence = result.get("confidence", 0.95)
    header = ["metric", f"identity AUC ({confidence:.0%} CI)"]
    body = [[name, str(estimate)] for name, estimate in result["metrics"].items()]
    title = f"Identity: {result['n_same']} same-subject vs {result['n_cross']} cross-subject pairs"
    return "\n".join([title, "", *_markdown(header, body)])


def demo_table(tmp_dir: Union[str, os.PathLike], masc: Any, *, n_resamples: int = 200, seed: int = 0) -> str:
    """Build the DreamBench++ fixture tree in ``tmp_dir``, score it with ``masc``, and
    return the printed alignment table followed by the loader's one-line summary.

    The fixture (:func:`~pytest_masc.protocols.dreambench_plus.write_dreambench_fixture`)
    has 2 methods x 4 subjects x 3 prompts, two rater groups, one missing rating, one missing
    and one too-small mask, and a style subject; its numbers only show the table's form.
    """
    fixture = write_dreambench_fixture(tmp_dir, seed=seed)
    data = load_dreambench_plus(fixture.root, fixture.masks)
    scores = masc.score_many(data.samples)
    rows = evaluate_dreambench(data, scores, n_resamples=n_resamples, seed=seed)
    return format_table(rows) + "\n\n" + data.summary()


__all__ = [
    "DROP_REASONS",
    "DreamBenchUnit",
    "Estimate",
    "HUMAN_CEILING",
    "IdentityData",
    "IdentityPair",
    "POOLED",
    "PUBLISHED_METHODS",
    "ProtocolData",
    "Row",
    "demo_table",
    "evaluate_dreambench",
    "evaluate_identity",
    "format_identity",
    "format_table",
    "load_dreambench_plus",
    "load_orida",
    "write_dreambench_fixture",
    "write_orida_fixture",
]
