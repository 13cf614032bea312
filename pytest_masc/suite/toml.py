"""Reading a suite file: ``load_suite`` parses the TOML (cases from ``[[cases]]`` tables or a
CSV) into a validated :class:`~pytest_masc.suite.model.Suite`; the format is in
:mod:`pytest_masc.suite.schema`."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..protocols.spec import AUTO_MASKS, PATH_KEYS, PROTOCOL_KEYS, ProtocolError, ProtocolSpec
from .cases import CaseDraft, check_suite_gates, finish_cases
from .checks import check_keys, decode_text, fail, gate, ratings, seed_count, text, type_name
from .csv import read_csv_cases
from .files import SuiteFile
from .model import Concept, Suite
from .schema import CASE_KEYS, CONCEPT_KEYS, GATE_KEYS, HUMAN_KEYS, SUITE_GATE_KEYS, SUITE_KEYS, TOP_KEYS
from .seeds import toml_images

__all__ = ["load_suite"]

#: keys of a case that :func:`~pytest_masc.suite.seeds.toml_images` reads
_IMAGE_KEYS = ("image", "images", "mask", "masks", "seeds")
_CASES_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*cases[ \t]*\]\]", re.MULTILINE)


def load_suite(path: str | os.PathLike, *, check_files: bool = True) -> Suite:
    """Parse and validate a suite file; raise :class:`~pytest_masc.errors.SuiteError` naming
    what is wrong.

    Args:
        path: the ``masc_*.toml`` file.
        check_files: also require every referenced image, mask and protocol directory to
            exist (paths are always checked to stay inside the suite's directory).
    """
    suite_file = SuiteFile(Path(path), check_files)
    source = _read_text(suite_file)
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        fail(suite_file.name, f"invalid TOML: {error}")
    check_keys(suite_file.name, data, TOP_KEYS, "top-level key", place="top")

    where = f"{suite_file.name}, [suite]"
    suite_table = _table(suite_file.name, "[suite]", data.get("suite", {}))
    check_keys(where, suite_table, SUITE_KEYS, place="suite", header="[suite]")
    name = text(where, "name", suite_table["name"]) if "name" in suite_table else suite_file.default_suite_name()
    gates = {k: gate(where, k, suite_table[k]) for k in GATE_KEYS if k in suite_table}
    suite_gates = {k: gate(where, k, suite_table[k]) for k in SUITE_GATE_KEYS if k in suite_table}
    seeds = seed_count(where, suite_table["seeds"]) if "seeds" in suite_table else None
    concepts = {
        concept_name: _concept(suite_file, concept_name, entry)
        for concept_name, entry in _table(suite_file.name, "[concepts]", data.get("concepts", {})).items()
    }
    protocol = _protocol(suite_file, data["protocol"]) if "protocol" in data else None
    drafts = _case_drafts(suite_file, data.get("cases"), source, seeds)
    if not drafts and protocol is None:
        fail(suite_file.name, "the suite has no cases: add [[cases]] tables, cases = \"cases.csv\", or a [protocol] table")
    check_suite_gates(where, suite_gates, protocol)
    return Suite(
        path=suite_file.path,
        name=name,
        concepts=concepts,
        cases=finish_cases(drafts, gates, concepts, suite_file),
        gates=gates,
        suite_gates=suite_gates,
        protocol=protocol,
    )


def _read_text(suite_file: SuiteFile) -> str:
    try:
        raw = suite_file.path.read_bytes()
    except FileNotFoundError:
        fail(suite_file.name, "suite file not found")
    except IsADirectoryError:
        fail(suite_file.name, "suite path is a directory, not a file")
    except OSError as error:
        fail(suite_file.name, f"cannot read the suite file ({error})")
    return decode_text(suite_file.name, raw)  # a BOM is fine: editors on Windows write one


def _table(where: str, what: str, value: Any) -> dict:
    if not isinstance(value, dict):
        fail(where, f"{what} must be a table, got {type_name(value)} {value!r}")
    return value


def _concept(suite_file: SuiteFile, name: str, entry: Any) -> Concept:
    where = f"{suite_file.name}, concept {name!r}"
    if not name.strip():
        fail(f"{suite_file.name}, [concepts]", "a concept name must not be empty")
    entry = _table(where, f"[concepts.{name}]", entry)
    check_keys(where, entry, CONCEPT_KEYS, place="concept", header=f"[concepts.{name}]")
    if "reference" not in entry:
        fail(where, "missing required key 'reference'")
    subject = text(where, "subject", entry["subject"]) if "subject" in entry else None
    segment_prompt = text(where, "segment_prompt", entry["segment_prompt"]) if "segment_prompt" in entry else None
    references = _path_list(suite_file, where, "reference", entry["reference"])
    if "reference_mask" not in entry:  # segmented with the concept's subject (--masc-segmenter)
        if (segment_prompt or subject) is None:
            fail(where, "missing reference_mask: give it, or a subject (or segment_prompt) to segment "
                        "the references with --masc-segmenter")
        return Concept(name=name, subject=subject, references=references,
                       reference_masks=(None,) * len(references), segment_prompt=segment_prompt)
    masks = _path_list(suite_file, where, "reference_mask", entry["reference_mask"])
    if len(references) != len(masks):
        fail(where, f"reference has {len(references)} path(s) but reference_mask has {len(masks)}; "
                    "give one mask per reference")
    return Concept(name=name, subject=subject, references=references, reference_masks=masks,
                   segment_prompt=segment_prompt)


def _path_list(suite_file: SuiteFile, where: str, name: str, value: Any) -> tuple[Path, ...]:
    if isinstance(value, list):
        if not value:
            fail(where, f"{name} must not be an empty list")
        return tuple(suite_file.file(where, f"{name}[{i}]", item) for i, item in enumerate(value))
    return (suite_file.file(where, name, value),)


def _protocol(suite_file: SuiteFile, value: Any) -> ProtocolSpec:
    """The ``[protocol]`` table: its strings and directories checked here (paths relative to
    the suite file, anywhere), the rest by :meth:`ProtocolSpec.from_fields`."""
    where = f"{suite_file.name}, [protocol]"
    table = _table(suite_file.name, "[protocol]", value)
    check_keys(where, table, PROTOCOL_KEYS, place="protocol", header="[protocol]")
    fields = dict(table)
    for key in ("kind", "split"):
        if key in fields:
            fields[key] = text(where, key, fields[key])
    for key in PATH_KEYS:
        if key == "masks" and fields.get(key) == AUTO_MASKS:
            continue
        if key in fields:
            path = suite_file.resolve(where, key, fields[key], confined=False)
            if suite_file.check_files and not path.is_dir():
                fail(where, f"{key} directory {table[key].strip()!r} not found (looked for {path})")
            fields[key] = str(path)
    try:
        return ProtocolSpec.from_fields(fields, where)
    except ProtocolError as error:
        fail(where, str(error).removeprefix(f"{where}: "))


def _case_drafts(suite_file: SuiteFile, raw_cases: Any, source: str, seeds: Optional[int]) -> list[CaseDraft]:
    if isinstance(raw_cases, str):
        if seeds is not None:
            fail(f"{suite_file.name}, [suite]", f"seeds = {seeds} is for [[cases]] tables; a cases CSV gives "
                                                "each image's seed in its seed column")
        return read_csv_cases(suite_file, raw_cases)
    if isinstance(raw_cases, list):
        return _toml_cases(suite_file, raw_cases, source, seeds)
    if raw_cases is None:
        return []
    fail(suite_file.name, f"cases must be an array of [[cases]] tables or the path of a CSV file, got {type_name(raw_cases)}")


def _toml_cases(suite_file: SuiteFile, entries: list, source: str, seeds: Optional[int]) -> list[CaseDraft]:
    header_lines = [source.count("\n", 0, m.start()) + 1 for m in _CASES_HEADER.finditer(source)]
    lines: list[Optional[int]] = header_lines if len(header_lines) == len(entries) else [None] * len(entries)
    return [_toml_case(suite_file, index, entry, line, seeds)
            for index, (entry, line) in enumerate(zip(entries, lines), start=1)]


def _toml_case(suite_file: SuiteFile, index: int, entry: Any, line: Optional[int], seeds: Optional[int]) -> CaseDraft:
    at_line = f" (line {line})" if line else ""
    where = f"{suite_file.name}, case #{index}{at_line}"
    entry = _table(where, "a case", entry)
    if isinstance(entry.get("id"), str) and entry["id"].strip():
        where = f"{suite_file.name}, case {entry['id'].strip()!r}{at_line}"
    for key in entry:
        if key in SUITE_GATE_KEYS:
            fail(where, f"{key} is a suite-level gate; set it in [suite], not in a case")
    check_keys(where, entry, CASE_KEYS, place="case", header="[[cases]]")
    human = _table(where, "human", entry.get("human", {}))
    check_keys(f"{where}, human", human, HUMAN_KEYS)
    distractors = entry.get("distractors")
    if distractors is not None and not isinstance(distractors, list):
        fail(where, f"distractors must be an array of prompts, got {type_name(distractors)} {distractors!r}")
    return CaseDraft(
        where=where,
        fields={k: v for k, v in entry.items() if k not in ("human", "distractors", *_IMAGE_KEYS)},
        images=toml_images(where, entry, seeds),
        human={k: r for k, v in human.items() if (r := ratings(where, f"human.{k}", v))},
        distractors=distractors,
        missing="missing required key {key!r}",
        location=lambda case_id: f"{suite_file.name}, case {case_id!r}{at_line}",
    )
