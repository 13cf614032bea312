"""A TOML case's images: ``image``, ``images`` or an ``image`` pattern with ``{seed}`` and
``seeds``, checked and expanded into one :class:`RawImage` per seed (paths not resolved yet)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .checks import fail, seed_count, text, type_name
from .schema import SEED_TOKEN

__all__ = ["RawImage", "toml_images"]


@dataclass(frozen=True)
class RawImage:
    """One image of a case as written: its path and mask (``None``: to segment) as given, the
    names messages give them (``images[1]``), and its seed (``None`` for a one-image case)."""

    name: str
    image: Any
    mask_name: str
    mask: Any
    seed: Optional[int]


def toml_images(where: str, entry: dict, suite_seeds: Optional[int]) -> list[RawImage]:
    """The images of the ``[[cases]]`` table ``entry`` (its ``image``/``images``, ``mask``/
    ``masks`` and ``seeds`` keys); ``suite_seeds``: ``[suite]`` ``seeds``, if given. Refuses
    the ambiguous combinations the format lists."""
    if "image" in entry and "images" in entry:
        fail(where, "give image or images, not both (images = [...] lists one image per seed)")
    if "image" not in entry and "images" not in entry:
        fail(where, "missing required key 'image' (or images = [...], one per seed)")
    case_seeds = seed_count(where, entry["seeds"]) if "seeds" in entry else None
    if "images" in entry:
        return _image_list(where, entry, case_seeds, suite_seeds)
    return _image_pattern(where, entry, case_seeds, suite_seeds)


def _image_list(where: str, entry: dict, case_seeds: Optional[int], suite_seeds: Optional[int]) -> list[RawImage]:
    """``images = [...]`` (and ``masks = [...]``): seed ``i`` is the ``i``-th image."""
    images = _string_list(where, "images", entry["images"])
    if case_seeds is not None:
        fail(where, f"seeds = {case_seeds} with images: images lists its images, one per seed; give "
                    "seeds only with image = \"..._{seed}.png\"")
    if "mask" in entry:
        fail(where, "mask is for image; with images give masks = [...], one per image")
    if suite_seeds is not None and len(images) != suite_seeds:
        fail(where, f"images has {len(images)} path(s) but [suite] seeds = {suite_seeds}: give one image per seed")
    masks: list[Any] = [None] * len(images)
    if "masks" in entry:
        masks = _string_list(where, "masks", entry["masks"])
        if len(masks) != len(images):
            fail(where, f"images has {len(images)} path(s) but masks has {len(masks)}; give one mask per image")
    return [RawImage(f"images[{i}]", image, f"masks[{i}]", mask, i) for i, (image, mask) in enumerate(zip(images, masks))]


def _image_pattern(where: str, entry: dict, case_seeds: Optional[int], suite_seeds: Optional[int]) -> list[RawImage]:
    """``image`` (and ``mask``): one image, or with ``{seed}`` one per seed ``0..seeds-1``."""
    if "masks" in entry:
        fail(where, "masks is for images = [...]; with image give mask")
    image = text(where, "image", entry["image"])
    mask = text(where, "mask", entry["mask"]) if "mask" in entry else None
    seeds = case_seeds if case_seeds is not None else suite_seeds
    given = f"seeds = {case_seeds}" if case_seeds is not None else f"[suite] seeds = {suite_seeds}"
    if SEED_TOKEN not in image:
        if seeds is not None:
            fail(where, f"{given} but image {image!r} has no {SEED_TOKEN}: write where the seed goes "
                        f"(image = \"out/beach_{SEED_TOKEN}.png\"), or list the images with images = [...]")
        if mask is not None and SEED_TOKEN in mask:
            fail(where, f"mask {mask!r} has {SEED_TOKEN} but image {image!r} has none")
        return [RawImage("image", image, "mask", mask, None)]
    if seeds is None:
        fail(where, f"image {image!r} has {SEED_TOKEN} but no seeds are given: add seeds = N (here or in [suite])")
    if mask is not None and SEED_TOKEN not in mask:
        fail(where, f"mask {mask!r} has no {SEED_TOKEN} but image has: give each seed's mask "
                    f"(mask = \"out/beach_{SEED_TOKEN}_mask.png\")")
    return [
        RawImage(f"image (seed {seed})", image.replace(SEED_TOKEN, str(seed)), f"mask (seed {seed})",
                 None if mask is None else mask.replace(SEED_TOKEN, str(seed)), seed)
        for seed in range(seeds)
    ]


def _string_list(where: str, name: str, value: Any) -> list[str]:
    """A non-empty list of non-empty strings without ``{seed}``."""
    if not isinstance(value, list):
        fail(where, f"{name} must be an array of paths, got {type_name(value)} {value!r}")
    if not value:
        fail(where, f"{name} must not be an empty list")
    items = [text(where, f"{name}[{i}]", item) for i, item in enumerate(value)]
    for i, item in enumerate(items):
        if SEED_TOKEN in item:
            fail(where, f"{name}[{i}] {item!r} has {SEED_TOKEN}: {name} lists each path; a pattern is "
                        f"written image = \"...{SEED_TOKEN}...\" with seeds = N")
    return items
