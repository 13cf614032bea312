"""DreamBench++ (yuangpeng/dreambench_plus) as published: reference images, samples, human ratings.

Layout read (all paths relative to ``root``), as written by the published code
(``dreambench_plus/dreambench_plus_dataset.py``, ``generate_images.py``, ``merge_data.py``,
``benchmarking.py``, ``constants.py``, ``krippendorff_analysis.py``, commit df0b960)::

    data/images/<category>/<id>.jpg          reference image; category in animal, human, object, style
    data/captions/<category>/<id>.txt        line 1: subject name; lines 2..: the prompts (9)
    samples/<method_dir>/src_image/<collection_id>/<prompt_index>_<seed>.jpg   (copy of the reference)
    samples/<method_dir>/tgt_image/<collection_id>/<prompt_index>_<seed>.jpg   generated image
    samples/<method_dir>/text/<collection_id>/<prompt_index>_<seed>.txt        its prompt
    data_human_rating/merged_data/<group>/<method>-cp.json    {"<collection_id>-<prompt_index>": 0..4}
    data_human_rating/merged_data/<group>/<method>-pf.json

* ``collection_id`` is ``<category>_<id>_<subject>`` with ``animal``/``human`` written
  ``live_subject_animal``/``live_subject_human`` and the subject lower-cased, spaces as
  ``_`` (``live_subject_animal_00_kitten``). Subjects may hold ``-`` (``spider-man``), so a
  rating key is split on its *last* ``-``.
* ``<method>`` in the rating files is the display name lower-cased with spaces and ``-`` as
  ``_`` (``DreamBooth LoRA SDXL`` -> ``dreambooth_lora_sdxl``); sample directories add the
  generation settings (``dreambooth_lora_sdxl_gs7_5_step100_seed42_torch_float16``). A
  method's sample directory is, in order: the one given in ``methods={name: dir}``,
  ``samples/<name>``, the published one in :data:`PUBLISHED_METHODS`, or the only
  ``samples/<name>_*`` directory.
* Only seed 0 (``<prompt_index>_0``) was rated; other seeds are ignored.
* Captions: the published loader reads ``data/captions/``; a ``.txt`` beside the image (same
  stem) is accepted as well (checked second).
* The reference image is ``data/images/...`` (the original file; ``src_image`` holds
  re-encoded copies of it), so one reference mask serves all of a subject's samples.
* Human ratings may be ``null`` (missing); a unit a group did not rate is NaN for that group.

Masks are not part of DreamBench++ (the MaSC paper used SAM3 masks). They are read from a
directory mirroring the image paths relative to ``root``, with any image extension:
``<masks>/data/images/<category>/<id>.png`` and
``<masks>/samples/<method_dir>/tgt_image/<collection_id>/<prompt_index>_0.png``.

A unit is one rated (method, key). It is dropped, and counted under :data:`DROP_REASONS`,
when its subject has no reference image, its seed-0 output is missing, a mask is missing,
or a mask covers ``min_mask_fraction`` of its image or less (mean foreground weight).
Style subjects (category ``style``) are kept for concept preservation and excluded from
prompt following (their PF ratings are NaN and ``pf_applies`` is False).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from ..errors import InputError
from ..metric.inputs import load_mask
from ..types import Sample
from .dreambench_files import (
    CATEGORIES,
    DIMENSIONS,
    IMAGE_EXTENSIONS,
    PUBLISHED_METHODS,
    SCALE_MAX,
    Collection,
    collection_id,
    find_image,
    method_name,
    mirrored_mask,
    parse_key,
    rating_files,
    read_collections,
    read_ratings,
    sample_dir,
)


#: Why a unit was dropped (keys of ``ProtocolData.dropped``, always all present).
DROP_REASONS = (
    "missing_reference",
    "missing_output",
    "missing_ref_mask",
    "missing_out_mask",
    "small_ref_mask",
    "small_out_mask",
)


@dataclass(frozen=True)
class DreamBenchUnit:
    """Metadata of one kept unit (one rated seed-0 output of one method)."""

    method: str
    key: str
    collection_id: str
    category: str
    subject: str
    prompt_index: int
    prompt: str
    pf_applies: bool
    ref_image: Path
    ref_mask: Path
    out_image: Path
    out_mask: Path


@dataclass
class ProtocolData:
    """A loaded human-alignment protocol.

    Attributes:
        samples: one :class:`~pytest_masc.Sample` per kept unit, in unit order.
        units: per-unit metadata, same order.
        ratings: ``{"concept": (G, n), "prompt": (G, n)}`` float arrays on ``0..4``, NaN
            where a group did not rate a unit (and for PF of style units).
        groups: the ``G`` rater-group names (rows of the rating arrays).
        dropped: counts by reason (:data:`DROP_REASONS`).
        methods: the methods loaded, in order; ``method_dirs`` their sample directories.
        scale_max: top of the rating scale (4).
    """

    samples: list[Sample]
    units: list[DreamBenchUnit]
    ratings: dict[str, np.ndarray]
    groups: tuple[str, ...]
    dropped: dict[str, int]
    methods: tuple[str, ...]
    method_dirs: dict[str, Optional[Path]] = field(default_factory=dict)
    root: Optional[Path] = None
    scale_max: float = SCALE_MAX

    def __len__(self) -> int:
        return len(self.units)

    @property
    def method_of(self) -> np.ndarray:
        """``(n,)`` method name of each unit."""
        return np.asarray([u.method for u in self.units], dtype=object)

    @property
    def pf_applies(self) -> np.ndarray:
        """``(n,)`` bool: prompt following is judged for this unit (not a style subject)."""
        return np.asarray([u.pf_applies for u in self.units], dtype=bool)

    def summary(self) -> str:
        """One line: units, methods, groups and the drops by reason."""
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        return (
            f"{len(self)} units, {len(self.methods)} methods, {len(self.groups)} rater groups; "
            f"dropped {sum(self.dropped.values())} ({drops})"
        )


def _mask_fraction(path: Path, cache: dict[Path, float]) -> float:
    if path not in cache:
        cache[path] = float(np.mean(load_mask(path, "mask")))
    return cache[path]


def load_dreambench_plus(
    root: Union[str, os.PathLike],
    masks: Union[str, os.PathLike],
    methods: Optional[Union[Iterable[str], Mapping[str, Union[str, os.PathLike]]]] = None,
    min_mask_fraction: float = 0.05,
    *,
    rated_only: Optional[bool] = None,
) -> ProtocolData:
    """Load DreamBench++ units, their masks and the human ratings (layout: module docstring).

    Args:
        root: the DreamBench++ checkout holding ``data/``, ``samples/`` and
            ``data_human_rating/``.
        masks: directory mirroring the image paths relative to ``root`` (any image extension).
        methods: rating-file method names to load (``["emu2", "blip_diffusion"]``), or
            ``{name: sample_dir}`` (a directory name under ``samples/`` or a path); ``None``
            loads every method with rating files (or, without ratings, every sample directory).
        min_mask_fraction: a unit whose reference or output mask covers this fraction of its
            image or less is dropped (the paper: 0.05).
        rated_only: ``True`` keeps the keys some group rated; ``False`` also keeps every other
            seed-0 output found (NaN ratings); ``None``: ``True`` for a method with rating
            files, ``False`` for one without (e.g. your own method's samples).

    Returns:
        :class:`ProtocolData`; units sorted by method (in ``methods`` order), collection id
        and prompt index.

    Raises:
        InputError: a malformed rating or caption file (named), a requested method with
            neither ratings nor samples, no reference directory.
    """
    root, masks = Path(root), Path(masks)
    _check_arguments(masks, min_mask_fraction)
    collections = read_collections(root)
    groups, files = rating_files(root)
    names, explicit = _method_names(root, files, methods)
    loaded = _Loaded(dropped={reason: 0 for reason in DROP_REASONS}, ratings={d: [] for d in DIMENSIONS})
    method_dirs: dict[str, Optional[Path]] = {}
    for name in names:
        method_dirs[name] = sample_dir(root, name, explicit.get(name))
        layout = _Layout(root, masks, collections, method_dirs[name])
        _load_method(loaded, name, layout, files.get(name, {}), groups, min_mask_fraction, rated_only)
    return ProtocolData(
        samples=[Sample(u.ref_image, u.ref_mask, u.out_image, u.out_mask, u.prompt, u.subject) for u in loaded.units],
        units=loaded.units,
        ratings={dimension: _ratings_matrix(rows, len(loaded.units), len(groups))
                 for dimension, rows in loaded.ratings.items()},
        groups=groups,
        dropped=loaded.dropped,
        methods=tuple(names),
        method_dirs=method_dirs,
        root=root,
    )


def _check_arguments(masks: Path, min_mask_fraction: float) -> None:
    if not masks.is_dir():
        raise InputError(f"{masks}: mask directory not found")
    if not 0.0 <= float(min_mask_fraction) < 1.0:
        raise ValueError(f"min_mask_fraction must be in [0, 1), got {min_mask_fraction}")


@dataclass
class _Loaded:
    """What :func:`load_dreambench_plus` has gathered so far: the kept units, one rating row
    (one entry per rater group) per unit and dimension, and the drop counts."""

    dropped: dict[str, int]
    ratings: dict[str, list[list[float]]]
    units: list[DreamBenchUnit] = field(default_factory=list)
    fractions: dict[Path, float] = field(default_factory=dict)  # mask path -> foreground fraction


def _load_method(
    loaded: _Loaded, name: str, layout: "_Layout", method_files: Mapping[str, Mapping[str, Path]],
    groups: tuple[str, ...], min_mask_fraction: float, rated_only: Optional[bool],
) -> None:
    """Add one method's units and their ratings to ``loaded``: every key some group rated
    (and every seed-0 output too when ``rated_only`` says so), each located or dropped."""
    if layout.sample_dir is None and not method_files:
        raise InputError(
            f"{layout.root}: method {name!r} has no rating files under data_human_rating/merged_data/<group>/ "
            f"and no sample directory under samples/"
        )
    tables = {
        dimension: {group: read_ratings(path) for group, path in method_files.get(dimension, {}).items()}
        for dimension in DIMENSIONS
    }
    keys = {key for per_group in tables.values() for table in per_group.values() for key in table}
    all_outputs = not method_files if rated_only is None else not rated_only
    if all_outputs and layout.sample_dir is not None:
        keys |= _output_keys(layout.sample_dir)
    for key in sorted(keys, key=parse_key):
        located = _locate(layout, key, min_mask_fraction, loaded.fractions)
        if isinstance(located, str):
            loaded.dropped[located] += 1
            continue
        unit = dataclasses.replace(located, method=name)
        loaded.units.append(unit)
        for dimension in DIMENSIONS:
            row = [tables[dimension].get(group, {}).get(key, math.nan) for group in groups]
            if dimension == "prompt" and not unit.pf_applies:
                row = [math.nan] * len(groups)
            loaded.ratings[dimension].append(row)


def _ratings_matrix(rows: list[list[float]], units: int, groups: int) -> np.ndarray:
    """``(groups, units)`` float64 ratings from one row per unit."""
    return np.asarray(rows, dtype=np.float64).reshape(units, groups).T.copy()


def _method_names(
    root: Path, files: Mapping[str, Any], methods: Optional[Union[Iterable[str], Mapping[str, Any]]],
) -> tuple[list[str], dict[str, Any]]:
    """The methods to load and the sample directories given for some: ``methods`` as
    :func:`load_dreambench_plus` takes it, or every rated method (every sample directory
    when nothing is rated)."""
    if methods is None:
        if files:
            names = sorted(files)
        else:
            samples_dir = root / "samples"
            names = sorted(p.name for p in samples_dir.iterdir() if p.is_dir()) if samples_dir.is_dir() else []
        explicit: dict[str, Any] = {}
    elif isinstance(methods, Mapping):
        names, explicit = list(methods), dict(methods)
    else:
        if isinstance(methods, str):
            raise TypeError("methods must be a list of method names or a {name: sample_dir} mapping, not one str")
        names, explicit = list(methods), {}
    if len(set(names)) != len(names):
        raise ValueError(f"methods lists a method twice: {names}")
    return names, explicit


def _output_keys(sample_dir: Path) -> set[str]:
    """Keys ``<collection_id>-<prompt index>`` of every seed-0 output under ``tgt_image``."""
    keys: set[str] = set()
    if not (sample_dir / "tgt_image").is_dir():
        return keys
    for cdir in (sample_dir / "tgt_image").iterdir():
        for image in cdir.glob("*_0.*") if cdir.is_dir() else ():
            prefix = image.stem[: -len("_0")]
            if image.suffix.lower() in IMAGE_EXTENSIONS and prefix.isdigit():
                keys.add(f"{cdir.name}-{int(prefix)}")
    return keys


@dataclass(frozen=True)
class _Layout:
    """Where one method's units are: the checkout, the masks, the references, its samples."""

    root: Path
    masks: Path
    collections: Mapping[str, Collection]
    sample_dir: Optional[Path]


def _locate(layout: _Layout, key: str, min_mask_fraction: float, fractions: dict[Path, float]) -> Union[DreamBenchUnit, str]:
    """The unit of ``key`` (its ``method`` left empty), or the reason (in :data:`DROP_REASONS`) it is dropped."""
    cid, prompt_index = parse_key(key)
    collection = layout.collections.get(cid)
    if collection is None:
        return "missing_reference"
    out_image = find_image(layout.sample_dir / "tgt_image" / cid, f"{prompt_index}_0") if layout.sample_dir else None
    if out_image is None:
        return "missing_output"
    ref_mask = mirrored_mask(layout.masks, layout.root, collection.image)
    if ref_mask is None:
        return "missing_ref_mask"
    out_mask = mirrored_mask(layout.masks, layout.root, out_image)
    if out_mask is None:
        return "missing_out_mask"
    if _mask_fraction(ref_mask, fractions) <= min_mask_fraction:
        return "small_ref_mask"
    if _mask_fraction(out_mask, fractions) <= min_mask_fraction:
        return "small_out_mask"
    return DreamBenchUnit(
        method="",
        key=key,
        collection_id=cid,
        category=collection.category,
        subject=collection.subject,
        prompt_index=prompt_index,
        prompt=_prompt(layout.sample_dir, collection, cid, prompt_index),
        pf_applies=collection.category != "style",
        ref_image=collection.image,
        ref_mask=ref_mask,
        out_image=out_image,
        out_mask=out_mask,
    )


def _prompt(sample_dir: Path, collection: Collection, cid: str, prompt_index: int) -> str:
    text_file = sample_dir / "text" / cid / f"{prompt_index}_0.txt"
    if text_file.is_file():
        try:
            lines = text_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{text_file}: cannot read prompt file ({error})") from None
        if lines and lines[0].strip():
            return lines[0].strip()
    if 0 <= prompt_index < len(collection.prompts):
        return collection.prompts[prompt_index]
    raise InputError(
        f"{text_file}: no prompt for {cid}-{prompt_index} (file missing or empty, and "
        f"{collection.caption} has {len(collection.prompts)} prompts)"
    )


__all__ = [
    "CATEGORIES",
    "Collection",
    "DROP_REASONS",
    "DreamBenchUnit",
    "PUBLISHED_METHODS",
    "ProtocolData",
    "collection_id",
    "find_image",
    "load_dreambench_plus",
    "method_name",
    "parse_key",
    "read_collections",
    "read_ratings",
]
