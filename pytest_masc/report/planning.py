"""Sizing a release comparison from one run file (``python -m pytest_masc.report plan``): the prompts x seeds per concept, as text."""
from __future__ import annotations

import math
from typing import Any

from ..stats.planning import ReleasePlan, plan
from .model import PathLike, ReportError
from .release import load_side


def plan_run(path: PathLike, *, max_drop: float = 0.02, power: float = 0.8, **options: Any) -> ReleasePlan:
    """:func:`pytest_masc.stats.planning.plan` of the run (or baseline) at ``path``; :class:`ReportError`
    naming it when unreadable or when no case has two seeds (the seed noise needs them)."""
    side = load_side(path)
    table = side.table(side)
    try:
        return plan(table, max_drop=max_drop, power=power, **options)
    except ValueError as error:
        raise ReportError(
            f"{path}: {error}; run some cases with several seeds (suite: seeds = N, masc.check(seed=...))"
        ) from None


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def plan_lines(planned: ReleasePlan, source: Any) -> list[str]:
    """The plan as text: the measured noise, then one line per seeds-per-prompt option."""
    lines = [f"release plan from {source}: {planned.rows} rows (concepts x metrics), Holm level {planned.level:.2g}"]
    for c in planned.components:
        lines.append(f"  {c.metric}: seed-to-seed sd {_number(c.seed_sd)} ({c.seed_df} df), prompt-to-prompt sd "
                     f"{_number(c.prompt_sd)}, over {c.n_cases} cases at {c.seeds:g} seeds on average")
    assurance = "" if planned.assurance is None else (
        f", sized for the {planned.assurance:.0%} upper confidence limit of the seed noise")
    lines.append(f"to call a true drop of {planned.drop:g} (2 x max_drop {planned.max_drop:g}) in one concept "
                 f"regressed with {planned.power:.0%} power{assurance}, per concept and release:")
    lines.append("  seeds  prompts  images  power")
    for option in planned.options:
        mark = "  <- fewest images" if option == planned.recommended else ""
        prompts = "-" if option.prompts is None else str(option.prompts)
        images = "-" if option.images is None else str(option.images)
        lines.append(f"  {option.seeds:>5}  {prompts:>7}  {images:>6}  {option.power:.2f}{mark}")
    if planned.recommended is not None:
        best = planned.recommended
        lines.append(f"recommended: {best.prompts} prompts x {best.seeds} seed(s) = {best.images} images per concept; "
                     "the same prompts and seeds in both releases")
    return lines


__all__ = ["plan_lines", "plan_run"]
