"""The inputs of one gated case, shared by suite cases and ``masc.check``: its output images
(one, or one per seed) with their masks, and its references with theirs, as given or with the
masks a segmenter computed filled in."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .masks import ComputedMask

#: the role of an output's mask in computed-mask records and artifact names
OUTPUT_ROLE = "output"


def reference_role(index: int) -> str:
    """The role of the ``index``-th (0-based) reference's mask: ``reference 1``, ``reference 2`` …"""
    return f"reference {index + 1}"


@dataclass(frozen=True)
class Output:
    """One generated image of a case: the image and its mask (path, PIL image or array;
    ``None``: to compute) and its generation seed (``None`` for a one-image case)."""

    image: Any
    mask: Any = None
    seed: Optional[int] = None


@dataclass(frozen=True)
class ComputedFor:
    """A mask the segmenter made for a case: its role (``output`` or ``reference N``), the
    output it belongs to (its index in :attr:`CaseInputs.outputs`; ``None`` for a reference)."""

    role: str
    output: Optional[int]
    mask: "ComputedMask"


@dataclass(frozen=True)
class CaseInputs:
    """What one case scores: its outputs, its references and their masks (``None`` entries:
    masks to compute with :attr:`text`), the masks computed so far, and the error that stopped
    a mask (then the case cannot be scored)."""

    outputs: tuple[Output, ...]
    references: tuple[Any, ...]
    reference_masks: tuple[Any, ...]
    text: Optional[str] = None  # what a missing mask is segmented with (segment_prompt, else subject)
    computed: tuple[ComputedFor, ...] = ()
    error: Optional[BaseException] = None

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError("a case has at least one output image")
        if len(self.references) != len(self.reference_masks):
            raise ValueError(f"{len(self.references)} reference(s) but {len(self.reference_masks)} reference mask(s)")

    @property
    def seeded(self) -> bool:
        """Whether the outputs are images of several seeds (each record carries its seed)."""
        return self.outputs[0].seed is not None

    def missing(self) -> list[tuple[str, Optional[int], Any]]:
        """``(role, output index or None, image)`` of each mask to compute."""
        outputs = [(OUTPUT_ROLE, i, out.image) for i, out in enumerate(self.outputs) if out.mask is None]
        return outputs + [(reference_role(i), None, ref) for i, (ref, mask) in
                          enumerate(zip(self.references, self.reference_masks)) if mask is None]

    def filled(self, computed: list[ComputedFor], error: Optional[BaseException]) -> "CaseInputs":
        """These inputs with the ``computed`` masks in place of the missing ones."""
        outputs = tuple(
            out if out.mask is not None else replace(out, mask=next(
                (c.mask.mask for c in computed if c.role == OUTPUT_ROLE and c.output == i), None))
            for i, out in enumerate(self.outputs)
        )
        by_role = {c.role: c.mask.mask for c in computed if c.output is None}
        reference_masks = tuple(m if m is not None else by_role.get(reference_role(i))
                                for i, m in enumerate(self.reference_masks))
        return replace(self, outputs=outputs, reference_masks=reference_masks, computed=tuple(computed), error=error)

    def mask_records(self, settings: dict[str, Any], output: int = 0) -> list[dict[str, Any]]:
        """The JSON entries of the masks computed for the ``output``-th image's record: the
        references' and that output's own."""
        return [c.mask.record(c.role, settings) for c in self.computed if c.output in (None, output)]
