"""From scores to a verdict: the case's :class:`~pytest_masc.gates.Record`, its gates
checked, the failure panel written, and :class:`MascGateFailure` raised when a gate fails.
Shared by suite cases and the ``masc`` fixture."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import pytest

from ..errors import MaSCError, PromptTruncatedWarning
from ..gates import Record, combine_scores, evaluate_gates, failure_report, nan_to_none
from .session import MascSession

if TYPE_CHECKING:
    from ..types import Score


class MascGateFailure(AssertionError):
    """A case scored below one of its gates; ``str()`` is the full report."""

    def __init__(self, record: Record) -> None:
        super().__init__(failure_report(record))
        self.record = record


@dataclass(frozen=True)
class ScoredInputs:
    """What a case scored, for its failure panel: the output and its mask, the references
    and their masks (paths, PIL images or arrays)."""

    image: Any
    mask: Any
    references: Sequence[Any]
    reference_masks: Sequence[Any]


def judge(session: MascSession, record: Record, scores: Sequence["Score"], inputs: ScoredInputs) -> Record:
    """Fill ``record`` (what was scored, its gates) from ``scores`` (one per reference),
    check its gates and keep it in the session.

    Raises :class:`MascGateFailure` when a gate fails, after writing the failure panel when
    ``--masc-artifacts`` is set.
    """
    __tracebackhide__ = True
    record.scores, record.concept_per_reference = combine_scores(scores)
    first = scores[0]
    record.distractor_prompts = {k: nan_to_none(v) for k, v in first.distractor_prompts.items()}
    record.extras = first.extras
    if first.diagnostics is not None and first.diagnostics.prompt_truncated:
        warnings.warn(
            PromptTruncatedWarning(
                f"{record.suite} / case {record.case_id!r}: prompt {record.prompt!r} is longer than the text "
                "tower's context and was truncated for PF"
            ),
            stacklevel=2,
        )
    evaluate_gates(record)
    if record.computed_masks and session.settings.artifacts is not None:
        from .artifacts import write_computed_masks

        write_computed_masks(session.settings.artifacts, record, inputs.mask, inputs.reference_masks)
    if not record.passed and session.settings.artifacts is not None:
        from .artifacts import write_failure_panel  # numpy and PIL: only when a panel is due

        try:
            record.panel = str(write_failure_panel(
                session.settings.artifacts, record, inputs.references, inputs.reference_masks,
                inputs.image, inputs.mask, scores,
            ))
        except (MaSCError, OSError) as error:
            record.panel = f"(panel not written: {error})"
    session.add_record(record)
    if not record.passed:
        raise MascGateFailure(record)
    return record


def plain_nodeid(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix pytest-xdist adds under ``--dist loadgroup``,
    so records are the same with and without workers."""
    nodeid = item.nodeid
    for marker in item.iter_markers("xdist_group"):
        name = marker.kwargs.get("name") or (marker.args[0] if marker.args else "default")
        if nodeid.endswith(f"@{name}"):
            return nodeid[: -len(name) - 1]
    return nodeid
