"""The forest plot of a release comparison: one row per (concept, metric) with ``delta`` and its interval, the ``-max_drop`` line, and rows coloured by verdict (a PNG drawn with PIL)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

from ..stats.compare import ReleaseComparison, RowComparison
from .model import PathLike

#: verdict -> RGB colour of its rows (and its legend entry)
VERDICT_COLOURS = {"regressed": (192, 38, 38), "non-inferior": (34, 139, 60), "inconclusive": (214, 140, 0)}
ROW_HEIGHT, LABEL_WIDTH, PLOT_WIDTH, TEXT_WIDTH, MARGIN = 26, 280, 420, 300, 14
LEGEND_HEIGHT = 50  #: the axis labels and the legend, below the rows
FILE_NAME = "masc-release-forest.png"  #: its name under ``--masc-artifacts``


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _axis(rows: Sequence[RowComparison], max_drop: float) -> tuple[float, float]:
    """The x range: every finite delta and bound, 0 and ``-max_drop``, with some room."""
    values = [v for r in rows for v in (r.delta, r.low, r.high) if math.isfinite(v)] + [0.0, -max_drop]
    low, high = min(values), max(values)
    pad = max(high - low, max_drop, 1e-3) * 0.08
    return low - pad, high + pad


def _ticks(low: float, high: float) -> list[float]:
    span = high - low
    step = 10 ** math.floor(math.log10(span / 4))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _dashed(draw: ImageDraw.ImageDraw, x: int, top: int, bottom: int, colour: Any) -> None:
    for y in range(top, bottom, 8):
        draw.line([(x, y), (x, min(y + 4, bottom))], fill=colour, width=2)


def forest_image(result: ReleaseComparison, title: str = "") -> Image.Image:
    """The plot of ``result`` as an RGB image: labels left, intervals in the middle (0 solid,
    ``-max_drop`` dashed), ``delta [low, high] verdict`` right, a legend below."""
    rows = list(result.rows)
    font, small = _font(13), _font(11)
    top = MARGIN + (22 if title else 0) + 18
    height = top + ROW_HEIGHT * max(1, len(rows)) + LEGEND_HEIGHT
    width = LABEL_WIDTH + PLOT_WIDTH + TEXT_WIDTH + 2 * MARGIN
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=(0, 0, 0), font=font)
    low, high = _axis(rows, result.max_drop)
    left = MARGIN + LABEL_WIDTH

    def x_of(value: float) -> int:
        return int(round(left + (value - low) / (high - low) * PLOT_WIDTH))

    bottom = top + ROW_HEIGHT * max(1, len(rows))
    draw.text((left, top - 17), f"change (after - before), {result.confidence * 100:g}% CI", fill=(60, 60, 60), font=small)
    for index, row in enumerate(rows):
        y = top + index * ROW_HEIGHT + ROW_HEIGHT // 2
        colour = VERDICT_COLOURS.get(row.verdict, (90, 90, 90))
        if index % 2:
            draw.rectangle([MARGIN, y - ROW_HEIGHT // 2, width - MARGIN, y + ROW_HEIGHT // 2], fill=(245, 245, 245))
        draw.text((MARGIN, y - 8), f"{row.suite}::{row.concept}  {row.metric}"[:40], fill=(0, 0, 0), font=font)
        if math.isfinite(row.low) and math.isfinite(row.high):
            draw.line([(x_of(row.low), y), (x_of(row.high), y)], fill=colour, width=3)
            for bound in (row.low, row.high):
                draw.line([(x_of(bound), y - 5), (x_of(bound), y + 5)], fill=colour, width=2)
        if math.isfinite(row.delta):
            x = x_of(row.delta)
            draw.rectangle([x - 5, y - 5, x + 5, y + 5], fill=colour)
        bounds = "-" if not math.isfinite(row.low) else f"[{row.low:+.3f}, {row.high:+.3f}]"
        draw.text((left + PLOT_WIDTH + 12, y - 8), f"{row.delta:+.3f} {bounds}  {row.verdict}", fill=colour, font=font)
    draw.line([(x_of(0.0), top - 2), (x_of(0.0), bottom)], fill=(110, 110, 110), width=1)
    _dashed(draw, x_of(-result.max_drop), top - 2, bottom, (0, 0, 0))
    draw.line([(left, bottom + 2), (left + PLOT_WIDTH, bottom + 2)], fill=(0, 0, 0), width=1)
    for tick in _ticks(low, high):
        x = x_of(tick)
        draw.line([(x, bottom + 2), (x, bottom + 6)], fill=(0, 0, 0))
        draw.text((x - 14, bottom + 8), f"{tick:+.2f}".replace("+0.00", "0"), fill=(0, 0, 0), font=small)
    legend_y, x = bottom + 28, MARGIN
    draw.text((x, legend_y), f"dashed: -max_drop = {-result.max_drop:g}", fill=(0, 0, 0), font=small)
    x += 190
    for verdict, colour in VERDICT_COLOURS.items():
        draw.rectangle([x, legend_y + 2, x + 10, legend_y + 12], fill=colour)
        draw.text((x + 15, legend_y), verdict, fill=(0, 0, 0), font=small)
        x += 120
    return image


def write_forest_plot(path: PathLike, result: ReleaseComparison, title: str = "") -> Path:
    """Write :func:`forest_image` of ``result`` to ``path`` (PNG; parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    forest_image(result, title).save(path, format="PNG")
    return path


__all__ = ["FILE_NAME", "LEGEND_HEIGHT", "VERDICT_COLOURS", "forest_image", "write_forest_plot"]
