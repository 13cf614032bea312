"""The sample and score records of the public API. Imports nothing heavy."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .defaults import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Sample:
    """One (reference image + mask, generated image + mask, prompt) triple to score.

    Images: a path, a ``PIL.Image`` (any mode) or an ``HxWx3`` uint8 array. Masks: a path, a
    PIL image or an ``HxW`` array (bool, uint8 0..255, float 0..1), each the size of its image;
    foreground is non-zero. ``subject`` is stripped from ``prompt`` for PF (``None`` keeps it).
    ``distractors`` are other prompts scored on the same background pool, for the margin.
    """

    ref_image: Any
    ref_mask: Any
    out_image: Any
    out_mask: Any
    prompt: str
    subject: Optional[str] = None
    distractors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise TypeError(f"prompt must be a str, got {type(self.prompt).__name__}")
        if self.subject is not None and not isinstance(self.subject, str):
            raise TypeError(f"subject must be a str or None, got {type(self.subject).__name__}")
        if isinstance(self.distractors, str):
            raise TypeError("distractors must be a sequence of prompts, not one str")
        object.__setattr__(self, "distractors", tuple(self.distractors))


@dataclass(frozen=True)
class ScoreDiagnostics:
    """How one sample was scored: what PF read of the prompt, the patch grids and counts, how
    the masks were read, and the foreground threshold the scores were computed with.

    :meth:`as_dict` gives the JSON form (the ``extras`` of ``--masc-json`` records and
    :meth:`Score.as_dict`, the ``extras.<key>`` columns of the report frame);
    :meth:`from_dict` reads it back.

    Attributes:
        prompt_text: the text PF scored: the prompt with the subject stripped.
        subject_found: whether the subject occurs in the prompt (else nothing is stripped).
        prompt_stripped: whether ``prompt_text`` differs from the prompt (words compared).
        prompt_truncated: whether a text was longer than the text tower's context.
        ref_grid, out_grid: ``(rows, columns)`` of the two images' patch grids.
        ref_patches, out_patches: patches of each grid.
        ref_foreground_patches: reference patches whose weight reaches ``fg_threshold``.
        ref_foreground_fraction, out_foreground_fraction: mean mask weight on each grid.
        out_foreground_patches: output patches PF's pool hides.
        background_patches: output patches PF pools (``out_patches - out_foreground_patches``).
        ref_mask_reading, out_mask_reading: how each mask file or array was read
            (:class:`~pytest_masc.metric.inputs.MaskReading`, JSON form); ``None`` in
            records written before readings were recorded.
        fg_threshold: the foreground threshold on mask weights, in ``[0, 1]``.
    """

    prompt_text: str
    subject_found: bool
    prompt_stripped: bool
    prompt_truncated: bool
    ref_grid: tuple[int, int]
    out_grid: tuple[int, int]
    ref_patches: int
    ref_foreground_patches: int
    ref_foreground_fraction: float
    out_patches: int
    out_foreground_patches: int
    out_foreground_fraction: float
    background_patches: int
    ref_mask_reading: Optional[dict[str, Any]]
    out_mask_reading: Optional[dict[str, Any]]
    fg_threshold: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: one key per field, grids as lists."""
        data = asdict(self)
        data["ref_grid"], data["out_grid"] = list(self.ref_grid), list(self.out_grid)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optional["ScoreDiagnostics"]:
        """The diagnostics in ``data`` (an :meth:`as_dict` mapping, other keys ignored), or
        ``None`` when it holds none (a case that raised, scores made without them). Records
        written before a field existed read as: no mask readings, the default threshold."""
        optional = {"ref_mask_reading": None, "out_mask_reading": None, "fg_threshold": DEFAULT_THRESHOLD}
        values = {}
        for field_ in fields(cls):
            if field_.name in data:
                values[field_.name] = data[field_.name]
            elif field_.name in optional:
                values[field_.name] = optional[field_.name]
            else:
                return None
        values["ref_grid"], values["out_grid"] = tuple(values["ref_grid"]), tuple(values["out_grid"])
        return cls(**values)


@dataclass
class Score:
    """MaSC scores of one sample. Every score is a cosine in ``[-1, 1]`` or NaN.

    Attributes:
        concept: CP, mean best-match cosine over the reference's foreground patches;
            NaN when the reference mask selects no patch.
        prompt: PF, cosine of the output's background pool and the stripped prompt;
            NaN when no background patch is left.
        global_concept: cosine of the two images' pooled SigLIP2 embeddings.
        global_prompt: cosine of the whole output's pooled embedding and the full prompt.
        prompt_margin: PF minus the highest PF of the distractor prompts on the same
            background pool; NaN without distractors or background.
        distractor_prompts: PF of each distractor prompt, by prompt.
        diagnostics: how the sample was scored (:class:`ScoreDiagnostics`); ``None`` for
            scores made without them (a Ray run).
        concept_per_reference: CP against each reference, when ``concept`` is their mean
            (the ``masc`` fixture's score of a case with several references); else empty.
        concept_map: ``(Hp, Wp)`` float32 best-match cosine of each reference patch, NaN
            outside the reference foreground (for failure panels).
    """

    concept: float
    prompt: float
    global_concept: float
    global_prompt: float
    prompt_margin: float = math.nan
    distractor_prompts: dict[str, float] = field(default_factory=dict)
    diagnostics: Optional[ScoreDiagnostics] = None
    concept_map: Optional["np.ndarray"] = field(default=None, repr=False, compare=False)
    concept_per_reference: tuple[Optional[float], ...] = ()

    @property
    def extras(self) -> dict[str, Any]:
        """The diagnostics' JSON form (:meth:`ScoreDiagnostics.as_dict`: the ``extras`` of a
        ``--masc-json`` record; ``{}`` without them), plus ``concept_per_reference`` when set."""
        extras = {} if self.diagnostics is None else self.diagnostics.as_dict()
        if self.concept_per_reference:
            extras["concept_per_reference"] = list(self.concept_per_reference)
        return extras

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready scores (floats, NaN as ``None``) and extras; no concept map."""
        def clean(value: float) -> Optional[float]:
            return None if value is None or math.isnan(value) else float(value)

        return {
            "concept": clean(self.concept),
            "prompt": clean(self.prompt),
            "global_concept": clean(self.global_concept),
            "global_prompt": clean(self.global_prompt),
            "prompt_margin": clean(self.prompt_margin),
            "distractor_prompts": {k: clean(v) for k, v in self.distractor_prompts.items()},
            "extras": self.extras,
        }
