"""The one JSON codec of a :class:`~pytest_masc.gates.Record`, used by ``--masc-json`` files and by the xdist hand-off from workers to the controller."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable

from ..gates import Record
from .model import ReportError

_RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)}
_RECORD_REQUIRED = ("nodeid", "kind", "suite", "concept", "case_id", "prompt", "image")


def record_to_json(record: Record) -> dict[str, Any]:
    """A record as a JSON-ready object; ``distractor_prompts`` becomes a list of ``{prompt, score}``."""
    data = record.as_dict()
    data["distractor_prompts"] = [{"prompt": p, "score": s} for p, s in record.distractor_prompts.items()]
    return data


def record_from_json(data: Any, where: str) -> Record:
    """The record of :func:`record_to_json` (or of a format 1 file: ``distractor_prompts`` a
    dict); unknown keys are ignored. :class:`ReportError` naming ``where`` when malformed."""
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [key for key in _RECORD_REQUIRED if key not in data]
    if missing:
        raise ReportError(f"{where}: missing {', '.join(missing)}")
    values = {key: value for key, value in data.items() if key in _RECORD_FIELDS}
    distractors = values.get("distractor_prompts") or []
    if isinstance(distractors, dict):  # format 1
        values["distractor_prompts"] = dict(distractors)
    else:
        try:
            values["distractor_prompts"] = {d["prompt"]: d["score"] for d in distractors}
        except (TypeError, KeyError):
            raise ReportError(f"{where}: distractor_prompts must be a list of {{prompt, score}}") from None
    values.setdefault("subject", None)
    return Record(**values)


def records_text(records: Iterable[Record]) -> str:
    """Records as one JSON string (what an xdist worker sends the controller)."""
    return json.dumps([record_to_json(record) for record in records])


def records_from_text(text: str, where: str) -> list[Record]:
    """The records of :func:`records_text`; ``where`` names the sender in errors."""
    return [record_from_json(data, f"{where}: record {index}") for index, data in enumerate(json.loads(text))]
