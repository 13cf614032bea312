"""Reading images and masks from paths, PIL images and arrays, with errors that name the input.

Images become RGB ``PIL.Image`` objects. Masks become ``float32`` arrays of shape ``(H, W)``
holding foreground weights in ``[0, 1]``:

* ``bool`` arrays and two-valued masks (``{0, v}`` for any ``v > 0``: 0/1, 0/255, 0/1.0 …)
  become exactly 0 and 1, so "foreground = non-zero" holds for label masks;
* label maps, whole numbers up to :data:`MAX_LABEL` (``{0, 1, 2}``: instance or class ids),
  are foreground wherever non-zero;
* other ("soft") masks are weights: ``uint8`` and values above 1 are divided by 255
  (16-bit by 65535), floats in ``[0, 1]`` are kept. After resizing to the patch grid a
  patch is foreground when its weight reaches the threshold (0.5).

Mask files: modes ``1``, ``L``, ``P`` (palette indices are labels: index 0 is
background, every other index foreground), ``I;16``/``I``
(16-bit), ``RGB`` (luminance) and ``LA``/``RGBA`` (the alpha channel when it is not
constant, else the luminance). A mask must have its image's size (checked by the scorer).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
MaskInput = Union[str, os.PathLike, Image.Image, np.ndarray]

#: Masks of whole numbers no larger than this, with three or more values, are label maps.
MAX_LABEL = 32

#: Largest image, in pixels, that is decoded (PIL's own limit is 89 MP with a warning).
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def describe(source: Any) -> str:
    """A short name for an input in error messages: the path, or the object's kind and size."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {tuple(source.shape)}>"
    return f"<{type(source).__name__}>"


def source_key(source: Any) -> tuple:
    """A hashable identity for an input: path, size and mtime for files, a content hash else.

    Two inputs with the same key have the same pixels, so they share one encoding.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            stat = path.stat()
        except OSError:
            return ("path", str(path.absolute()))
        return ("path", str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if isinstance(source, Image.Image):
        content = hashlib.blake2b(source.tobytes(), digest_size=16)
        if source.mode in ("P", "PA"):  # the same indices under another palette are other pixels
            content.update(bytes(source.getpalette() or ()))
        return ("pil", source.mode, source.size, content.hexdigest())
    if isinstance(source, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(source).tobytes(), digest_size=16).hexdigest()
        return ("array", str(source.dtype), source.shape, digest)
    raise InputError(
        f"{describe(source)}: expected a path, a PIL image or a numpy array"
    )


def _open_file(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise InputError(f"{path}: {what} file not found")
    if path.is_dir():
        raise InputError(f"{path}: {what} path is a directory, not an image file")
    # Worker threads open files concurrently: PIL's global limit and the warning filters
    # are left alone (changing them here raced and leaked into the caller's process);
    # the size is checked from the header, before any pixel is decoded.
    try:
        image = Image.open(path)
        try:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            image.load()
        except BaseException:
            image.close()  # do not leave the file open until garbage collection
            raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning: under -W error
        raise InputError(
            f"{path}: {what} is too large to decode safely (over {MAX_IMAGE_PIXELS:,} pixels; "
            "a decompression bomb or an unreasonably large image)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: {what} file is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: {what} file is truncated or corrupt ({error})") from None
    return image


def load_image(source: ImageInput, what: str = "image") -> Image.Image:
    """An RGB ``PIL.Image`` from a path, a PIL image (any mode) or an ``HxWx3`` uint8 array."""
    if isinstance(source, (str, os.PathLike)):
        image = _open_file(Path(source), what)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InputError(
                f"{describe(source)}: {what} arrays must be HxWx3 uint8 (RGB)"
            )
        image = Image.fromarray(source, mode=None)
    else:
        raise InputError(f"{describe(source)}: {what} must be a path, a PIL image or an HxWx3 uint8 array")
    if image.width < 1 or image.height < 1:
        raise InputError(f"{describe(source)}: {what} is empty ({image.width}x{image.height})")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise InputError(f"{describe(source)}: cannot convert a {image.mode!r} {what} to RGB ({error})") from None


def _mask_array_from_pil(image: Image.Image, name: str = "mask") -> np.ndarray:
    try:
        return _mask_array_from_mode(image)
    except (ValueError, OSError) as error:  # modes PIL cannot convert, such as "La" or "LAB"
        raise InputError(f"{name}: cannot read a mask from a {image.mode!r} image ({error})") from None


def _mask_array_from_mode(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("LA", "RGBA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() != alpha.max():
            return alpha
        return np.asarray(image.convert("L"))
    if mode == "P":
        return np.asarray(image) > 0  # palette indices are labels; index 0 is background
    if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image)
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)
        return array
    return np.asarray(image.convert("L"))


def mask_weights(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """Foreground weights ``float32 (H, W)`` in ``[0, 1]`` from a mask array (rules above)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"{name}: a mask must be a 2-D HxW array, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise InputError(f"{name}: mask is empty (shape {tuple(array.shape)})")
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return _integer_mask_weights(array, name)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: mask dtype {array.dtype} is not numeric")
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{name}: mask holds NaN or infinite values")
    if values.min() < 0:
        raise InputError(f"{name}: mask holds negative values (min {values.min():g})")
    peak = float(values.max())
    if peak == 0:
        return values  # all background
    distinct = np.unique(values)
    if len(distinct) <= 2 and distinct[0] == 0 or len(distinct) == 1:
        return (values > 0).astype(np.float32)
    if peak <= MAX_LABEL and bool(np.all(distinct == np.round(distinct))):
        # Small whole numbers are instance or class ids (0 = background), not faint weights:
        # dividing {0, 1, 2} by 255 would silently leave no foreground at all.
        return (values > 0).astype(np.float32)
    if peak > 255:
        return np.clip(values / 65535.0, 0.0, 1.0)
    if peak > 1.0:
        return np.clip(values / 255.0, 0.0, 1.0)
    return values


def _integer_mask_weights(array: np.ndarray, name: str) -> np.ndarray:
    """:func:`mask_weights` for integer masks, the usual case (8-bit PNGs): the same rules as
    for floats holding whole numbers, with one float32 array made, for the result."""
    low, peak = int(array.min()), int(array.max())
    if low < 0:
        raise InputError(f"{name}: mask holds negative values (min {low})")
    weights = np.empty(array.shape, np.float32)
    if peak == 0:
        weights.fill(0.0)  # all background
        return weights
    two_valued = low == peak or (low == 0 and np.count_nonzero(array == peak) + np.count_nonzero(array == 0) == array.size)
    if two_valued or peak <= MAX_LABEL:
        # Two values, or small whole numbers: binary (instance or class ids, 0 = background).
        np.greater(array, 0, out=weights, casting="unsafe")
        return weights
    weights[...] = array
    weights /= np.float32(65535.0 if peak > 255 or array.dtype == np.uint16 else 255.0)
    return np.minimum(weights, np.float32(1.0), out=weights)


def load_mask(source: MaskInput, what: str = "mask") -> np.ndarray:
    """Foreground weights ``float32 (H, W)`` from a path, a PIL image or an ``HxW`` array."""
    if isinstance(source, (str, os.PathLike)):
        array = _mask_array_from_pil(_open_file(Path(source), what), f"{source} ({what})")
    elif isinstance(source, Image.Image):
        array = _mask_array_from_pil(source, f"{describe(source)} ({what})")
    elif isinstance(source, np.ndarray):
        array = source
    else:
        raise InputError(f"{describe(source)}: {what} must be a path, a PIL image or an HxW array")
    return mask_weights(array, f"{describe(source)} ({what})")
