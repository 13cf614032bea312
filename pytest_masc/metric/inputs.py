"""Reading images and masks from paths, PIL images and arrays, with errors that name the input.

Images become RGB ``PIL.Image`` objects through one reader, :func:`load_image`, used by
the scorer and the segmenters alike, so both see the same pixels: transparency is dropped
(PIL's ``convert("RGB")``, as the reference implementation reads images; ``transparent="white"``
composites over white instead), and files over :data:`MAX_IMAGE_PIXELS` are refused from
their header. Masks become ``float32`` arrays of shape ``(H, W)``
of foreground weights, read by the reference implementation's rule unless a departure
below applies; the weights are resized bilinearly onto the patch grid, clamped to
``[0, 1]`` and thresholded at the scorer's ``fg_threshold`` (default
:data:`~pytest_masc.defaults.DEFAULT_THRESHOLD`, see :mod:`pytest_masc.functional`). :func:`read_mask`
also returns a :class:`MaskReading` saying which rule applied (README: "How masks are read"):

* ``"reference"``: the values as float32, divided by 255 when the largest exceeds
  ``1 + 1e-6`` (so weights above 1 are possible, and clamped only after resizing);
* ``"two-valued"``: ``{0, v}`` where the reference would weigh ``v`` below 1 (0/0.3, 0/7,
  0/100 …), or any ``{0, v}`` from a 16-bit image: exactly 0 and 1;
* ``"label map"``: three or more whole numbers from 0 up to :data:`MAX_LABEL`
  (``{0, 1, 2}``: instance or class ids) with sharp edges: foreground wherever non-zero.
  Whole numbers that change in steps of 1 (a faint soft mask) keep the reference rule;
* ``"palette"``: ``P`` images: palette index 0 is background, every other index foreground;
* ``"16-bit"``: ``I;16`` images (16-bit PNG files) with values above 255 are divided by
  65535, unless that leaves no weight above the threshold (then the reference rule).

Every departure makes the weights at least the reference's wherever the reference sees
foreground (except 16-bit images), so no foreground the reference sees is lost.
:class:`MaskReadingWarning` names inputs whose values could mean two things.

Mask files: modes ``1``, ``L``, ``P``, ``I;16``/``I``/``F``, ``RGB`` (luminance) and
``LA``/``RGBA`` (the alpha channel when it is not constant, else the luminance). A mask
must have its image's size (checked by the scorer). NaN, infinite and negative values
are errors (the reference would blend them into the neighbouring patches).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..defaults import DEFAULT_THRESHOLD
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
    """The decoded file, its size checked from the header before any pixel is decoded.

    Every failure is an :class:`InputError` naming ``path`` and saying "cannot read the ``what``"."""
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
            f"{path}: cannot read the {what}: too large to decode safely (over {MAX_IMAGE_PIXELS:,} pixels; "
            "a decompression bomb or an unreasonably large image)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: cannot read the {what}: the file is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: cannot read the {what}: the file is truncated or corrupt ({error})") from None
    return image


#: How :func:`load_image` treats transparent pixels: ``"drop"`` (the default) or ``"white"``.
TRANSPARENCY_POLICIES = ("drop", "white")


def _to_rgb(image: Image.Image, transparent: str) -> Image.Image:
    """``image`` in mode ``RGB``. ``"drop"``: PIL's ``convert("RGB")``, the colour under a
    transparent pixel is kept (as the reference implementation reads images);
    ``"white"``: composited over white (as transformers' ``convert_to_rgb``)."""
    if image.mode == "RGB":
        return image
    if transparent == "white" and image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _image_from_array(source: np.ndarray, what: str) -> Image.Image:
    if source.dtype != np.uint8 or not (source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (3, 4))):
        raise InputError(
            f"{describe(source)}: {what} arrays must be HxW, HxWx3 or HxWx4 uint8 (grey, RGB or RGBA)"
        )
    return Image.fromarray(source, mode={2: "L", 3: "RGB", 4: "RGBA"}[source.ndim if source.ndim == 2 else source.shape[2]])


def load_image(source: ImageInput, what: str = "image", *, transparent: str = "drop") -> Image.Image:
    """An RGB ``PIL.Image`` from a path, a PIL image (any mode) or a uint8 array ``HxW``
    (grey), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA): the one image reader of the scorer and
    the segmenters, so both see the same pixels.

    ``transparent``: ``"drop"`` (default, the reference implementation's
    ``convert("RGB")``: alpha is ignored) or ``"white"`` (alpha composited over white).
    Files over :data:`MAX_IMAGE_PIXELS` are refused from their header.

    Raises:
        InputError: naming the input: missing, unreadable, too large or empty images,
            arrays of another shape or dtype.
    """
    if transparent not in TRANSPARENCY_POLICIES:
        raise ValueError(f"transparent must be one of {TRANSPARENCY_POLICIES}, got {transparent!r}")
    if isinstance(source, (str, os.PathLike)):
        image = _open_file(Path(source).expanduser(), what)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _image_from_array(source, what)
    else:
        raise InputError(f"{describe(source)}: {what} must be a path, a PIL image or a uint8 array")
    if image.width < 1 or image.height < 1:
        raise InputError(f"{describe(source)}: {what} is empty ({image.width}x{image.height})")
    try:
        return _to_rgb(image, transparent)
    except (ValueError, OSError) as error:
        raise InputError(f"{describe(source)}: cannot convert a {image.mode!r} {what} to RGB ({error})") from None


def read_image(source: ImageInput, what: str = "image", *, transparent: str = "drop") -> np.ndarray:
    """:func:`load_image` as a C-contiguous ``HxWx3`` uint8 array."""
    return np.ascontiguousarray(np.asarray(load_image(source, what, transparent=transparent)))


@dataclass(frozen=True)
class MaskReading:
    """How a mask's values became foreground weights (one of :data:`MASK_RULES`).

    ``same_as_reference`` is True when the weights equal the reference implementation's
    reading of ``numpy.asarray`` of the same input (False where they differ, or where the
    reference cannot read the input, such as RGB or RGBA masks). ``channel`` names the
    part of an image that was read (``""``: the values themselves, ``"alpha"``,
    ``"luminance"``, ``"palette index"``). ``note`` says why, in words.
    """

    rule: str
    same_as_reference: bool
    channel: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``Score.extras``."""
        return {"rule": self.rule, "same_as_reference": self.same_as_reference,
                "channel": self.channel, "note": self.note}


#: The readings, in the words of :attr:`MaskReading.rule` (README: "How masks are read").
MASK_RULES = ("reference", "two-valued", "label map", "palette", "16-bit")


class MaskReadingWarning(UserWarning):
    """A mask whose values could mean two things; the message names the input and the
    reading chosen (also recorded in ``Score.extras["ref_mask_reading"]`` / ``["out_mask_reading"]``)."""


def _mask_array_from_pil(image: Image.Image, name: str = "mask") -> tuple[np.ndarray, str]:
    """The array to read from a mask image, and the channel it came from."""
    try:
        return _mask_array_from_mode(image)
    except (ValueError, OSError) as error:  # modes PIL cannot convert, such as "La" or "LAB"
        raise InputError(f"{name}: cannot read a mask from a {image.mode!r} image ({error})") from None


def _mask_array_from_mode(image: Image.Image) -> tuple[np.ndarray, str]:
    mode = image.mode
    if mode in ("LA", "RGBA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() != alpha.max():
            return alpha, "alpha"
        return np.asarray(image.convert("L")), "luminance"
    if mode == "P":
        return np.asarray(image), "palette index"
    if mode in ("1", "L", "I", "F"):
        return np.asarray(image), ""
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), ""
    return np.asarray(image.convert("L")), "luminance"


def reference_weights(array: np.ndarray) -> np.ndarray:
    """The reference implementation's pixel weights (before its resize and clamp): float32
    values, divided by 255 when the largest exceeds ``1 + 1e-6``. May exceed 1."""
    weights = np.asarray(array).astype(np.float32)
    if weights.max() > 1.0 + 1e-6:
        weights /= np.float32(255.0)
    return weights


def _validated(array: Any, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"{name}: a mask must be a 2-D HxW array, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise InputError(f"{name}: mask is empty (shape {tuple(array.shape)})")
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{name}: mask dtype {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{name}: mask holds NaN or infinite values")
    low = array.min()
    if low < 0:
        raise InputError(f"{name}: mask holds negative values (min {low:g})")
    return array


def _graded(array: np.ndarray) -> bool:
    """True when neighbouring non-zero pixels step by exactly 1 more often than the
    foreground meets the background: the rings of a faint soft mask, not labelled regions."""
    values = array.astype(np.int64)
    steps = border = 0
    for a, b in ((values[:, 1:], values[:, :-1]), (values[1:], values[:-1])):
        inside = (a > 0) & (b > 0)
        steps += int(np.count_nonzero(inside & (np.abs(a - b) == 1)))
        border += int(np.count_nonzero((a > 0) != (b > 0)))
    return steps > border


def _fmt(value: Any) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def _reference_effect(top: float, threshold: float) -> str:
    """What the reference's weight ``top`` for the whole foreground does on the patch grid."""
    if top <= threshold:
        return f"the reference reads it at weight {_fmt(top)}: no foreground above {_fmt(threshold)}"
    change = "narrows" if top < 1.0 else "widens"
    return f"the reference reads it at weight {_fmt(top)}, which {change} its foreground on the patch grid"


def read_mask_array(
    array: Any, name: str = "mask", *, channel: str = "", sixteen_bit: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[np.ndarray, MaskReading]:
    """Foreground weights ``float32 (H, W)`` and how they were read (module docstring).

    ``channel``: the image channel the values come from (see :class:`MaskReading`);
    ``sixteen_bit``: they come from a 16-bit image (scale 0..65535); ``threshold``: the
    foreground threshold the weights will be cut at (the scorer's ``fg_threshold``). Warns
    (:class:`MaskReadingWarning`, naming ``name``) where the input is ambiguous.
    """
    array = _validated(array, name)
    if channel == "palette index":
        weights = (array > 0).astype(np.float32)
        same = bool(np.array_equal(weights, reference_weights(array)))
        return weights, MaskReading("palette", same, channel, "palette indices are labels: index 0 is background, every other index foreground")
    if array.dtype == bool:
        return array.astype(np.float32), MaskReading("reference", channel == "", channel, "bool: 0 and 1")
    reference = reference_weights(array)
    same = channel == ""  # the reference reads only 2-D arrays: never a channel of an image
    peak = array.max()
    if peak == 0:
        return reference, MaskReading("reference", same, channel, "all zero: no foreground")
    top = float(reference.max())
    zeros = int(np.count_nonzero(array == 0))
    if zeros and zeros + int(np.count_nonzero(array == peak)) == array.size:  # {0, v}
        if top == 1.0:
            return reference, MaskReading("reference", same, channel, f"two values {{0, {_fmt(peak)}}}: 0 and 1")
        if top < 1.0 or sixteen_bit:
            return (array > 0).astype(np.float32), MaskReading(
                "two-valued", False, channel,
                f"two values {{0, {_fmt(peak)}}}: foreground wherever non-zero ({_reference_effect(top, threshold)})")
    if sixteen_bit and peak > 255:
        weights = array.astype(np.float32) / np.float32(65535.0)
        if weights.max() > threshold:
            return weights, MaskReading(
                "16-bit", False, channel, f"16-bit image: values divided by 65535 ({_reference_effect(top, threshold)})")
        warnings.warn(MaskReadingWarning(
            f"{name}: 16-bit mask peaks at {int(peak)}, at most {_fmt(threshold)} x 65535, so on the 16-bit scale it "
            f"has no foreground; read as the reference does instead (divided by 255: weights up to "
            f"{_fmt(top)}, clamped after resizing)"), stacklevel=3)
        return reference, MaskReading("reference", same, channel, f"16-bit image peaking at {int(peak)}: divided by 255")
    whole = np.issubdtype(array.dtype, np.integer) or bool(np.all(array == np.round(array)))
    if whole and zeros and 1 < peak <= MAX_LABEL:
        if not _graded(array):
            return (array > 0).astype(np.float32), MaskReading(
                "label map", False, channel,
                f"whole numbers 0..{int(peak)} with sharp edges: labels, foreground wherever non-zero "
                f"(the reference divides them by 255: no foreground)")
        warnings.warn(MaskReadingWarning(
            f"{name}: whole numbers 0..{int(peak)} changing in steps of 1 look like a faint soft mask, "
            f"not a label map; read as the reference does (divided by 255: weights up to {_fmt(top)}, "
            "no foreground). Pass a bool mask (labels > 0) if they are labels."), stacklevel=3)
        return reference, MaskReading("reference", same, channel, f"faint soft mask: weights up to {_fmt(top)}, no foreground")
    if sixteen_bit and peak > 1:
        warnings.warn(MaskReadingWarning(
            f"{name}: 16-bit mask holds values only up to {_fmt(peak)}: read as 8-bit values (divided by "
            "255), as the reference does, not as a faint 16-bit mask"), stacklevel=3)
        return reference, MaskReading("reference", same, channel, f"16-bit image with values up to {_fmt(peak)}: divided by 255")
    if top > 1.0 + 1e-6:
        warnings.warn(MaskReadingWarning(
            f"{name}: values up to {_fmt(peak)} read as the reference does: divided by 255, weights up to "
            f"{_fmt(top)}, clamped to 1 only after resizing, which widens the foreground on the patch grid. "
            "Pass weights in 0..1 or 0..255 (or a 16-bit PNG file) to avoid this."), stacklevel=3)
        return reference, MaskReading("reference", same, channel, f"values up to {_fmt(peak)} divided by 255: weights up to {_fmt(top)}")
    divided = "divided by 255" if peak > 1.0 + 1e-6 else "kept as weights"
    if top <= threshold:
        warnings.warn(MaskReadingWarning(
            f"{name}: mask is non-zero but its largest weight is {_fmt(top)} (values {divided}), so no "
            f"pixel is above the foreground threshold {_fmt(threshold)}: it reads as empty, as in the reference"),
            stacklevel=3)
        return reference, MaskReading("reference", same, channel, f"values {divided}: largest weight {_fmt(top)}, no foreground")
    return reference, MaskReading("reference", same, channel, f"values up to {_fmt(peak)} {divided}")


def mask_weights(array: np.ndarray, name: str = "mask") -> np.ndarray:
    """Foreground weights ``float32 (H, W)`` from a mask array (rules above)."""
    return read_mask_array(array, name)[0]


def read_mask(source: MaskInput, what: str = "mask", *, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, MaskReading]:
    """Foreground weights ``float32 (H, W)`` from a path, a PIL image or an ``HxW`` array,
    and how they were read (:class:`MaskReading`) for a foreground cut at ``threshold``."""
    name = f"{describe(source)} ({what})"
    if isinstance(source, (str, os.PathLike)):
        image = _open_file(Path(source), what)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        return read_mask_array(source, name, threshold=threshold)
    else:
        raise InputError(f"{describe(source)}: {what} must be a path, a PIL image or an HxW array")
    array, channel = _mask_array_from_pil(image, name)
    return read_mask_array(array, name, channel=channel, sixteen_bit=image.mode.startswith("I;16"), threshold=threshold)


def load_mask(source: MaskInput, what: str = "mask") -> np.ndarray:
    """Foreground weights ``float32 (H, W)`` from a path, a PIL image or an ``HxW`` array."""
    return read_mask(source, what)[0]
