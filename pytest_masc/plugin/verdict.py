"""From scores to a verdict: a case's :class:`~pytest_masc.gates.Record` (one per seed), its
gates checked (on the mean over its seeds), the failure panels written, and
:class:`MascGateFailure` raised when a gate fails. Shared by suite cases and the ``masc`` fixture."""
from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pytest

from ..errors import InputError, MaSCError, PromptTruncatedWarning
from ..gates import Record, combine_scores, evaluate_gates, failure_report, nan_to_none
from .case_inputs import CaseInputs
from .session import MascSession

if TYPE_CHECKING:
    from ..types import Score


class MascGateFailure(AssertionError):
    """A case scored below one of its gates; ``str()`` is the full report (for a case of several
    seeds, ``record`` holds the means and ``seeds`` each seed's record)."""

    def __init__(self, record: Record, seeds: Sequence[Record] = ()) -> None:
        lines = [failure_report(record)]
        for seed in seeds:
            shown = ", ".join(f"{key}={'nan' if value is None else f'{value:.4f}'}" for key, value in seed.scores.items())
            lines.append(f"  seed {seed.seed}: {shown}" + (f" ({seed.image})" if seed.image else ""))
        super().__init__("\n".join(lines))
        self.record = record
        self.seeds = list(seeds)


def fill_record(session: MascSession, record: Record, scores: Sequence["Score"]) -> None:
    """``record``'s scores, distractor scores and diagnostics from ``scores`` (one per
    reference); warns when the prompt was truncated for PF."""
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
            stacklevel=3,
        )


def judge(session: MascSession, records: Sequence[Record], scores: Sequence[Any], inputs: CaseInputs) -> Record:
    """Judge one case: ``records`` (one per output of ``inputs``: what was scored, its gates)
    filled from ``scores`` (per output, its scores, one per reference, or the error that
    stopped them), then :func:`decide`. Returns the record the gates were checked on.

    Raises the error of an output that could not be scored (naming its seed, the records
    kept), or :class:`MascGateFailure` when a gate fails.
    """
    __tracebackhide__ = True
    fill_records(session, records, scores)
    return decide(session, records, scores, inputs)


def fill_records(session: MascSession, records: Sequence[Record], scores: Sequence[Any]) -> None:
    """Each record filled from its output's scores (:func:`fill_record`), or its error; when an
    output could not be scored, keeps the records and raises its error, naming its seed."""
    __tracebackhide__ = True
    for record, result in zip(records, scores):
        if isinstance(result, BaseException):
            record.passed, record.error = False, error_text(result)
        else:
            fill_record(session, record, result)
    errors = [(record, result) for record, result in zip(records, scores) if isinstance(result, BaseException)]
    if errors:
        raise _unscored(session, records, errors)


def decide(session: MascSession, records: Sequence[Record], scores: Sequence[Any], inputs: CaseInputs) -> Record:
    """A scored case's verdict (:func:`case_verdict`), its panels written (``--masc-artifacts``),
    its records kept; raises :class:`MascGateFailure` when a gate fails."""
    __tracebackhide__ = True
    verdict = case_verdict(records)
    _write_artifacts(session, records, scores, inputs)
    keep_records(session, records)
    if not verdict.passed:
        raise MascGateFailure(verdict, records if len(records) > 1 or records[0].seed is not None else ())
    return verdict


def case_verdict(records: Sequence[Record]) -> Record:
    """Check a case's gates: on its one record, or for a case of several seeds on a record of
    the means over them (:func:`mean_record`), whose failures, each saying ``mean over N seeds``,
    and verdict every seed's record then carries. Returns the record the gates were checked on."""
    if len(records) == 1 and records[0].seed is None:
        evaluate_gates(records[0])
        return records[0]
    mean = mean_record(records)
    evaluate_gates(mean)
    over = f"mean over {len(records)} seed{'s' if len(records) > 1 else ''}"
    failures = [f"{over}: {failure}" for failure in mean.failures]
    if failures:
        for key in mean.scores:
            nan_seeds = [r.seed for r in records if r.scores.get(key) is None]
            if mean.scores[key] is None and nan_seeds and len(nan_seeds) < len(records):
                failures.append(f"{key} is NaN for seed {', '.join(map(str, nan_seeds))}, so its mean is NaN")
    mean.failures, mean.passed = failures, not failures
    for record in records:
        record.failures, record.passed = list(failures), not failures and record.error is None
    return mean


def mean_record(records: Sequence[Record]) -> Record:
    """A case's seeds as one record: each score the mean over the seeds (``None``, NaN, when a
    seed's is), the case's fields from the first seed, the diagnostics (patch counts, the PF
    text: what explains a NaN) of the first seed whose PF is NaN, else of the first seed; its
    ``image`` says which."""
    first = records[0]

    def mean(values: list[Optional[float]]) -> Optional[float]:
        return None if not values or any(v is None for v in values) else sum(values) / len(values)

    prompts = list(dict.fromkeys(p for r in records for p in r.distractor_prompts))
    references = max(len(r.concept_per_reference) for r in records)
    shown = next((r for r in records if r.scores.get("prompt") is None), first)
    return dataclasses.replace(
        first,
        image=f"{len(records)} images, one per seed (below); diagnostics of seed {shown.seed}",
        scores={key: mean([r.scores.get(key) for r in records]) for key in first.scores},
        concept_per_reference=[mean([r.concept_per_reference[i] if i < len(r.concept_per_reference) else None
                                     for r in records]) for i in range(references)],
        distractor_prompts={p: mean([r.distractor_prompts.get(p) for r in records]) for p in prompts},
        extras=dict(shown.extras), failures=[], seed=None, panel=None,
        computed_masks=[],
    )


def error_text(error: BaseException) -> str:
    """A record's ``error``: a MaSC error's message, any other error's type and message."""
    return str(error) if isinstance(error, MaSCError) else f"{type(error).__name__}: {error}"


def _unscored(session: MascSession, records: Sequence[Record], errors: list) -> BaseException:
    """The error to raise when outputs of a case could not be scored; the case's other records
    say why its mean is not formed. Keeps the records."""
    if len(records) == 1 and records[0].seed is None:
        keep_records(session, records)
        return errors[0][1]
    seeds = ", ".join(str(record.seed) for record, _ in errors)
    for record in records:
        if record.error is None:
            record.passed = False
            record.failures = [f"seed {seeds} could not be scored, so the case's mean over {len(records)} "
                               "seeds is not formed"]
    keep_records(session, records)
    record, error = errors[0]
    message = f"seed {record.seed} ({record.image}): {error_text(error)}"
    return InputError(message) if isinstance(error, MaSCError) else RuntimeError(message)


def keep_records(session: MascSession, records: Sequence[Record]) -> None:
    """Add the records the session does not hold yet."""
    for record in records:
        if not any(kept is record for kept in session.records):
            session.add_record(record)


def _write_artifacts(session: MascSession, records: Sequence[Record], scores: Sequence[Any],
                     inputs: CaseInputs) -> None:
    """With ``--masc-artifacts``: each computed mask, and a failing case's panel per image."""
    if session.settings.artifacts is None:
        return
    for record, result, output in zip(records, scores, inputs.outputs):
        if record.computed_masks:
            from .artifacts import write_computed_masks

            write_computed_masks(session.settings.artifacts, record, output.mask, inputs.reference_masks)
        if not record.passed:
            from .artifacts import write_failure_panel  # numpy and PIL: only when a panel is due

            try:
                record.panel = str(write_failure_panel(
                    session.settings.artifacts, record, inputs.references, inputs.reference_masks,
                    output.image, output.mask, result,
                ))
            except (MaSCError, OSError) as error:
                record.panel = f"(panel not written: {error})"


def plain_nodeid(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix pytest-xdist adds under ``--dist loadgroup``,
    so records are the same with and without workers."""
    nodeid = item.nodeid
    for marker in item.iter_markers("xdist_group"):
        name = marker.kwargs.get("name") or (marker.args[0] if marker.args else "default")
        if nodeid.endswith(f"@{name}"):
            return nodeid[: -len(name) - 1]
    return nodeid
