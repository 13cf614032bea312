"""The metric-drift canary: a small fixed set of synthetic samples, generated deterministically here (no downloads), whose scores show how far the metric itself moves between environments.

A baseline stores the canary's CP and PF beside the environment they were scored in
(:func:`environment`: pytest-masc, torch and transformers versions, device kind, dtype, attention
implementation). When a later run's environment differs, the canary is scored again: a change of
its scores is the metric's own drift (a new torch kernel, another GPU, bf16), not the model's.

Each sample is a textured shape (the concept) on a background: the reference shows it on one
background, the output the same shape moved and resized on another, with its true mask, and a
prompt naming the scene. Images are built with numpy from fixed seeds: the same arrays on every
machine and version.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .scorer import MaSC

#: (name, shape, colour RGB, output background RGB, prompt)
CANARY_ITEMS = (
    ("red-disc-grass", "disc", (200, 40, 40), (60, 140, 60), "a red ball on green grass"),
    ("blue-box-sand", "box", (40, 70, 190), (210, 190, 140), "a blue box on the sand"),
    ("yellow-ring-snow", "ring", (230, 200, 40), (235, 240, 245), "a yellow ring in the snow"),
    ("purple-kite-sky", "kite", (130, 50, 150), (120, 170, 230), "a purple kite in the blue sky"),
)
SIZE = 96  # pixels per side
_SEED = 21  # fixed: the canary must never change


def _shape_mask(shape: str, size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A boolean ``(size, size)`` mask of ``shape`` around ``centre`` (row, column)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = rows - centre[0], cols - centre[1]
    if shape == "disc":
        return dy ** 2 + dx ** 2 <= radius ** 2
    if shape == "box":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if shape == "ring":
        distance = np.sqrt(dy ** 2 + dx ** 2)
        return (distance <= radius) & (distance >= radius * 0.55)
    return np.abs(dy) / 1.2 + np.abs(dx) <= radius  # kite: a rhombus


def _picture(rng: np.random.Generator, mask: np.ndarray, colour: Any, background: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image: a noisy background with the shape painted, striped, on it."""
    size = mask.shape[0]
    image = np.asarray(background, np.float64) + rng.normal(0.0, 12.0, (size, size, 3))
    stripes = 0.75 + 0.25 * np.sin(np.arange(size) / 3.0)[None, :, None]
    shape = np.asarray(colour, np.float64) * stripes + rng.normal(0.0, 6.0, (size, size, 3))
    image = np.where(mask[..., None], shape, image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def canary_samples() -> list[tuple[str, Any]]:
    """``(name, Sample)`` of each canary item, identical on every call and machine."""
    from ..types import Sample

    rng = np.random.default_rng(_SEED)
    samples = []
    for name, shape, colour, background, prompt in CANARY_ITEMS:
        reference_mask = _shape_mask(shape, SIZE, (SIZE / 2, SIZE / 2), SIZE * 0.3)
        output_mask = _shape_mask(shape, SIZE, (SIZE * 0.6, SIZE * 0.4), SIZE * 0.22)
        reference = _picture(rng, reference_mask, colour, (128, 128, 128))
        output = _picture(rng, output_mask, colour, background)
        subject = prompt.split(" on ")[0].split(" in ")[0]
        samples.append((name, Sample(reference, reference_mask, output, output_mask, prompt, subject=subject)))
    return samples


def score_canary(masc: "MaSC") -> dict[str, Any]:
    """The canary scored with ``masc``: ``{"items": [names], "scores": {"CP": [...], "PF": [...]},
    "environment": environment(masc)}`` (a NaN score as None)."""
    named = canary_samples()
    scores = masc.score_many([sample for _, sample in named])

    def plain(value: float) -> Any:
        return float(value) if math.isfinite(value) else None

    return {
        "items": [name for name, _ in named],
        "scores": {"CP": [plain(s.concept) for s in scores], "PF": [plain(s.prompt) for s in scores]},
        "environment": environment(masc),
    }


def environment(masc: "MaSC") -> dict[str, Any]:
    """What the metric runs on: pytest-masc, torch and transformers versions, device kind (with
    the GPU's name on CUDA), dtype, and the attention implementation transformers chose."""
    import torch
    import transformers

    from .. import __version__

    device = masc.device
    kind = device.type
    if kind == "cuda":
        kind = f"cuda {torch.cuda.get_device_name(device)}"
    config = getattr(masc.model, "config", None)
    attention = getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None)
    return {
        "pytest_masc": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "device": kind, "dtype": str(masc.dtype).removeprefix("torch."), "attention": attention,
    }


__all__ = ["CANARY_ITEMS", "SIZE", "canary_samples", "environment", "score_canary"]
