"""The parsed records of a suite file: :class:`Suite`, its :class:`Concept` and :class:`Case`
entries, and each case's :class:`CaseImage` (one per seed)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..protocols.spec import ProtocolSpec
from .checks import did_you_mean

__all__ = ["Case", "CaseImage", "Concept", "Suite", "is_suite_file"]


@dataclass(frozen=True)
class Concept:
    """One concept: its reference images and their masks (absolute, resolved paths; ``None``
    for each reference when ``reference_mask`` is left out, to be segmented with
    :attr:`segmentation_text`)."""

    name: str
    subject: Optional[str]
    references: tuple[Path, ...]
    reference_masks: tuple[Optional[Path], ...]
    segment_prompt: Optional[str] = None

    @property
    def segmentation_text(self) -> Optional[str]:
        """What a segmenter looks for in this concept's images: ``segment_prompt``, else ``subject``."""
        return self.segment_prompt or self.subject


@dataclass(frozen=True)
class CaseImage:
    """One generated image of a case: its path, its mask (``None``: computed by the session's
    segmenter) and its generation seed (``None`` for a one-image case)."""

    path: Path
    mask: Optional[Path]
    seed: Optional[int] = None


@dataclass(frozen=True)
class Case:
    """One gated generation: prompt, its generated images (one per seed) + masks, effective
    gates, ratings.

    ``gates`` holds only keys of :data:`GATE_KEYS`; ``human`` maps ``"concept"`` and/or
    ``"prompt"`` to ratings; ``location`` says where the case was written, for messages.
    Cases hash (by id, location, prompt and paths) although their dict fields do not.
    """

    id: str
    concept: str
    prompt: str
    images: tuple[CaseImage, ...]  # one, or one per seed; gates apply to the mean over them
    gates: dict[str, float]
    distractors: tuple[str, ...]
    human: dict[str, tuple[float, ...]]
    location: str

    def __hash__(self) -> int:  # the dict fields are not hashable; equal cases share these
        return hash((self.id, self.location, self.prompt, self.images))

    @property
    def seeded(self) -> bool:
        """Whether the case holds images of several seeds (its records carry ``seed``)."""
        return self.images[0].seed is not None


@dataclass(frozen=True)
class Suite:
    """A parsed, validated suite file."""

    path: Path
    name: str
    concepts: dict[str, Concept]
    cases: tuple[Case, ...]
    gates: dict[str, float] = field(default_factory=dict)
    suite_gates: dict[str, float] = field(default_factory=dict)
    protocol: Optional[ProtocolSpec] = None

    def __hash__(self) -> int:  # the dict fields are not hashable; equal suites share these
        return hash((self.path, self.name, self.cases))

    def concept_cases(self, concept: str) -> tuple[Case, ...]:
        """The cases of one concept, in file order; ``KeyError`` for an unknown concept."""
        if concept not in self.concepts:
            raise KeyError(f"suite {self.name!r} has no concept {concept!r}{did_you_mean(concept, self.concepts)}")
        return tuple(case for case in self.cases if case.concept == concept)


def is_suite_file(path: str | os.PathLike) -> bool:
    """Whether a file name matches ``masc_*.toml`` (case-sensitive, non-empty ``*``)."""
    name = Path(path).name
    return name.startswith("masc_") and name.endswith(".toml") and len(name) > len("masc_.toml")
