"""What each segmenter kind's checkpoint is: model types, names and the hub errors' wording."""
from __future__ import annotations

from pytest_masc.defaults import DEFAULT_SEGMENTER_MODELS
from pytest_masc.errors import SegmenterLoadError

from ..hub import ExpectedCheckpoint

#: The ``model_type`` values of ``config.json`` each kind accepts.
MODEL_TYPES = {"sam3": ("sam3", "sam3_video"), "clipseg": ("clipseg",)}
#: The model's name in messages.
MODEL_NAMES = {"sam3": "SAM3", "clipseg": "CLIPSeg"}
_MODEL_CLASSES = {"sam3": "Sam3Model", "clipseg": "CLIPSegForImageSegmentation"}
_HUB_NOTES = {
    "sam3": "facebook/sam3 is gated: accept the SAM License on its hub page and run "
            "`hf auth login` first",
    "clipseg": "CIDAS/clipseg-rd64-refined needs no login",
}


def expected_checkpoint(kind: str) -> ExpectedCheckpoint:
    """What a ``kind`` segmenter checkpoint holds, for :mod:`pytest_masc.metric.hub`'s errors."""
    return ExpectedCheckpoint(
        name=f"{MODEL_NAMES[kind]} segmenter checkpoint",
        contents=f"a {_MODEL_CLASSES[kind]} saved with save_pretrained: config.json, model.safetensors, "
                 "its CLIP tokenizer files and preprocessor_config.json",
        example=DEFAULT_SEGMENTER_MODELS[kind],
        point_at=f"--masc-segmenter={kind}=/path/to/checkpoint, or load_segmenter({kind!r}, '/path/to/checkpoint') in Python",
        hub_note=_HUB_NOTES[kind],
        error=SegmenterLoadError,
        model_types=MODEL_TYPES[kind],
        wanted=f"{MODEL_NAMES[kind]}: load_segmenter({kind!r}) needs a checkpoint such as "
               f"{DEFAULT_SEGMENTER_MODELS[kind]} (model_type {' or '.join(map(repr, MODEL_TYPES[kind]))})",
    )
