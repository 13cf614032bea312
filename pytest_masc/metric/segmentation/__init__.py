"""Text-prompted foreground masks: the subject's pixels in an image, found from its name.

MaSC needs a foreground mask for every reference and generated image. When a suite does
not ship masks, a segmenter makes them from the subject text, through transformers:

* ``"sam3"``: ``transformers.Sam3Model`` (default checkpoint ``facebook/sam3``). The
  subject text is the concept prompt; the mask is the union of the detected instances
  whose score (instance logit times presence logit, both through a sigmoid) passes
  ``threshold``, each instance mask resized bilinearly to the image and cut at
  ``mask_threshold``. Pre- and post-processing are implemented here, equal to
  transformers' ``Sam3ImageProcessor`` (which needs torchvision) on float32 models:
  ``scripts/compare_sam3_processor.py`` checks that (images with transparency
  composited over white, as that processor does, for the comparison).
* ``"clipseg"``: ``transformers.CLIPSegForImageSegmentation`` (default checkpoint
  ``CIDAS/clipseg-rd64-refined``) with its PIL image processor: the mask is
  ``sigmoid(logits)`` resized bilinearly (``align_corners=False``) to the image and cut
  at ``threshold``.

Licences of the default checkpoints (their own, not this package's):

* ``facebook/sam3``: Meta's SAM License (a custom licence, last updated 2025-11-19: a
  royalty-free licence to use, reproduce, distribute and modify, commercial use included;
  redistributions and derivatives carry a copy of it; subject to trade controls). The hub
  repository is gated: request access on its page, then ``hf auth login``.
* ``CIDAS/clipseg-rd64-refined``: Apache-2.0 on the hub (as stated in the issue; not
  re-checked from this offline environment).

Every segmenter loads like :class:`pytest_masc.MaSC` (hub id or local directory, revision,
``local_files_only``, device and dtype), takes lists of images and texts in one call,
runs each distinct image through the vision tower once and each distinct text through the
text tower once, batches the rest, and keeps an LRU cache of masks so that each distinct
(image, text, settings) is segmented once; :attr:`Segmenter.stats` counts the work.
Masks are ``HxW`` numpy ``bool`` arrays at the image's own size; an image where nothing
is found gets an all-false mask. Images are read as the scorer reads them
(:func:`pytest_masc.metric.inputs.load_image`: transparency dropped, as the reference
implementation does), so a mask describes the pixels that are scored.

Modules: :mod:`.checkpoints` (what each kind's checkpoint is), :mod:`.segmenter` (the
cached, batching :class:`Segmenter`), :mod:`.sam3` and :mod:`.clipseg` (the backends),
:mod:`.loading` (:func:`load_segmenter`).
"""
from __future__ import annotations

from pytest_masc.defaults import DEFAULT_SEGMENTER_MODELS, DEFAULT_SEGMENTER_THRESHOLDS, SEGMENTER_KINDS

from ..inputs import ImageInput, read_image
from .checkpoints import expected_checkpoint
from .clipseg import ClipSegSegmenter, clipseg_mask
from .loading import load_segmenter
from .sam3 import (
    DEFAULT_SAM3_MASK_THRESHOLD,
    Sam3Preprocessing,
    Sam3Segmenter,
    resize_uint8_like_torchvision,
    sam3_instance_scores,
    sam3_pixel_values,
    sam3_union_mask,
)
from .segmenter import (
    Segmenter,
    SegmentStats,
    TextTruncatedWarning,
    foreground_fraction,
    image_key,
)

# Segmenter.from_pretrained is load_segmenter; attached here because loading imports the
# backends, which import segmenter (a class attribute there would be an import cycle).
Segmenter.from_pretrained = staticmethod(load_segmenter)  # type: ignore[attr-defined]

__all__ = [
    "DEFAULT_SAM3_MASK_THRESHOLD", "DEFAULT_SEGMENTER_MODELS", "DEFAULT_SEGMENTER_THRESHOLDS",
    "SEGMENTER_KINDS", "ClipSegSegmenter", "ImageInput", "Sam3Preprocessing", "Sam3Segmenter",
    "SegmentStats", "Segmenter", "TextTruncatedWarning", "clipseg_mask", "expected_checkpoint",
    "foreground_fraction", "image_key", "load_segmenter", "read_image", "resize_uint8_like_torchvision",
    "sam3_instance_scores", "sam3_pixel_values", "sam3_union_mask",
]
