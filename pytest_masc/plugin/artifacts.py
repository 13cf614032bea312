"""Failure panels (``--masc-artifacts=DIR``): reference + mask, output + mask, and the map of
each reference patch's best-match cosine in the output (CP's per-patch terms)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..gates import format_against, threshold_text
from ..metric.inputs import load_image, load_mask
from ..report.model import case_key

if TYPE_CHECKING:
    from ..gates import Record
    from ..types import Score

TILE_HEIGHT = 256
LABEL_HEIGHT = 18


def _tile(image: Image.Image) -> Image.Image:
    width = max(1, round(image.width * TILE_HEIGHT / image.height))
    return image.resize((min(width, 4 * TILE_HEIGHT), TILE_HEIGHT), Image.BILINEAR)


def _overlay(image: Any, mask: Any) -> Image.Image:
    """The image with its foreground tinted red and the background dimmed."""
    rgb = np.asarray(load_image(image), dtype=np.float32)
    weights = load_mask(mask)
    if weights.shape != rgb.shape[:2]:
        weights = np.asarray(Image.fromarray((weights * 255).astype(np.uint8)).resize(
            (rgb.shape[1], rgb.shape[0]), Image.NEAREST), dtype=np.float32) / 255.0
    tint = np.array([255.0, 40.0, 40.0])
    w = weights[..., None]
    mixed = rgb * (1 - 0.45 * w) + tint * 0.45 * w
    mixed = mixed * (0.55 + 0.45 * w)
    return _tile(Image.fromarray(mixed.clip(0, 255).astype(np.uint8)))


def heat_map(values: np.ndarray, low: float = -1.0, high: float = 1.0) -> Image.Image:
    """An RGB picture of a ``(Hp, Wp)`` map: blue (low) to red (high), NaN in grey."""
    finite = np.isfinite(values)
    t = np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0)
    rgb = np.stack([255 * t, 255 * (1 - np.abs(2 * t - 1)) * 0.8, 255 * (1 - t)], axis=-1)
    rgb[~finite] = 90
    return Image.fromarray(rgb.astype(np.uint8))


def _labelled(tile: Image.Image, label: str) -> Image.Image:
    canvas = Image.new("RGB", (tile.width, tile.height + LABEL_HEIGHT), (255, 255, 255))
    canvas.paste(tile, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 3), label[: max(8, tile.width // 5)], fill=(0, 0, 0))
    return canvas


def panel_path(directory: Path, nodeid: str) -> Path:
    """A file name for a test id: unsafe characters replaced, ``.png`` appended."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:180] or "case"
    return directory / f"{safe}.png"


def concept_label(record: Record) -> str:
    """``CP 0.950`` for the panel, with enough digits to fall on the right side of its
    ``min_concept`` gate, and the gate itself when CP fails it (``CP 0.9499 < min 0.95``)."""
    cp = record.scores.get("concept")
    if cp is None or math.isnan(cp):
        return "CP nan"
    minimum = record.gates.get("min_concept")
    text = f"CP {format_against(cp, [minimum] if minimum is not None else [], digits=3)}"
    return text + (f" < min {threshold_text(minimum, 3)}" if minimum is not None and cp < minimum else "")


def write_failure_panel(
    directory: Path,
    record: "Record",
    references: Sequence[Any],
    reference_masks: Sequence[Any],
    image: Any,
    mask: Any,
    scores: Sequence["Score"],
) -> Path:
    """Write the panel of a failing case's first reference; returns its path."""
    concept_map = scores[0].concept_map
    tiles = [
        _labelled(_overlay(references[0], reference_masks[0]), "reference + " + mask_label(record, "reference 1")),
        _labelled(_overlay(image, mask), "output + " + mask_label(record, "output")),
    ]
    if concept_map is not None:
        reference_tile = tiles[0]
        finite = concept_map[np.isfinite(concept_map)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        if high - low < 1e-6:
            low, high = low - 0.5, high + 0.5
        heat = heat_map(concept_map, low, high).resize((reference_tile.width, TILE_HEIGHT), Image.NEAREST)
        tiles.append(_labelled(heat, f"best-match cos {low:.2f} (blue) to {high:.2f} (red), {concept_label(record)}"))
    width = sum(t.width for t in tiles) + 8 * (len(tiles) - 1)
    panel = Image.new("RGB", (width, TILE_HEIGHT + LABEL_HEIGHT), (255, 255, 255))
    x = 0
    for tile in tiles:
        panel.paste(tile, (x, 0))
        x += tile.width + 8
    directory.mkdir(parents=True, exist_ok=True)
    path = panel_path(directory, _panel_name(record))
    panel.save(path)
    return path


def _panel_name(record: "Record") -> str:
    return case_key(record)


def mask_label(record: "Record", role: str) -> str:
    """``"mask"``, or ``"clipseg mask"`` when a segmenter computed the mask of ``role``."""
    for computed in record.computed_masks:
        if computed["role"] == role:
            return f"{computed['segmenter'].get('kind')} mask"
    return "mask"


def write_computed_masks(directory: Path, record: "Record", mask: Any, reference_masks: Sequence[Any]) -> None:
    """Write each mask a segmenter computed for ``record`` as a black-and-white PNG beside its
    panel (``<panel>.mask-output.png``, ``<panel>.mask-reference-1.png``) and note the file
    in the record; a write failure is noted instead."""
    stem = panel_path(directory, _panel_name(record)).with_suffix("")
    for computed in record.computed_masks:
        role = computed["role"]
        array = mask if role == "output" else reference_masks[int(role.split()[-1]) - 1]
        path = stem.with_name(f"{stem.name}.mask-{role.replace(' ', '-')}.png")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(array, dtype=bool).astype(np.uint8) * 255).save(path)
            computed["file"] = str(path)
        except OSError as error:
            computed["file"] = f"(not written: {error})"
