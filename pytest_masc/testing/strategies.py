"""Hypothesis strategies for testing code built on MaSC scores.

Use them in your own property tests of metrics, gates or data pipelines::

    from hypothesis import given, settings
    from pytest_masc.testing import strategies as ms

    @settings(max_examples=20, deadline=None)
    @given(ms.samples(subject="sks dog"))
    def test_scores_are_cosines(masc, sample):
        score = masc.score_many([sample])[0]
        assert math.isnan(score.concept) or -1 <= score.concept <= 1

Every strategy is deterministic under Hypothesis: pixels come from a seed that Hypothesis
draws (and shrinks), never from a global random state. Images are small by default so
that an example costs milliseconds. Only numpy, PIL and hypothesis are imported.

Shapes follow numpy: a mask of ``shape=(H, W)`` belongs to a ``W x H`` PIL image
(``image.size == (W, H)``).
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from ..types import Sample

__all__ = [
    "IMAGE_MODES",
    "MASK_DTYPES",
    "MASK_KINDS",
    "images",
    "masks",
    "prompts",
    "samples",
    "subjects",
]

#: PIL modes :func:`images` can produce.
IMAGE_MODES = ("RGB", "L", "RGBA", "P")
#: Mask shapes :func:`masks` can draw.
MASK_KINDS = ("blob", "rectangle", "strip", "soft", "empty", "full")
#: Array types :func:`masks` can return.
MASK_DTYPES = ("uint8", "bool", "float32")

_SEEDS = st.integers(min_value=0, max_value=2**32 - 1)

_SCENES = (
    "on the beach",
    "in the snow",
    "on a wooden table",
    "in a sunny garden",
    "under a starry sky",
    "next to a red car",
    "by the eiffel tower",
    "floating in space",
    "on a street at night",
    "in a field of flowers",
    "in watercolor",
    "with soft lighting",
    "wearing a hat",
)
_LEADS = ("a photo of", "a picture of", "an image of", "a painting of", "")
_ARTICLES = ("a", "an", "the", "A", "The")
_DEFAULT_SUBJECTS = ("dog", "sks dog", "teddy bear", "red backpack", "cat", "vase", "robot toy")


# ----------------------------------------------------------------------------- images


def _pixels(rng: np.random.Generator, height: int, width: int, channels: int, pattern: str) -> np.ndarray:
    """``(H, W, C)`` uint8 pixels: noise, a gradient, a flat colour or blocks."""
    if pattern == "noise":
        return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if pattern == "flat":
        return np.broadcast_to(rng.integers(0, 256, channels, dtype=np.uint8), (height, width, channels)).copy()
    if pattern == "gradient":
        ys = np.linspace(0.0, 1.0, height)[:, None, None]
        xs = np.linspace(0.0, 1.0, width)[None, :, None]
        a, b = rng.uniform(0, 255, (2, channels))
        return np.clip(a * ys + b * xs, 0, 255).astype(np.uint8)
    # blocks: a coarse random image scaled up, with edges
    coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), channels), dtype=np.uint8)
    rows = np.minimum(np.arange(height) * coarse.shape[0] // height, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(width) * coarse.shape[1] // width, coarse.shape[1] - 1)
    return coarse[rows][:, cols]


def _image(seed: int, height: int, width: int, mode: str, pattern: str) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "RGB":
        return Image.fromarray(_pixels(rng, height, width, 3, pattern))
    if mode == "L":
        return Image.fromarray(_pixels(rng, height, width, 1, pattern)[..., 0])
    if mode == "RGBA":
        return Image.fromarray(_pixels(rng, height, width, 4, pattern))
    if mode == "P":
        indices = np.ascontiguousarray(_pixels(rng, height, width, 1, pattern)[..., 0] % 16)
        image = Image.frombytes("P", (width, height), indices.tobytes())
        image.putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tobytes())
        return image
    raise ValueError(f"mode {mode!r} is not one of {IMAGE_MODES}")


def images(
    min_side: int = 8,
    max_side: int = 64,
    modes: Sequence[str] = IMAGE_MODES,
    *,
    max_aspect: Optional[float] = None,
) -> st.SearchStrategy[Image.Image]:
    """PIL images of random size, mode and content.

    Args:
        min_side, max_side: bounds of the width and of the height, in pixels (inclusive).
        modes: PIL modes to draw from, among ``"RGB"``, ``"L"``, ``"RGBA"``, ``"P"``
            (``P`` with a random 16-colour palette).
        max_aspect: if given, the longer side is at most ``max_aspect`` times the shorter.

    Returns:
        A strategy of ``PIL.Image`` with ``min_side <= width, height <= max_side``;
        content is noise, a gradient, a flat colour or coarse blocks.
    """
    if not 1 <= min_side <= max_side:
        raise ValueError(f"need 1 <= min_side <= max_side, got {min_side}, {max_side}")
    modes = tuple(modes)
    for mode in modes:
        if mode not in IMAGE_MODES:
            raise ValueError(f"mode {mode!r} is not one of {IMAGE_MODES}")

    @st.composite
    def build(draw) -> Image.Image:
        height = draw(st.integers(min_side, max_side))
        low, high = min_side, max_side
        if max_aspect is not None:
            low = max(low, int(np.ceil(height / max_aspect)))
            high = min(high, int(np.floor(height * max_aspect)))
            if low > high:  # the bounds leave no width for this height: make it square
                low = high = height
        width = draw(st.integers(low, high))
        mode = draw(st.sampled_from(modes))
        pattern = draw(st.sampled_from(("noise", "gradient", "blocks", "flat")))
        return _image(draw(_SEEDS), height, width, mode, pattern)

    return build()


# ----------------------------------------------------------------------------- masks


def _mask_weights(seed: int, shape: tuple[int, int], kind: str) -> np.ndarray:
    """``(H, W)`` float32 weights in ``[0, 1]``; all kinds but ``soft`` are exactly 0/1."""
    height, width = shape
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "empty":
        return np.zeros(shape, np.float32)
    if kind == "full":
        return np.ones(shape, np.float32)
    if kind == "rectangle":
        top, bottom = sorted(rng.integers(0, height + 1, 2))
        left, right = sorted(rng.integers(0, width + 1, 2))
        bottom, right = max(bottom, top + 1), max(right, left + 1)
        out = np.zeros(shape, np.float32)
        out[top:bottom, left:right] = 1.0
        return out
    if kind == "strip":
        out = np.zeros(shape, np.float32)
        thickness = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            start = int(rng.integers(0, height))
            out[start:start + thickness, :] = 1.0
        else:
            start = int(rng.integers(0, width))
            out[:, start:start + thickness] = 1.0
        return out
    if kind in ("blob", "soft"):
        # one to three ellipses, possibly rotated; "soft" is their smooth falloff
        field = np.zeros(shape, np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry = rng.uniform(0.1, 0.6) * height + 0.5
            rx = rng.uniform(0.1, 0.6) * width + 0.5
            angle = rng.uniform(0, np.pi)
            dy, dx = ys - cy, xs - cx
            u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
            v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
            field = np.maximum(field, np.exp(-(u * u + v * v)).astype(np.float32))
        if kind == "soft":
            return field
        return (field > np.exp(-1.0)).astype(np.float32)
    raise ValueError(f"mask kind {kind!r} is not one of {MASK_KINDS}")


def _as_dtype(weights: np.ndarray, dtype: str, kind: str) -> np.ndarray:
    if dtype == "bool":
        return weights > 0.5 if kind == "soft" else weights > 0
    if dtype == "uint8":
        return np.round(weights * 255).astype(np.uint8)
    if dtype == "float32":
        return weights.astype(np.float32)
    raise ValueError(f"mask dtype {dtype!r} is not one of {MASK_DTYPES}")


def masks(
    shape: tuple[int, int],
    kinds: Sequence[str] = ("blob", "rectangle", "empty", "full"),
    dtypes: Sequence[str] = MASK_DTYPES,
) -> st.SearchStrategy[np.ndarray]:
    """Foreground masks of a fixed shape, as the scorer accepts them.

    Args:
        shape: ``(H, W)`` of the mask, i.e. of an image whose PIL size is ``(W, H)``.
        kinds: among ``"blob"`` (1-3 random ellipses), ``"rectangle"``, ``"strip"``
            (a 1-3 pixel line across the image), ``"soft"`` (smooth weights in ``[0, 1]``),
            ``"empty"`` (all background) and ``"full"`` (all foreground).
        dtypes: among ``"uint8"`` (0/255, or 0..255 for soft), ``"bool"`` and ``"float32"``
            (0/1, or 0..1 for soft; a soft mask as bool is thresholded at 0.5).

    Returns:
        A strategy of ``(H, W)`` numpy arrays.
    """
    shape = (int(shape[0]), int(shape[1]))
    if min(shape) < 1:
        raise ValueError(f"mask shape must be positive, got {shape}")
    kinds, dtypes = tuple(kinds), tuple(dtypes)
    for kind in kinds:
        if kind not in MASK_KINDS:
            raise ValueError(f"mask kind {kind!r} is not one of {MASK_KINDS}")
    for dtype in dtypes:
        if dtype not in MASK_DTYPES:
            raise ValueError(f"mask dtype {dtype!r} is not one of {MASK_DTYPES}")

    @st.composite
    def build(draw) -> np.ndarray:
        kind = draw(st.sampled_from(kinds))
        dtype = draw(st.sampled_from(dtypes))
        return _as_dtype(_mask_weights(draw(_SEEDS), shape, kind), dtype, kind)

    return build()


# ----------------------------------------------------------------------------- text


def subjects(with_identifier: Optional[bool] = None) -> st.SearchStrategy[str]:
    """Subject names as personalization runs use them: ``"dog"``, ``"teddy bear"``, ``"sks dog"``.

    Args:
        with_identifier: ``True`` prefixes a DreamBooth-style rare token (``sks``, ``zwx`` …),
            ``False`` never does, ``None`` draws either.
    """
    plain = st.sampled_from(tuple(s for s in _DEFAULT_SUBJECTS if not s.startswith("sks ")))
    tagged = st.builds(
        lambda tag, name: f"{tag} {name}",
        st.sampled_from(("sks", "zwx", "ohwx", "xyz")),
        plain,
    )
    if with_identifier is True:
        return tagged
    if with_identifier is False:
        return plain
    return st.one_of(plain, tagged)


def _mentions(prompt: str, subject: str) -> int:
    """How many times ``prompt`` names ``subject`` (whole words, any case)."""
    return len(re.findall(rf"\b{re.escape(subject.strip())}\b", prompt, re.IGNORECASE))


def prompts(subject: str, with_subject: Optional[bool] = None) -> st.SearchStrategy[str]:
    """Generation prompts around a subject.

    Args:
        subject: the subject's name as the prompts spell it (``"sks dog"``).
        with_subject: ``True``: the prompt names the subject once, after an article
            (``a``/``an``/``the``, any case) or bare; ``False``: it never names it (a
            scene-only prompt); ``None``: either.

    Returns:
        A strategy of single-line prompts like ``"a photo of the sks dog on the beach"``
        or ``"an image of in the snow with soft lighting"``: at most 60 characters (40 plus
        the subject when it is named), so with a subject of up to ~20 characters they fit a
        64-token text tower even at one token per character.
    """
    if not subject.strip():
        raise ValueError("subject must not be blank")

    @st.composite
    def with_it(draw) -> str:
        lead = draw(st.sampled_from(_LEADS))
        article = draw(st.sampled_from(_ARTICLES + ("",)))
        name = draw(st.sampled_from((subject, subject.upper(), subject.title())))
        scene = draw(st.sampled_from(_SCENES))
        return " ".join(w for w in (lead, f"{article} {name}".strip(), scene) if w)

    @st.composite
    def without_it(draw) -> str:
        lead = draw(st.sampled_from(_LEADS))
        scene = draw(st.sampled_from(_SCENES))
        second = draw(st.sampled_from(("",) + _SCENES))
        return " ".join(w for w in (lead, scene, second) if w)

    once = with_it().filter(lambda prompt: _mentions(prompt, subject) == 1)
    if with_subject is True:
        return once
    # a scene word could coincide with the subject ("a red car" for subject "car")
    absent = without_it().filter(lambda prompt: not _mentions(prompt, subject))
    if with_subject is False:
        return absent
    return st.one_of(once, absent)


# ----------------------------------------------------------------------------- samples


def samples(
    min_side: int = 8,
    max_side: int = 64,
    modes: Sequence[str] = IMAGE_MODES,
    mask_kinds: Sequence[str] = ("blob", "rectangle", "empty", "full"),
    mask_dtypes: Sequence[str] = MASK_DTYPES,
    subject: Optional[str | st.SearchStrategy[str]] = None,
    max_distractors: int = 0,
) -> st.SearchStrategy[Sample]:
    """Whole :class:`~pytest_masc.Sample` records, with masks of their images' sizes.

    Args:
        min_side, max_side, modes: as in :func:`images`, for both images.
        mask_kinds, mask_dtypes: as in :func:`masks`, for both masks.
        subject: a subject name, a strategy of names, or ``None`` for :func:`subjects`.
        max_distractors: up to this many distractor prompts (other prompts of the subject).

    Returns:
        A strategy of ``Sample(ref_image, ref_mask, out_image, out_mask, prompt, subject,
        distractors)``: PIL images, ``(H, W)`` array masks the size of their image,
        a prompt from :func:`prompts` with or without the subject.
    """
    subject_strategy = subjects() if subject is None else (
        subject if isinstance(subject, st.SearchStrategy) else st.just(subject)
    )

    @st.composite
    def build(draw) -> Sample:
        ref = draw(images(min_side, max_side, modes))
        out = draw(images(min_side, max_side, modes))
        ref_mask = draw(masks((ref.height, ref.width), mask_kinds, mask_dtypes))
        out_mask = draw(masks((out.height, out.width), mask_kinds, mask_dtypes))
        name = draw(subject_strategy)
        prompt = draw(prompts(name))
        distractors = draw(st.lists(prompts(name), max_size=max_distractors, unique=True)) if max_distractors else []
        return Sample(ref, ref_mask, out, out_mask, prompt, name, tuple(distractors))

    return build()
