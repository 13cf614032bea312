"""Test helpers: tiny random-weight checkpoints (:mod:`.checkpoints`; SAM3 and CLIPSeg in :mod:`.segmenters`), hypothesis strategies
(:mod:`.strategies`, imported on its own) and fixture trees of the benchmark layouts.

Importing this package imports neither torch nor transformers: each helper imports them
when it runs.
"""
from __future__ import annotations

from .checkpoints import (
    TINY_TEXT_LENGTH,
    tiny_checkpoint,
    tiny_clip_checkpoint,
    tiny_config,
    tiny_dino_checkpoint,
    tiny_fixed_checkpoint,
)
from .segmenters import tiny_clipseg_checkpoint, tiny_sam3_checkpoint

__all__ = [
    "TINY_TEXT_LENGTH",
    "tiny_checkpoint",
    "tiny_clip_checkpoint",
    "tiny_config",
    "tiny_dino_checkpoint",
    "tiny_fixed_checkpoint",
    "tiny_sam3_checkpoint",
    "tiny_clipseg_checkpoint",
]
