"""ORIDa identity protocol: same-subject vs cross-subject photo pairs, scored by CP.

Layout read (``root`` is the directory holding ``ORIDa_v1.0``, or ``ORIDa_v1.0`` itself)::

    ORIDa_v1.0/<split>/<subject>/factual_only/images/<stem>.<ext>
    ORIDa_v1.0/<split>/<subject>/factual_only/annotations/masks/<stem>_mask.<ext>
    ORIDa_v1.0/<split>/<subject>/factual_counterfactual/<scene_id>/...   (not used here)

Protocol (the MaSC paper's identity experiment): the first ``n_subjects`` subjects in sorted
order that have at least ``min_backgrounds`` backgrounds; one photo per background; every
same-subject pair of those photos (reference = the earlier photo in sorted order, output =
the later), and as many cross-subject pairs drawn at random (``numpy.random.default_rng(seed)``,
distinct unordered pairs, orientation as drawn). The score of a pair is MaSC CP; the
identity AUC is P(same-subject score > cross-subject score).

Assumptions (no published loader or file list for ORIDa was found to check against; the
searched code and pages held none):

* each image in ``factual_only/images`` is one photo of the subject on its own background,
  so "one photo per background" keeps every image. When file names encode a background
  shared by several photos, pass ``background_of=lambda stem: ...`` to group them; the
  first photo (sorted by stem) of each background is kept;
* the mask of ``<stem>.<ext>`` is ``annotations/masks/<stem>_mask.<ext'>`` with any image
  extension; a photo without a mask is skipped (counted as ``missing_mask``) and does not
  count as a background;
* ``factual_counterfactual`` (multi-object scenes) plays no part in the identity protocol.

The pairs' prompt is ``"a photo of <subject>"`` (subject name with ``_`` as spaces); it only
matters for PF, which this protocol does not use.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..errors import InputError
from ..types import Sample
from .dreambench_files import IMAGE_EXTENSIONS, find_image

VERSION_DIR = "ORIDa_v1.0"


@dataclass(frozen=True)
class IdentityPair:
    """One scored pair: reference photo (with mask) and output photo (with mask)."""

    ref_subject: str
    ref_image: Path
    ref_mask: Path
    out_subject: str
    out_image: Path
    out_mask: Path

    @property
    def same(self) -> bool:
        return self.ref_subject == self.out_subject


@dataclass
class IdentityData:
    """A loaded identity protocol.

    Attributes:
        samples: one :class:`~pytest_masc.Sample` per pair.
        same: ``(n,)`` bool, True for a same-subject pair.
        pairs: per-pair metadata, same order (same-subject pairs first).
        subjects: the subjects used, sorted.
        photos: subject -> the photos kept (one per background), sorted.
        dropped: ``{"missing_mask": photos without a mask, "few_backgrounds": subjects
            with fewer than min_backgrounds backgrounds}``.
    """

    samples: list[Sample]
    same: np.ndarray
    pairs: list[IdentityPair]
    subjects: tuple[str, ...]
    photos: dict[str, tuple[Path, ...]]
    dropped: dict[str, int] = field(default_factory=dict)
    root: Optional[Path] = None
    split: str = ""

    def __len__(self) -> int:
        return len(self.pairs)

    def summary(self) -> str:
        n_same = int(self.same.sum())
        return (
            f"{len(self.subjects)} subjects, {sum(len(p) for p in self.photos.values())} photos; "
            f"{n_same} same-subject and {len(self) - n_same} cross-subject pairs; "
            f"skipped {self.dropped.get('missing_mask', 0)} photos without mask, "
            f"{self.dropped.get('few_backgrounds', 0)} subjects with too few backgrounds"
        )


def _split_dir(root: Path, split: str) -> Path:
    base = root if root.name == VERSION_DIR else root / VERSION_DIR
    if not base.is_dir():
        raise InputError(f"{base}: ORIDa directory not found (expected {VERSION_DIR} in {root})")
    directory = base / split
    if not directory.is_dir():
        splits = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise InputError(f"{directory}: ORIDa split {split!r} not found (splits: {', '.join(splits) or 'none'})")
    return directory


def subject_photos(
    subject_dir: Path, background_of: Optional[Callable[[str], str]] = None
) -> tuple[list[tuple[Path, Path]], int]:
    """One ``(image, mask)`` per background of a subject, sorted by stem, and the number
    of photos skipped for lack of a mask."""
    images_dir = subject_dir / "factual_only" / "images"
    masks_dir = subject_dir / "factual_only" / "annotations" / "masks"
    if not images_dir.is_dir():
        return [], 0
    kept: dict[str, tuple[Path, Path]] = {}
    missing = 0
    for image in sorted(images_dir.iterdir(), key=lambda p: p.name):
        if image.suffix.lower() not in IMAGE_EXTENSIONS or image.name.startswith("."):
            continue
        mask = find_image(masks_dir, f"{image.stem}_mask")
        if mask is None:
            missing += 1
            continue
        background = background_of(image.stem) if background_of else image.stem
        kept.setdefault(background, (image, mask))
    return list(kept.values()), missing


def _cross_pairs(labels: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` distinct unordered cross-subject index pairs, oriented as drawn."""
    n = len(labels)
    _, sizes = np.unique(labels, return_counts=True)
    available = n * (n - 1) // 2 - int((sizes * (sizes - 1) // 2).sum())
    if available <= 2 * count:  # few: enumerate and pick without replacement
        every = [(i, j) for i, j in itertools.combinations(range(n), 2) if labels[i] != labels[j]]
        chosen = rng.permutation(len(every))[: min(count, len(every))]
        return [every[k] if rng.random() < 0.5 else every[k][::-1] for k in chosen]
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        draws = rng.integers(0, n, size=(2 * (count - len(pairs)) + 16, 2))
        for i, j in draws:
            i, j = int(i), int(j)
            key = (min(i, j), max(i, j))
            if labels[i] == labels[j] or key in seen:
                continue
            seen.add(key)
            pairs.append((i, j))
            if len(pairs) == count:
                break
    return pairs


def load_orida(
    root: Union[str, os.PathLike],
    split: str,
    n_subjects: int = 50,
    min_backgrounds: int = 10,
    seed: int = 0,
    *,
    background_of: Optional[Callable[[str], str]] = None,
) -> IdentityData:
    """Build the identity protocol's pairs from an ORIDa tree (layout and assumptions above).

    Args:
        root: directory holding ``ORIDa_v1.0`` (or that directory itself).
        split: split directory name under ``ORIDa_v1.0``.
        n_subjects: take the first this many eligible subjects (sorted by name).
        min_backgrounds: a subject is eligible with at least this many backgrounds.
        seed: seeds the cross-subject pair draw.
        background_of: maps an image stem to its background id (default: the stem itself).

    Returns:
        :class:`IdentityData` with ``sum_s k_s (k_s - 1) / 2`` same-subject pairs (``k_s``
        photos of subject ``s``) and as many cross-subject pairs (fewer only when fewer exist).

    Raises:
        InputError: the split is missing, or fewer than two subjects are eligible.
    """
    if int(n_subjects) < 2:
        raise ValueError(f"n_subjects must be at least 2 (cross-subject pairs), got {n_subjects}")
    if int(min_backgrounds) < 2:
        raise ValueError(f"min_backgrounds must be at least 2 (same-subject pairs), got {min_backgrounds}")
    root = Path(root)
    split_dir = _split_dir(root, split)
    photos: dict[str, tuple[Path, ...]] = {}
    masks: dict[Path, Path] = {}
    missing = few = 0
    for subject_dir in sorted((p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: p.name):
        if len(photos) == n_subjects:
            break
        kept, skipped = subject_photos(subject_dir, background_of)
        missing += skipped
        if len(kept) < min_backgrounds:
            few += 1
            continue
        photos[subject_dir.name] = tuple(image for image, _ in kept)
        masks.update(dict(kept))
    if len(photos) < 2:
        raise InputError(
            f"{split_dir}: only {len(photos)} subject(s) have at least {min_backgrounds} backgrounds "
            "with masks; the identity protocol needs two or more"
        )
    subjects = tuple(photos)
    flat = [(subject, image) for subject in subjects for image in photos[subject]]
    labels = np.asarray([subjects.index(s) for s, _ in flat])
    same_pairs = [
        (i, j) for i, j in itertools.combinations(range(len(flat)), 2) if labels[i] == labels[j]
    ]
    rng = np.random.default_rng(seed)
    cross_pairs = _cross_pairs(labels, len(same_pairs), rng)
    pairs = []
    for i, j in same_pairs + cross_pairs:
        (ref_subject, ref_image), (out_subject, out_image) = flat[i], flat[j]
        pairs.append(IdentityPair(ref_subject, ref_image, masks[ref_image], out_subject, out_image, masks[out_image]))
    samples = [
        Sample(p.ref_image, p.ref_mask, p.out_image, p.out_mask, f"a photo of {p.ref_subject.replace('_', ' ')}")
        for p in pairs
    ]
    return IdentityData(
        samples=samples,
        same=np.asarray([p.same for p in pairs], dtype=bool),
        pairs=pairs,
        subjects=subjects,
        photos=photos,
        dropped={"missing_mask": missing, "few_backgrounds": few},
        root=root,
        split=split,
    )


__all__ = [
    "IdentityData",
    "IdentityPair",
    "load_orida",
    "subject_photos",
]
