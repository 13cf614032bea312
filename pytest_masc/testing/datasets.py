"""Fixture trees in the published layouts of the benchmarks, for tests and demos.

:func:`write_dreambench_fixture` writes a small DreamBench++ tree (images, captions,
samples of two methods, masks, human ratings, with planted special cases) and
:func:`write_orida_fixture` a small ORIDa tree; :func:`demo_table` runs the whole
DreamBench++ path on one. Every image is drawn (a coloured shape on a noisy background),
so its mask is exact by construction. numpy and PIL only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..protocols.dreambench_plus import PUBLISHED_METHODS, collection_id, load_dreambench_plus
from ..protocols.evaluate import evaluate_dreambench
from ..protocols.orida import VERSION_DIR
from ..protocols.tables import format_table

__all__ = [
    "DreamBenchFixture",
    "ORIDaFixture",
    "demo_table",
    "write_dreambench_fixture",
    "write_orida_fixture",
]


# --------------------------------------------------------------------------- DreamBench++


@dataclass(frozen=True)
class DreamBenchFixture:
    """What :func:`write_dreambench_fixture` wrote, and the special cases it planted."""

    root: Path
    masks: Path
    methods: tuple[str, ...]
    groups: tuple[str, ...]
    n_rated: int  # rated (method, key) pairs in the rating files
    missing_rating: tuple[str, str, str, str]  # (group, method, dimension, key) left unrated
    missing_mask: Path  # an output mask that is not written
    tiny_mask: Path  # an output mask covering about 1 % of its image
    style_collection: str
    malformed: Optional[Path]  # the broken rating file, when asked for


_FIXTURE_SUBJECTS = (
    # category, id, subject, colour (RGB), shape
    ("animal", "00", "dog", (150, 90, 40), "ellipse"),
    ("animal", "01", "cat", (120, 120, 130), "rectangle"),
    ("object", "00", "t-shirt", (200, 30, 40), "triangle"),
    ("style", "00", "ukiyo-e", (30, 60, 160), "stripes"),
)
_FIXTURE_GROUPS = ("group_1", "group_2")
_FIXTURE_PROMPTS = ("a {} on the beach", "a {} in the snow", "a watercolor painting of a {}")
_FIXTURE_METHODS = {
    "blip_diffusion": PUBLISHED_METHODS["blip_diffusion"],
    "emu2": PUBLISHED_METHODS["emu2"],
}


def _draw(rng: np.random.Generator, size: tuple[int, int], background, colour, shape: str, scale: float):
    """An RGB array ``(H, W, 3)`` with one shape on a noisy background, and its bool mask."""
    height, width = size
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = background
    image += rng.normal(0, 12, size=image.shape)
    yy, xx = np.mgrid[0:height, 0:width]
    cy = rng.uniform(0.4, 0.6) * height
    cx = rng.uniform(0.4, 0.6) * width
    ry, rx = scale * height / 2, scale * width / 2
    if shape == "ellipse":
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    elif shape == "triangle":
        mask = (yy >= cy - ry) & (yy <= cy + ry) & (abs(xx - cx) <= (yy - (cy - ry)) / 2 * rx / ry)
    else:  # rectangle, or stripes: a striped block
        mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
    image[mask] = colour
    if shape == "stripes":
        image[mask & ((xx // 4) % 2 == 0)] = 245
    image[mask] += rng.normal(0, 8, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_dreambench_fixture(
    directory: Union[str, os.PathLike], seed: int = 0, *, malformed_json: bool = False
) -> DreamBenchFixture:
    """Write a small DreamBench++ tree in the published layout, with masks and ratings.

    The tree (``directory/dreambench_plus``) holds four subjects (``animal/00`` dog,
    ``animal/01`` cat, ``object/00`` t-shirt, ``style/00`` ukiyo-e), three prompts each, two
    methods (``blip_diffusion``, ``emu2``, with their published sample directory names),
    seeds 0 and 1 (1 is never rated), and two rater groups. Masks (``directory/masks``)
    mirror the image paths. Planted cases: ``group_2`` did not rate one key, one output mask
    is missing, one output mask covers about 1 % of its image, the style subject has no PF;
    ``malformed_json=True`` also writes a truncated rating file.

    Images are tiny noisy JPEG drawings (64x64 references, 64 wide x 80 high outputs) with
    PNG masks; a CP rating follows how much of the subject's colour the output keeps, a PF
    rating a latent grade per output, each plus per-group noise (so the groups agree).
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    root, masks = directory / "dreambench_plus", directory / "masks"
    references = _write_references(rng, root, masks)
    ratings: dict[tuple[str, str, str], dict[str, int]] = {}
    planted: dict[str, Path] = {}
    for method, sample_dir_name in _FIXTURE_METHODS.items():
        planted.update(_write_method(rng, root, masks, method, sample_dir_name, references, ratings))
    missing_key = f"{collection_id('animal', '00', 'dog')}-1"
    del ratings[("group_2", "emu2", "cp")][missing_key]
    rating_dir = root / "data_human_rating" / "merged_data"
    _write_ratings(rating_dir, ratings)
    malformed = _truncate(rating_dir / "group_2" / "emu2-pf.json") if malformed_json else None
    return DreamBenchFixture(
        root=root,
        masks=masks,
        methods=tuple(_FIXTURE_METHODS),
        groups=_FIXTURE_GROUPS,
        n_rated=len(ratings[("group_1", "emu2", "cp")]) * len(_FIXTURE_METHODS),
        missing_rating=("group_2", "emu2", "concept", missing_key),
        missing_mask=planted["missing_mask"],
        tiny_mask=planted["tiny_mask"],
        style_collection=collection_id("style", "00", "ukiyo-e"),
        malformed=malformed,
    )


def _save(array: np.ndarray, path: Path) -> None:
    """Save an image array (JPEG at quality 95 for ``.jpg``, else PNG), creating its directory."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))


def _write_references(rng: np.random.Generator, root: Path, masks: Path) -> dict[str, tuple]:
    """Each subject's reference image, mask and captions file; returns, by collection id,
    ``(category, subject, colour, shape, reference image, prompts)``."""
    references = {}
    for category, index, subject, colour, shape in _FIXTURE_SUBJECTS:
        image, mask = _draw(rng, (64, 64), (220, 220, 210), colour, shape, 0.6)
        _save(image, root / "data" / "images" / category / f"{index}.jpg")
        _save(mask.astype(np.uint8) * 255, masks / "data" / "images" / category / f"{index}.png")
        captions = root / "data" / "captions" / category / f"{index}.txt"
        captions.parent.mkdir(parents=True, exist_ok=True)
        named = subject if category != "style" else f"cat in {subject} style"
        prompts = [p.format(named) for p in _FIXTURE_PROMPTS]
        captions.write_text("\n".join([subject, *prompts]) + "\n", encoding="utf-8")
        references[collection_id(category, index, subject)] = (category, subject, colour, shape, image, prompts)
    return references


def _write_method(rng: np.random.Generator, root: Path, masks: Path, method: str, sample_dir_name: str,
                  references: dict[str, tuple], ratings: dict) -> dict[str, Path]:
    """One method's samples (every subject x prompt, seeds 0 and 1) and its ratings (added to
    ``ratings``); returns the planted ``missing_mask`` / ``tiny_mask`` paths among them."""
    sample_dir = root / "samples" / sample_dir_name
    sample_dir.mkdir(parents=True, exist_ok=True)
    (sample_dir / "negative_prompt.txt").write_text("", encoding="utf-8")
    planted = {}
    for cid, (category, subject, colour, shape, reference, prompts) in references.items():
        for prompt_index, prompt in enumerate(prompts):
            quality = rng.uniform(0.0, 1.0)  # how much of the subject's colour survives
            following = rng.uniform(0.0, 1.0)  # the raters' latent prompt-following grade
            tiny = method == "emu2" and category == "object" and prompt_index == 0
            missing = method == "blip_diffusion" and subject == "cat" and prompt_index == 2
            mask_path = masks / "samples" / sample_dir_name / "tgt_image" / cid / f"{prompt_index}_0.png"
            _write_outputs(rng, sample_dir, cid, prompt_index, prompt, reference, colour, shape, quality,
                           0.15 if tiny else 0.55, None if missing else mask_path)
            planted.update({"missing_mask": mask_path} if missing else {})
            planted.update({"tiny_mask": mask_path} if tiny else {})
            _rate(rng, ratings, method, f"{cid}-{prompt_index}", quality, following)
    return planted


def _write_outputs(rng: np.random.Generator, sample_dir: Path, cid: str, prompt_index: int, prompt: str,
                   reference: np.ndarray, colour, shape: str, quality: float, scale: float,
                   mask_path: Optional[Path]) -> None:
    """Seeds 0 and 1 of one (subject, prompt): ``src_image``, ``tgt_image`` and ``text`` files
    ``<sample_dir>/<folder>/<cid>/<prompt_index>_<seed>``, and seed 0's output mask at
    ``mask_path`` (``None``: not written). ``quality``: the share of ``colour`` the output keeps;
    ``scale``: the shape's size relative to the image."""
    background = tuple(int(v) for v in rng.integers(40, 230, size=3))
    mixed = quality * np.asarray(colour) + (1 - quality) * rng.integers(0, 255, 3)
    drawn_colour = tuple(int(v) for v in mixed)
    for seed_index in (0, 1):
        out, out_mask = _draw(rng, (80, 64), background, drawn_colour, shape, scale)
        stem = f"{prompt_index}_{seed_index}"
        _save(reference, sample_dir / "src_image" / cid / f"{stem}.jpg")
        _save(out, sample_dir / "tgt_image" / cid / f"{stem}.jpg")
        text = sample_dir / "text" / cid / f"{stem}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text(prompt, encoding="utf-8")
        if seed_index == 0 and mask_path is not None:
            _save(out_mask.astype(np.uint8) * 255, mask_path)


def _rate(rng: np.random.Generator, ratings: dict, method: str, key: str, quality: float, following: float) -> None:
    """Every group's CP and PF rating (0..4) of one key: the latent grade plus per-group noise."""
    for group in _FIXTURE_GROUPS:
        cp = int(np.clip(round(4 * quality + rng.normal(0, 0.6)), 0, 4))
        pf = int(np.clip(round(4 * following + rng.normal(0, 0.6)), 0, 4))
        ratings.setdefault((group, method, "cp"), {})[key] = cp
        ratings.setdefault((group, method, "pf"), {})[key] = pf


def _write_ratings(rating_dir: Path, ratings: dict) -> None:
    """The rating files ``<group>/<method>-<cp|pf>.json``, keys sorted."""
    for (group, method, suffix), table in ratings.items():
        path = rating_dir / group / f"{method}-{suffix}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(table.items())), indent=4), encoding="utf-8")


def _truncate(path: Path) -> Path:
    """Cut the last 40 characters off a JSON file, so that it no longer parses."""
    path.write_text(path.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    return path


# --------------------------------------------------------------------------- ORIDa


@dataclass(frozen=True)
class ORIDaFixture:
    """What :func:`write_orida_fixture` wrote."""

    root: Path  # holds ORIDa_v1.0
    split: str
    backgrounds: dict[str, int]  # subject -> photos with a mask
    unmasked: tuple[Path, ...]  # photos written without a mask


_ORIDA_SUBJECTS = (
    # name, colour, shape, number of backgrounds
    ("apple_red", (200, 30, 30), "ellipse", 4),
    ("blue_mug", (30, 60, 200), "rectangle", 4),
    ("green_box", (40, 170, 60), "triangle", 4),
    ("yellow_duck", (230, 210, 40), "ellipse", 2),
)


def write_orida_fixture(directory: Union[str, os.PathLike], split: str = "test", seed: int = 0) -> ORIDaFixture:
    """Write a small ORIDa tree: ``directory/ORIDa_v1.0/<split>/<subject>/...``.

    Four subjects (``apple_red``, ``blue_mug``, ``green_box`` with 4 backgrounds each,
    ``yellow_duck`` with 2), 72x64 JPEG photos of a coloured shape on background ``k``
    (shared across subjects), PNG masks ``<stem>_mask.png``; ``blue_mug`` has one extra photo
    without a mask; one ``factual_counterfactual/<scene_id>`` scene that the loader ignores.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    split_dir = directory / VERSION_DIR / split
    backgrounds = [tuple(int(v) for v in rng.integers(40, 230, size=3)) for _ in range(6)]
    counts = {}
    unmasked = []
    for name, colour, shape, n_backgrounds in _ORIDA_SUBJECTS:
        images_dir = split_dir / name / "factual_only" / "images"
        masks_dir = split_dir / name / "factual_only" / "annotations" / "masks"
        images_dir.mkdir(parents=True, exist_ok=True)
        masks_dir.mkdir(parents=True, exist_ok=True)
        for k in range(n_backgrounds):
            image, mask = _draw(rng, (72, 64), backgrounds[k], colour, shape, rng.uniform(0.45, 0.6))
            Image.fromarray(image).save(images_dir / f"{name}_bg{k:02d}.jpg", quality=95)
            Image.fromarray(mask.astype(np.uint8) * 255).save(masks_dir / f"{name}_bg{k:02d}_mask.png")
        counts[name] = n_backgrounds
        if name == "blue_mug":
            image, _ = _draw(rng, (72, 64), backgrounds[5], colour, shape, 0.5)
            path = images_dir / f"{name}_bg05.jpg"
            Image.fromarray(image).save(path, quality=95)
            unmasked.append(path)
        scene = split_dir / name / "factual_counterfactual" / "scene_000"
        (scene / "images").mkdir(parents=True, exist_ok=True)
        image, _ = _draw(rng, (72, 64), backgrounds[0], colour, shape, 0.3)
        Image.fromarray(image).save(scene / "images" / "scene_000_0.jpg", quality=95)
    return ORIDaFixture(root=directory, split=split, backgrounds=counts, unmasked=tuple(unmasked))



# --------------------------------------------------------------------------- demo


def demo_table(tmp_dir: Union[str, os.PathLike], masc: Any, *, n_resamples: int = 200, seed: int = 0) -> str:
    """Build the DreamBench++ fixture tree in ``tmp_dir``, score it with ``masc``, and
    return the printed alignment table followed by the loader's one-line summary.

    The fixture (:func:`~pytest_masc.protocols.dreambench_plus.write_dreambench_fixture`)
    has 2 methods x 4 subjects x 3 prompts, two rater groups, one missing rating, one missing
    and one too-small mask, and a style subject; its numbers only show the table's form.
    """
    fixture = write_dreambench_fixture(tmp_dir, seed=seed)
    data = load_dreambench_plus(fixture.root, fixture.masks)
    scores = masc.score_many(data.samples)
    rows = evaluate_dreambench(data, scores, n_resamples=n_resamples, seed=seed)
    return format_table(rows) + "\n\n" + data.summary()
