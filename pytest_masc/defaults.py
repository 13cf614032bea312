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
