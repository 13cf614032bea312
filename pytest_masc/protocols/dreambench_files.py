"""The files of a DreamBench++ checkout as published (layout: :mod:`.dreambench_plus`): names
and keys, reference subjects with their captions, human rating files, method sample
directories, and images found by stem with any image extension."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CATEGORIES = ("animal", "human", "object", "style")
DIMENSIONS = ("concept", "prompt")
RATING_FILES = {"concept": "cp", "prompt": "pf"}
SCALE_MAX = 4

#: Rating-file method name -> sample directory, from the published ``constants.METHODS``.
PUBLISHED_METHODS = {
    "textual_inversion_sd": "textual_inversion_sd_gs7_5_step100_seed42_torch_float16",
    "dreambooth_sd": "dreambooth_sd_gs7_5_step100_seed42_torch_float16",
    "dreambooth_lora_sdxl": "dreambooth_lora_sdxl_gs7_5_step100_seed42_torch_float16",
    "blip_diffusion": "blip_diffusion_gs7_5_step100_seed42_torch_float16",
    "emu2": "emu2_gs3_step50_seed42_torch_bfloat16",
    "ip_adapter_plus_vit_h_sdxl": "ip_adapter_plus_vit_h_sdxl_scale0_6_gs7_5_step100_seed42_torch_float16",
    "ip_adapter_vit_g_sdxl": "ip_adapter_vit_g_sdxl_scale0_6_gs7_5_step100_seed42_torch_float16",
}

def method_name(display_name: str) -> str:
    """The rating-file name of a method: ``"DreamBooth LoRA SDXL"`` -> ``"dreambooth_lora_sdxl"``."""
    return display_name.replace(" ", "_").replace("-", "_").lower()


def collection_id(category: str, index: str, subject: str) -> str:
    """``<category>_<index>_<subject>`` as the published loader builds it."""
    prefix = f"live_subject_{category}" if category in ("animal", "human") else category
    return "_".join([prefix, index, subject.lower().replace(" ", "_")])


def parse_key(key: str, where: str = "ratings") -> tuple[str, int]:
    """``"live_subject_animal_00_kitten-3"`` -> ``("live_subject_animal_00_kitten", 3)``."""
    cid, sep, index = key.rpartition("-")
    if not sep or not cid or not index.isdigit():
        raise InputError(f"{where}: key {key!r} is not '<collection_id>-<prompt_index>'")
    return cid, int(index)


@dataclass(frozen=True)
class Collection:
    """One reference subject: its image, name and prompts."""

    collection_id: str
    category: str
    index: str
    subject: str
    prompts: tuple[str, ...]
    image: Path
    caption: Path




def find_image(directory: Path, stem: str) -> Optional[Path]:
    """``directory/<stem>.<ext>`` for the first image extension that exists (any case)."""
    for ext in IMAGE_EXTENSIONS:
        for candidate in (directory / f"{stem}{ext}", directory / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def mirrored_mask(masks: Path, root: Path, image: Path) -> Optional[Path]:
    """The mask of ``image`` (under ``root``) in the directory ``masks`` mirroring it, any extension."""
    relative = image.relative_to(root)
    return find_image(masks / relative.parent, relative.stem)


def read_collections(root: Union[str, os.PathLike]) -> dict[str, Collection]:
    """Every reference subject under ``root/data/images``, by collection id (sorted).

    Raises:
        InputError: no ``data/images`` directory, a reference without a caption file, an
            empty caption, or two images with the same collection id.
    """
    root = Path(root)
    images_dir = root / "data" / "images"
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: DreamBench++ reference image directory not found")
    collections: dict[str, Collection] = {}
    for category_dir in sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(category_dir.iterdir()):
            if image.suffix.lower() not in IMAGE_EXTENSIONS or image.name.startswith("."):
                continue
            candidates = [
                root / "data" / "captions" / category_dir.name / f"{image.stem}.txt",
                image.with_suffix(".txt"),
            ]
            caption = next((c for c in candidates if c.is_file()), None)
            if caption is None:
                raise InputError(
                    f"{image}: no caption file for this reference image (looked for "
                    f"{candidates[0]} and {candidates[1]})"
                )
            try:
                lines = [line.strip() for line in caption.read_text(encoding="utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as error:
                raise InputError(f"{caption}: cannot read caption file ({error})") from None
            if not lines or not lines[0]:
                raise InputError(f"{caption}: caption file is empty; its first line must be the subject name")
            subject = lines[0]
            cid = collection_id(category_dir.name, image.stem, subject)
            if cid in collections:
                raise InputError(f"{image}: collection {cid!r} also comes from {collections[cid].image}")
            collections[cid] = Collection(
                collection_id=cid,
                category=category_dir.name,
                index=image.stem,
                subject=subject,
                prompts=tuple(line for line in lines[1:] if line),
                image=image,
                caption=caption,
            )
    return dict(sorted(collections.items()))


def read_ratings(path: Union[str, os.PathLike], scale_max: float = SCALE_MAX) -> dict[str, float]:
    """One merged rating file: ``{key: rating}`` with ``null`` as NaN.

    Raises:
        InputError: malformed JSON, not an object, a key not ``<collection_id>-<index>``, a
            rating that is not a number in ``[0, scale_max]``; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read human rating file ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: malformed JSON in human rating file ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: human rating file must hold a JSON object of key -> rating, got {type(data).__name__}"
        )
    ratings = {}
    for key, value in data.items():
        parse_key(key, str(path))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            ratings[key] = math.nan
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(
                f"{path}: rating of {key!r} is {value!r}, not a number (merged data holds one number per key)"
            )
        if not 0 <= value <= scale_max:
            raise InputError(f"{path}: rating of {key!r} is {value}, outside 0..{scale_max:g}")
        ratings[key] = float(value)
    return ratings


def rating_files(root: Path) -> tuple[tuple[str, ...], dict[str, dict[str, dict[str, Path]]]]:
    """Groups and ``{method: {dimension: {group: path}}}`` under data_human_rating/merged_data."""
    merged = root / "data_human_rating" / "merged_data"
    if not merged.is_dir():
        return (), {}
    groups = tuple(sorted(p.name for p in merged.iterdir() if p.is_dir() and not p.name.startswith(".")))
    files: dict[str, dict[str, dict[str, Path]]] = {}
    for group in groups:
        for path in sorted((merged / group).glob("*.json")):
            for dimension, suffix in RATING_FILES.items():
                if path.name.endswith(f"-{suffix}.json"):
                    method = path.name[: -len(f"-{suffix}.json")]
                    files.setdefault(method, {}).setdefault(dimension, {})[group] = path
    return groups, files


def sample_dir(root: Path, name: str, explicit: Optional[Union[str, os.PathLike]]) -> Optional[Path]:
    samples = root / "samples"
    if explicit is not None:
        path = Path(explicit)
        path = path if path.is_absolute() else samples / path
        if not path.is_dir():
            raise InputError(f"{path}: sample directory of method {name!r} not found")
        return path
    if (samples / name).is_dir():
        return samples / name
    published = PUBLISHED_METHODS.get(name)
    if published and (samples / published).is_dir():
        return samples / published
    if not samples.is_dir():
        return None
    matches = sorted(p for p in samples.iterdir() if p.is_dir() and p.name.startswith(f"{name}_"))
    if len(matches) > 1:
        raise InputError(
            f"{samples}: several sample directories could be method {name!r} "
            f"({', '.join(p.name for p in matches)}); pass methods={{{name!r}: '<directory>'}}"
        )
    return matches[0] if matches else None
