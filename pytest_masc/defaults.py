"""Defaults and names shared by the scorer and the plugin. Imports nothing, so the plugin can
validate its options without importing torch."""
from __future__ import annotations

DEFAULT_MODEL = "google/siglip2-so400m-patch16-naflex"
DEFAULT_MAX_PATCHES = 1024
DEFAULT_THRESHOLD = 0.5

#: accepted dtype names -> the ``torch`` attribute each one means
DTYPE_ALIASES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}

#: text-prompted segmenters that compute missing masks, and their default checkpoints
SEGMENTER_KINDS = ("sam3", "clipseg")
DEFAULT_SEGMENTER_MODELS = {"sam3": "facebook/sam3", "clipseg": "CIDAS/clipseg-rd64-refined"}
#: each segmenter's default threshold: SAM3's instance score, CLIPSeg's foreground probability
DEFAULT_SEGMENTER_THRESHOLDS = {"sam3": 0.5, "clipseg": 0.5}


def check_probability(name: str, value: float) -> float:
    """``value`` as a float; ``ValueError`` naming ``name`` unless it is in ``[0, 1]``."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value:g}")
    return value


def segmenter_threshold(kind: str, threshold: "float | None", name: str = "threshold") -> float:
    """The threshold a segmenter of ``kind`` uses: ``threshold``, or the kind's default for
    ``None``. The one check of a segmenter threshold: ``ValueError`` (naming ``name``) outside
    ``[0, 1]``. Equal results mean equal masks, so caches key on it."""
    return check_probability(name, DEFAULT_SEGMENTER_THRESHOLDS[kind] if threshold is None else threshold)
