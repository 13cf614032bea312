"""Collection of ``masc_*.toml`` suite files: one test item per case, and the gate checks.

Shared by suite items and the ``masc`` fixture: :func:`record_scores` turns scores into a
:class:`~pytest_masc.gates.Record` and checks its gates; :class:`MascGateFailure` carries the
readable report.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pytest

from ..errors import MaSCError, SuiteError
from ..gates import Record, combine_scores, evaluate_gates, failure_report, nan_to_none

if TYPE_CHECKING:
    from .session import MascSession
    from ..suite.toml import Case, Concept, Suite
    from ..types import Score


class MascGateFailure(AssertionError):
    """A case scored below one of its gates; ``str()`` is the full report."""

    def __init__(self, record: Record) -> None:
        super().__init__(failure_report(record))
        self.record = record


def record_scores(
    session: "MascSession",
    *,
    nodeid: str,
    kind: str,
    suite: str,
    concept: str,
    case_id: str,
    prompt: str,
    subject: Optional[str],
    image: Any,
    scores: Sequence["Score"],
    gates: dict[str, float],
    human: Optional[dict[str, Sequence[float]]] = None,
    references: Sequence[Any] = (),
    reference_masks: Sequence[Any] = (),
    mask: Any = None,
    check_index: int = 0,
) -> Record:
    """Build the record of one case from its scores (one per reference), gate it, store it.

    Raises :class:`MascGateFailure` when a gate fails, after writing the failure panel when
    ``--masc-artifacts`` is set.
    """
    __tracebackhide__ = True
    combined, per_reference = combine_scores(scores)
    first = scores[0]
    from ..metric.inputs import describe

    record = Record(
        nodeid=nodeid,
        kind=kind,
        suite=suite,
        concept=concept,
        case_id=case_id,
        prompt=prompt,
        subject=subject,
        image=describe(image),
        scores=combined,
        concept_per_reference=per_reference,
        distractor_prompts={k: nan_to_none(v) for k, v in first.distractor_prompts.items()},
        gates=dict(gates),
        human={k: [float(x) for x in v] for k, v in (human or {}).items()},
        extras={**first.extras, "fg_threshold": session.model().fg_threshold},
        check_index=check_index,
    )
    if record.extras.get("prompt_truncated"):
        from ..errors import PromptTruncatedWarning

        warnings.warn(
            PromptTruncatedWarning(
                f"{suite} / case {case_id!r}: prompt {prompt!r} is longer than the text tower's context "
                "and was truncated for PF"
            ),
            stacklevel=2,
        )
    evaluate_gates(record)
    if not record.passed and session.settings.artifacts is not None:
        from .artifacts import write_failure_panel

        try:
            record.panel = str(write_failure_panel(
                session.settings.artifacts, record, references, reference_masks, image, mask, scores,
            ))
        except (MaSCError, OSError) as error:
            record.panel = f"(panel not written: {error})"
    session.add_record(record)
    if not record.passed:
        raise MascGateFailure(record)
    return record


class MascSuiteFile(pytest.File):
    """A ``masc_*.toml`` file: parsed and validated at collection, one item per case."""

    def collect(self):
        from ..suite.toml import load_suite

        from .session import SESSION_KEY

        try:
            suite = load_suite(self.path)
        except SuiteError as error:
            raise self.CollectError(f"MaSC suite error: {error}") from None
        if suite.protocol:
            from .protocol_item import MascProtocolItem

            yield MascProtocolItem.from_parent(
                self, name=suite.protocol["kind"], protocol=suite.protocol,
                suite_name=suite.name, suite_gates=suite.suite_gates,
            )
        elif suite.suite_gates:  # alpha gates over the cases' human ratings, checked at session end
            self.config.stash[SESSION_KEY].suite_gates[suite.name] = dict(suite.suite_gates)
        for case in suite.cases:
            yield MascCaseItem.from_parent(
                self, name=case.id, suite=suite, case=case, concept=suite.concepts[case.concept],
            )


class MascCaseItem(pytest.Item):
    """One suite case: scored with all cases of its file in one batch, then gated."""

    is_masc_case = True

    def __init__(self, *, suite: "Suite", case: "Case", concept: "Concept", **kwargs) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.case = case
        self.concept = concept
        self.add_marker(pytest.mark.masc_suite)

    @property
    def record_id(self) -> str:
        return plain_nodeid(self)

    def runtest(self) -> None:
        from .session import SESSION_KEY

        session = self.config.stash[SESSION_KEY]
        try:
            scores = session.suite_scores(self)
        except MaSCError as error:
            session.add_record(Record(
                nodeid=self.record_id, kind="suite", suite=self.suite.name, concept=self.case.concept,
                case_id=self.case.id, prompt=self.case.prompt, subject=self.concept.subject,
                image=str(self.case.image), gates=dict(self.case.gates), passed=False, error=str(error),
                human={k: list(v) for k, v in self.case.human.items()},
            ))
            raise
        record_scores(
            session,
            nodeid=self.record_id,
            kind="suite",
            suite=self.suite.name,
            concept=self.case.concept,
            case_id=self.case.id,
            prompt=self.case.prompt,
            subject=self.concept.subject,
            image=self.case.image,
            scores=scores,
            gates=self.case.gates,
            human=self.case.human,
            references=self.concept.references,
            reference_masks=self.concept.reference_masks,
            mask=self.case.mask,
        )

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MascGateFailure):
            return str(excinfo.value)
        if isinstance(excinfo.value, MaSCError):
            return f"MaSC error in {self.case.location}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.suite.name}::{self.case.id}"


def plain_nodeid(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix pytest-xdist adds under ``--dist loadgroup``,
    so records are the same with and without workers."""
    nodeid = item.nodeid
    for marker in item.iter_markers("xdist_group"):
        name = marker.kwargs.get("name") or (marker.args[0] if marker.args else "default")
        if nodeid.endswith(f"@{name}"):
            return nodeid[: -len(name) - 1]
    return nodeid


def relative_to_dir(value: Any, directory: Path) -> Any:
    """Paths in marker arguments are relative to the test file's directory."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        return path if path.is_absolute() else directory / path
    return value
