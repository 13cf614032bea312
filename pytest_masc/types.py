"""The sample and score records of the public API. Imports nothing heavy."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

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
        extras: diagnostics: patch counts, foreground fractions, the stripped prompt …
        concept_map: ``(Hp, Wp)`` float32 best-match cosine of each reference patch, NaN
            outside the reference foreground (for failure panels).
    """

    concept: float
    prompt: float
    global_concept: float
    global_prompt: float
    prompt_margin: float = math.nan
    distractor_prompts: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    concept_map: Optional["np.ndarray"] = field(default=None, repr=False, compare=False)

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
            "extras": dict(self.extras),
        }
