"""The paper-style tables: Krippendorff's alpha per metric and method (DreamBench++), and
identity AUC per metric (ORIDa), as Markdown; estimates with their bootstrap intervals."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..stats.agreement import format_estimate

#: the column of every method's units together
POOLED = "pooled"
#: how each column normalises the metric before alpha (printed under the table)
NORMALISATION_NOTE = (
    "metric min-max normalised over all of a table's units in the pooled column, as in the paper; "
    "within the method's units in a method's column"
)
#: the row of the inter-group human alpha (the ceiling)
HUMAN_CEILING = "human-human"
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


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in body)]


def format_table(rows: Sequence[Row], confidence: float = 0.95) -> str:
    """A paper-style table: one Markdown table per dimension, metrics as rows, methods and
    ``pooled`` as columns, cells ``alpha [low, high]`` (``n/a`` where undefined), and a line
    saying over which units each column normalises the metric."""
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
    return "\n".join([*lines, "", NORMALISATION_NOTE])


def format_identity(result: Mapping[str, Any]) -> str:
    """The identity result as a Markdown table: metric | AUC [CI]."""
    confidence = result.get("confidence", 0.95)
    header = ["metric", f"identity AUC ({confidence:.0%} CI)"]
    body = [[name, str(estimate)] for name, estimate in result["metrics"].items()]
    title = f"Identity: {result['n_same']} same-subject vs {result['n_cross']} cross-subject pairs"
    return "\n".join([title, "", *_markdown(header, body)])
