"""The checks TOML and CSV cases share: a :class:`CaseDraft` (a case as read) becomes a
validated :class:`~pytest_masc.suite.model.Case` with its id, images, gates and distractors."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..protocols.spec import ProtocolSpec
from .checks import did_you_mean, fail, gate, text
from .files import SuiteFile
from .model import Case, CaseImage, Concept
from .schema import GATE_KEYS
from .seeds import RawImage

__all__ = ["CaseDraft", "check_suite_gates", "finish_cases"]


@dataclass
class CaseDraft:
    """A case as read from TOML or CSV, before the checks both forms share."""

    where: str                           # where the case is, before its id is known
    fields: dict[str, Any]               # id, concept, prompt and gates as given
    images: list[RawImage]               # one, or one per seed (empty: no image given)
    human: dict[str, tuple[float, ...]]  # validated ratings
    distractors: Optional[list]          # None: not given
    missing: str                         # message for a missing required field ({key})
    location: Callable[[str], str]       # case id -> Case.location


def finish_cases(
    drafts: list[CaseDraft], suite_gates: dict[str, float], concepts: dict[str, Concept], suite_file: SuiteFile,
) -> tuple[Case, ...]:
    """Validate the fields shared by TOML and CSV cases; default ids and distractors."""
    counts: dict[str, int] = {}
    seen: dict[str, str] = {}
    cases = [_finish_case(draft, suite_gates, concepts, suite_file, counts, seen) for draft in drafts]
    prompts_by_concept: dict[str, list[str]] = {}
    for case in cases:
        prompts = prompts_by_concept.setdefault(case.concept, [])
        if case.prompt not in prompts:
            prompts.append(case.prompt)
    return tuple(
        case if case.distractors is not None
        else dataclasses.replace(case, distractors=tuple(p for p in prompts_by_concept[case.concept] if p != case.prompt))
        for case in cases
    )


def _finish_case(
    draft: CaseDraft, suite_gates: dict[str, float], concepts: dict[str, Concept], suite_file: SuiteFile,
    counts: dict[str, int], seen: dict[str, str],
) -> Case:
    """One validated case; ``distractors`` is ``None`` when to default (the other prompts)."""
    where, fields = draft.where, draft.fields
    for key in ("concept", "prompt"):
        if key not in fields:
            fail(where, draft.missing.format(key=key))
    if not draft.images:
        fail(where, draft.missing.format(key="image"))
    concept = text(where, "concept", fields["concept"])
    if concept not in concepts:
        fail(where, f"unknown concept {concept!r}{did_you_mean(concept, concepts)}")
    counts[concept] = counts.get(concept, 0) + 1
    case_id = text(where, "id", fields["id"]) if "id" in fields else f"{concept}-{counts[concept]}"
    location = draft.location(case_id)
    if case_id in seen:
        fail(suite_file.name, f"duplicate case id {case_id!r}: {seen[case_id]} and {location}")
    seen[case_id] = location
    where = location
    prompt = text(where, "prompt", fields["prompt"])
    images = _case_images(where, draft.images, suite_file)
    if any(image.mask is None for image in images) and concepts[concept].segmentation_text is None:
        fail(where, f"no mask, and concept {concept!r} has neither subject nor segment_prompt to segment "
                    "the image with: give mask = ..., or a subject")
    own_gates = {k: gate(where, k, fields[k]) for k in GATE_KEYS if k in fields}
    merged = {**suite_gates, **own_gates}
    return Case(
        id=case_id,
        concept=concept,
        prompt=prompt,
        images=images,
        gates={k: merged[k] for k in GATE_KEYS if k in merged},
        distractors=_distractors(where, draft.distractors, prompt),
        human=dict(draft.human),
        location=location,
    )


def _case_images(where: str, raw: list[RawImage], suite_file: SuiteFile) -> tuple[CaseImage, ...]:
    """The images resolved (and with ``check_files`` found); one file twice is refused."""
    images, names = [], {}
    for item in raw:
        path = suite_file.file(where, item.name, item.image)
        if path in names:
            fail(where, f"{item.name} {item.image.strip()!r} is the same file as {names[path]}: each seed needs "
                        "its own image")
        names[path] = item.name
        mask = suite_file.file(where, item.mask_name, item.mask) if item.mask is not None else None
        images.append(CaseImage(path=path, mask=mask, seed=item.seed))
    return tuple(images)


def _distractors(where: str, given: Optional[list], prompt: str) -> Optional[tuple[str, ...]]:
    if given is None:
        return None
    distractors: list[str] = []
    for number, item in enumerate(given):
        item = text(where, f"distractors[{number}]", item)
        if item == prompt:
            fail(where, f"distractors[{number}] is the case's own prompt {prompt!r}")
        if item not in distractors:
            distractors.append(item)
    return tuple(distractors)


def check_suite_gates(where: str, suite_gates: dict[str, float], protocol: Optional[ProtocolSpec]) -> None:
    """A suite-level gate must be one the suite can compute, or it would never be checked."""
    kind = protocol.kind if protocol else None
    for name in suite_gates:
        if name == "min_auc" and kind != "orida":
            fail(where, "min_auc gates the identity AUC of an ORIDa protocol: add "
                        "[protocol] kind = \"orida\" or remove it")
        if name.startswith("min_alpha_") and kind == "orida":
            fail(where, f"{name} gates agreement with human ratings, which an ORIDa protocol has "
                        "none of (use min_auc)")
