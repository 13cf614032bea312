"""Preprocessing without per-call framework overhead: resize, rescale, patchify.

Numerically the same as ``Siglip2ImageProcessorPil`` (NaFlex: the same PIL bilinear resize
to the same size, then ``(x / 255 - 0.5) / 0.5`` and row-major patches of ``P x P x 3``
values) and ``SiglipImageProcessorPil`` with bilinear resizing (fixed resolution: the
same, to the model's square), but it works on the uint8 image and skips the processor's
format probing, float64 rescaling and padding to the patch budget, which cost as much as
the resize itself. Both kinds of tower get their pixels in this patch layout.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

import numpy as np
from PIL import Image


@lru_cache(maxsize=4096)
def naflex_size(height: int, width: int, patch_size: int, max_num_patches: int) -> tuple[int, int]:
    """Resized ``(height, width)``: multiples of ``patch_size`` with at most ``max_num_patches``
    patches, aspect ratio kept as closely as the grid allows (SigLIP2's own rule)."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches

    return get_image_size_for_max_num_patches(height, width, patch_size, max_num_patches)


def patch_normalisation(
    patch_size: int,
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
    std: tuple[float, float, float] = (0.5, 0.5, 0.5),
) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)``, each ``(P * P * 3,)`` float32: a uint8 patch ``x`` normalises to
    ``x / scale - offset`` = ``(x / 255 - mean) / std`` per channel."""
    scale = np.tile(np.asarray(std, np.float32) * 255.0, patch_size * patch_size)
    offset = np.tile(np.asarray(mean, np.float32) / np.asarray(std, np.float32), patch_size * patch_size)
    return scale, offset


def naflex_patches(
    image: Image.Image,
    patch_size: int,
    max_num_patches: int,
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
    std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    *,
    normalise: bool = True,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Patchify an RGB image for a SigLIP2 NaFlex vision tower.

    Args:
        image: RGB ``PIL.Image``.
        patch_size: ``P`` pixels.
        max_num_patches: the NaFlex patch budget.
        mean, std: per-channel normalisation after scaling to ``[0, 1]``.
        normalise: ``False`` returns the uint8 patches, to normalise later on the device
            with :func:`patch_normalisation` (a quarter of the bytes to copy).

    Returns:
        ``(patches, (Hp, Wp))``: ``patches`` is ``(Hp * Wp, P * P * 3)`` float32 (uint8 when
        not normalised), row-major over the grid, each patch ordered (row, column, channel);
        no padding.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = naflex_size(image.height, image.width, patch_size, max_num_patches)
    return resized_patches(image, size, patch_size, mean, std, normalise=normalise)


def resized_patches(
    image: Image.Image,
    size: tuple[int, int],
    patch_size: int,
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
    std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    *,
    normalise: bool = True,
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`naflex_patches` at a given ``(height, width)``: a fixed-resolution tower's
    square, or the NaFlex size. Both must be multiples of ``patch_size``."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    height, width = size
    if (width, height) != image.size:
        image = image.resize((width, height), resample=Image.BILINEAR)
    pixels = np.asarray(image)  # (H, W, 3) uint8
    grid = (height // patch_size, width // patch_size)
    patches = (
        pixels.reshape(grid[0], patch_size, grid[1], patch_size, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(grid[0] * grid[1], patch_size * patch_size * 3)
    )
    if not normalise:
        return np.ascontiguousarray(patches), grid
    scale, offset = patch_normalisation(patch_size, mean, std)
    return patches.astype(np.float32) / scale - offset, grid


def fast_preprocess_settings(image_processor: Any, patch_size: Optional[int] = None) -> Optional[dict[str, Any]]:
    """Arguments for :func:`naflex_patches` (or :func:`resized_patches`) when
    ``image_processor`` does exactly what they do (bilinear resize, 1/255 rescale,
    normalise); ``None`` otherwise (let the processor work). ``patch_size``: the tower's, for
    processors that do not patchify (fixed resolution); ``None`` reads the processor's."""
    get = lambda name, default=None: getattr(image_processor, name, default)  # noqa: E731
    patch_size = get("patch_size") if patch_size is None else patch_size
    resample = get("resample")
    standard = (
        get("do_resize", True) and get("do_rescale", True) and get("do_normalize", True)
        and resample is not None and int(resample) == int(Image.BILINEAR)
        and abs(float(get("rescale_factor", 1 / 255)) - 1 / 255) < 1e-12
        and isinstance(patch_size, int)
    )
    if not standard:
        return None
    mean, std = get("image_mean"), get("image_std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    return {"patch_size": int(patch_size), "mean": tuple(map(float, mean)), "std": tuple(map(float, std))}


def image_to_patches(pixel_values: np.ndarray, patch_size: int) -> np.ndarray:
    """A processor's ``(3, H, W)`` image as ``(Hp * Wp, P * P * 3)`` patches (the layout above)."""
    channels, height, width = pixel_values.shape
    grid = (height // patch_size, width // patch_size)
    return np.ascontiguousarray(
        pixel_values.reshape(channels, grid[0], patch_size, grid[1], patch_size)
        .transpose(1, 3, 2, 4, 0)
        .reshape(grid[0] * grid[1], patch_size * patch_size * channels)
    )
