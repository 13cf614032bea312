"""Masks for DreamBench++ computed by a segmenter (the data set ships none): which images need
one, with the subject to segment, and writing them in the mirror layout that
:func:`~pytest_masc.protocols.dreambench_plus.load_dreambench_plus` reads."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .dreambench_files import IMAGE_EXTENSIONS, mirrored_mask, read_collections


@dataclass(frozen=True)
class MaskWork:
    """What :func:`write_dreambench_masks` did: masks written now, masks already on disk."""

    written: int
    reused: int


def dreambench_mask_targets(root: Union[str, os.PathLike]) -> list[tuple[Path, str]]:
    """Every image that needs a mask, with the subject to segment in it (the class name on
    the first caption line): each reference under ``data/images`` and each seed-0 output
    ``samples/<method_dir>/tgt_image/<collection_id>/<prompt_index>_0.<ext>``."""
    root = Path(root)
    collections = read_collections(root)
    targets = [(c.image, c.subject) for c in collections.values()]
    samples = root / "samples"
    for output_dir in sorted(samples.glob("*/tgt_image/*")) if samples.is_dir() else []:
        collection = collections.get(output_dir.name)
        if collection is None or not output_dir.is_dir():
            continue
        for image in sorted(output_dir.iterdir()):
            if image.suffix.lower() in IMAGE_EXTENSIONS and image.stem.endswith("_0"):
                targets.append((image, collection.subject))
    return targets


def write_dreambench_masks(
    root: Union[str, os.PathLike],
    masks: Union[str, os.PathLike],
    segment: Any,
    *,
    chunk: int = 64,
) -> MaskWork:
    """Segment every DreamBench++ image that has no mask under ``masks`` yet and save its
    mask there as a PNG in the mirror layout :func:`load_dreambench_plus` reads.

    ``segment(images, texts)`` returns one ``HxW`` bool mask per pair (e.g. a loaded
    :class:`~pytest_masc.metric.segmentation.Segmenter`'s ``segment_many``). Masks already
    on disk are kept, so a second run segments nothing. Empty masks are written too: the
    loader drops their units as ``small_*_mask``.
    """
    from PIL import Image

    root, masks = Path(root), Path(masks)
    targets = dreambench_mask_targets(root)
    todo = [(image, subject) for image, subject in targets if mirrored_mask(masks, root, image) is None]
    reused = len(targets) - len(todo)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        for (image, _), mask in zip(part, segment([image for image, _ in part], [subject for _, subject in part])):
            target = (masks / image.relative_to(root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(target)
    return MaskWork(written=len(todo), reused=reused)
