"""Data-driven gate suites: parse and validate ``masc_*.toml`` files (and their cases CSV).

A suite file names the concepts (reference images + masks), the cases (a prompt, the
generated image + mask, the concept it shows) and the gates each case must pass. This
docstring is the reference for the format. Pure Python + stdlib; no image is opened here
(image and mask sizes are checked by the scorer).

File layout
===========

Any file named ``masc_<something>.toml`` is a suite (see :func:`is_suite_file`). Every path
in it is relative to the directory of the suite file, including the paths in a cases CSV::

    [suite]
    name = "dog-release"          # optional; default: the file stem without "masc_"
    min_concept = 0.5             # default gates for every case (optional)
    min_prompt_margin = 0.0
    min_auc = 0.7                 # suite-level gates (optional, [suite] only)

    [concepts.dog]
    subject = "dog"                          # optional; stripped from prompts for PF
    reference = "refs/dog.png"               # a path or a list of paths
    reference_mask = "refs/dog_mask.png"     # a path or a list, one per reference

    [[cases]]
    id = "dog-beach"                         # optional; default "<concept>-<n>"
    concept = "dog"
    prompt = "a dog on the beach"
    image = "out/dog_beach.png"
    mask = "out/dog_beach_mask.png"
    min_concept = 0.6                        # per-case gate override (optional)
    human = { concept = [3, 4], prompt = [4, 3] }   # optional ratings 0..4, one per rater group
    distractors = ["a dog in the snow"]       # optional; see below

    [protocol]                               # optional: cases come from a benchmark dataset
    kind = "dreambench_plus"                 # or "orida"
    root = "data/dreambench_plus"
    masks = "data/dreambench_plus_masks"     # required for dreambench_plus
    split = "test"                           # ORIDa: split (default "test"), n_subjects (50),
    min_backgrounds = 10                     #   min_backgrounds (10): the paper's protocol

Top-level keys: ``suite``, ``concepts``, ``cases``, ``protocol``; any other key, at any level,
is an error that suggests the closest known key.

``[suite]``
    ``name`` (non-empty string); the case gates below (defaults for every case); and the
    suite-level gates ``min_alpha_concept``, ``min_alpha_prompt`` (Krippendorff's alpha of the
    scores against the human ratings, in ``[-1, 1]``) and ``min_auc`` (in ``[0, 1]``).

``[concepts.<name>]``
    ``reference`` and ``reference_mask`` are required: each a path or a non-empty list of
    paths, with as many masks as references (a single string counts as a list of one).
    ``subject`` is optional; when absent it is ``None`` and nothing is stripped from prompts.

``[[cases]]``
    ``concept``, ``prompt``, ``image`` and ``mask`` are required. ``concept`` must name a
    concept of the same file. ``id`` defaults to ``"<concept>-<n>"``, ``n`` being the 1-based
    position of the case among the cases of its concept; ids must be unique in the suite
    (explicit and default ids alike). Strings are stripped of surrounding whitespace.

Gates
    Case gates (``[suite]`` defaults, per-case overrides): ``min_concept``, ``min_prompt``,
    ``min_prompt_margin``, ``min_global_concept``, ``min_global_prompt``. Each is a number
    (integer or float, not a boolean) in ``[-1, 1]``. A case's effective gates are the
    suite's defaults updated with its own; a gate given nowhere is not checked.
    ``min_alpha_*`` and ``min_auc`` are suite-level only: writing one in a case is an error.

``human``
    Optional table with the keys ``concept`` and/or ``prompt``, each a list of numbers in
    ``[0, 4]`` (one per rater group; a single number is a list of one; an empty list means
    "no rating"). The two lists may have different lengths.

``distractors``
    Other prompts scored on the same background, for the prompt margin. When not given, a
    case's distractors are the other distinct prompts of the cases of the same concept, in
    file order, without the case's own prompt (so a concept with a single case has none,
    and its ``prompt_margin`` is NaN). ``distractors = []`` asks for none. An explicit list
    must not contain the case's own prompt; repeated entries are kept once.

Paths
    Relative paths are joined to the suite file's directory; absolute paths are allowed.
    After resolving ``..`` and symlinks, every reference, mask, image and the cases CSV must
    lie inside the suite file's directory (its real location), so a suite stays
    self-contained. With ``check_files=True`` (the default) each must be an existing file.
    ``[protocol]`` paths (``root``, ``masks``) name external datasets: they are resolved the
    same way but may lie anywhere; with ``check_files=True`` they must be existing
    directories.

Cases in a CSV file
===================

Instead of ``[[cases]]`` tables a suite may say, at the top level, ``cases = "cases.csv"``
(a string). The CSV is UTF-8 (a BOM is fine), comma-separated with ``"`` quoting, and its
first row names the columns: ``id``, ``concept``, ``prompt``, ``image``, ``mask``, the case
gates (``min_concept`` …), ``distractors`` (``|``-separated prompts), ``human_concept`` and
``human_prompt`` (``|``-separated numbers). ``concept``, ``prompt``, ``image`` and ``mask``
columns are required; the others optional. An empty cell means "not given" (so a CSV row
cannot ask for zero distractors); blank rows are skipped; a row with more cells than the
header is an error, a shorter row has empty trailing cells. Paths in the CSV are relative
to the suite file, like everywhere else. The concepts stay in the TOML file.

A suite needs at least one case, unless it has a ``[protocol]`` table (whose dataset
supplies the cases).

Errors
======

Every problem raises :class:`pytest_masc.errors.SuiteError`. The message starts with where
the problem is: the file (relative to the working directory when under it), then the case
(``case 'dog-beach'``, ``case #3`` before its id is known, or ``line 7`` of a CSV), concept
or table, and names the key or column at fault; unknown keys, columns and concept names
come with a "did you mean" suggestion. TOML syntax errors keep tomllib's line and column.
"""
from __future__ import annotations

import csv
import difflib
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ..errors import SuiteError
from ..gates import GATES

__all__ = [
    "CSV_COLUMNS",
    "Case",
    "Concept",
    "GATE_KEYS",
    "PROTOCOL_KINDS",
    "SUITE_GATE_KEYS",
    "Suite",
    "is_suite_file",
    "load_suite",
]

#: Gates of one case: ``[suite]`` defaults, overridable per case. Each in ``[-1, 1]``.
GATE_KEYS = tuple(GATES)
#: Gates of the whole suite, ``[suite]`` only.
SUITE_GATE_KEYS = ("min_alpha_concept", "min_alpha_prompt", "min_auc")
#: Values of ``[protocol] kind``.
PROTOCOL_KINDS = ("dreambench_plus", "orida")
#: Rating scale of ``human`` values.
HUMAN_SCALE = (0.0, 4.0)

_TOP_KEYS = ("suite", "concepts", "cases", "protocol")
_SUITE_KEYS = ("name", *GATE_KEYS, *SUITE_GATE_KEYS)
_CONCEPT_KEYS = ("subject", "reference", "reference_mask")
_CASE_KEYS = ("id", "concept", "prompt", "image", "mask", *GATE_KEYS, "human", "distractors")
_CASE_REQUIRED = ("concept", "prompt", "image", "mask")
_HUMAN_KEYS = ("concept", "prompt")
_PROTOCOL_KEYS = ("kind", "root", "masks", "split", "n_subjects", "min_backgrounds")
#: Columns of a cases CSV.
CSV_COLUMNS = ("id", "concept", "prompt", "image", "mask", *GATE_KEYS, "distractors", "human_concept", "human_prompt")
_GATE_RANGES = {key: (-1.0, 1.0) for key in (*GATE_KEYS, "min_alpha_concept", "min_alpha_prompt")}
_GATE_RANGES["min_auc"] = (0.0, 1.0)
_CASES_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*cases[ \t]*\]\]", re.MULTILINE)


@dataclass(frozen=True)
class Concept:
    """One concept: its reference images and their masks (absolute, resolved paths)."""

    name: str
    subject: Optional[str]
    references: tuple[Path, ...]
    reference_masks: tuple[Path, ...]


@dataclass(frozen=True)
class Case:
    """One gated generation: prompt, generated image + mask, effective gates, ratings.

    ``gates`` holds only keys of :data:`GATE_KEYS`; ``human`` maps ``"concept"`` and/or
    ``"prompt"`` to ratings; ``location`` says where the case was written, for messages.
    Cases hash (by id, location, prompt and paths) although their dict fields do not.
    """

    id: str
    concept: str
    prompt: str
    image: Path
    mask: Path
    gates: dict[str, float]
    distractors: tuple[str, ...]
    human: dict[str, tuple[float, ...]]
    location: str

    def __hash__(self) -> int:  # the dict fields are not hashable; equal cases share these
        return hash((self.id, self.location, self.prompt, self.image, self.mask))


@dataclass(frozen=True)
class Suite:
    """A parsed, validated suite file."""

    path: Path
    name: str
    concepts: dict[str, Concept]
    cases: tuple[Case, ...]
    gates: dict[str, float] = field(default_factory=dict)
    suite_gates: dict[str, float] = field(default_factory=dict)
    protocol: Optional[dict[str, str]] = None

    def __hash__(self) -> int:  # the dict fields are not hashable; equal suites share these
        return hash((self.path, self.name, self.cases))

    def concept_cases(self, concept: str) -> tuple[Case, ...]:
        """The cases of one concept, in file order; ``KeyError`` for an unknown concept."""
        if concept not in self.concepts:
            raise KeyError(f"suite {self.name!r} has no concept {concept!r}{_did_you_mean(concept, self.concepts)}")
        return tuple(case for case in self.cases if case.concept == concept)


def is_suite_file(path: str | os.PathLike) -> bool:
    """Whether a file name matches ``masc_*.toml`` (case-sensitive, non-empty ``*``)."""
    name = Path(path).name
    return name.startswith("masc_") and name.endswith(".toml") and len(name) > len("masc_.toml")


def load_suite(path: str | os.PathLike, *, check_files: bool = True) -> Suite:
    """Parse and validate a suite file; raise :class:`SuiteError` naming what is wrong.

    Args:
        path: the ``masc_*.toml`` file.
        check_files: also require every referenced image, mask and protocol directory to
            exist (paths are always checked to stay inside the suite's directory).
    """
    return _Parser(Path(path), check_files).parse()


# --------------------------------------------------------------------------- helpers


def _fail(where: str, message: str) -> NoReturn:
    raise SuiteError(f"{where}: {message}")


def _did_you_mean(word: str, options: Sequence[str] | dict) -> str:
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if options:
        return f" (expected one of: {', '.join(repr(o) for o in options)})"
    return ""


def _display(path: Path) -> str:
    """A path for messages: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _type_name(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_keys(where: str, table: dict, allowed: Sequence[str], what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            _fail(where, f"unknown {what} {key!r}{_did_you_mean(key, allowed)}")


def _text(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        _fail(where, f"{name} must be a string, got {_type_name(value)} {value!r}")
    value = value.strip()
    if not value:
        _fail(where, f"{name} must not be empty")
    return value


def _gate(where: str, name: str, value: Any) -> float:
    if not _is_number(value):
        _fail(where, f"{name} must be a number, got {_type_name(value)} {value!r}")
    low, high = _GATE_RANGES[name]
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        _fail(where, f"{name} = {value!r} is outside [{low:g}, {high:g}]")
    return value


def _ratings(where: str, name: str, value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    ratings = []
    for item in values:
        if not _is_number(item):
            _fail(where, f"{name} must be numbers (ratings {HUMAN_SCALE[0]:g}..{HUMAN_SCALE[1]:g}), "
                         f"got {_type_name(item)} {item!r}")
        item = float(item)
        if not (math.isfinite(item) and HUMAN_SCALE[0] <= item <= HUMAN_SCALE[1]):
            _fail(where, f"{name} rating {item:g} is outside {HUMAN_SCALE[0]:g}..{HUMAN_SCALE[1]:g}")
        ratings.append(item)
    return tuple(ratings)


def _split_cell(where: str, name: str, cell: str) -> list[str]:
    items = [item.strip() for item in cell.split("|")]
    if any(not item for item in items):
        _fail(where, f"{name} has an empty item in its '|'-separated list {cell!r}")
    return items


# --------------------------------------------------------------------------- parser


@dataclass
class _Draft:
    """A case as read from TOML or CSV, before the checks both forms share."""

    where: str                           # where the case is, before its id is known
    fields: dict[str, Any]               # id, concept, prompt, image, mask and gates as given
    human: dict[str, tuple[float, ...]]  # validated ratings
    distractors: Optional[list]          # None: not given
    missing: str                         # message for a missing required field ({key})
    location: Callable[[str], str]       # case id -> Case.location


class _Parser:
    """One load of one suite file (holds the file's names for messages)."""

    def __init__(self, path: Path, check_files: bool) -> None:
        self.path = Path(os.path.abspath(path))
        self.directory = self.path.parent
        self.root = self.directory.resolve()
        self.check_files = check_files
        self.name = _display(self.path)
        self.concepts: dict[str, Concept] = {}
        self.concept_counts: dict[str, int] = {}

    # -- whole file ---------------------------------------------------------------

    def parse(self) -> Suite:
        text = self._read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            _fail(self.name, f"invalid TOML: {error}")
        _check_keys(self.name, data, _TOP_KEYS, "top-level key")

        suite_table = self._table(self.name, "[suite]", data.get("suite", {}))
        where = f"{self.name}, [suite]"
        _check_keys(where, suite_table, _SUITE_KEYS)
        name = _text(where, "name", suite_table["name"]) if "name" in suite_table else self._default_name()
        gates = {k: _gate(where, k, suite_table[k]) for k in GATE_KEYS if k in suite_table}
        suite_gates = {k: _gate(where, k, suite_table[k]) for k in SUITE_GATE_KEYS if k in suite_table}

        concepts_table = self._table(self.name, "[concepts]", data.get("concepts", {}))
        for concept_name, entry in concepts_table.items():
            self.concepts[concept_name] = self._concept(concept_name, entry)

        protocol = self._protocol(data["protocol"]) if "protocol" in data else None

        raw_cases = data.get("cases")
        if isinstance(raw_cases, str):
            drafts = self._csv_cases(raw_cases)
        elif isinstance(raw_cases, list):
            drafts = self._toml_cases(raw_cases, text)
        elif raw_cases is None:
            drafts = []
        else:
            _fail(self.name, "cases must be an array of [[cases]] tables or the path of a CSV file, "
                             f"got {_type_name(raw_cases)}")
        if not drafts and protocol is None:
            _fail(self.name, "the suite has no cases: add [[cases]] tables, cases = \"cases.csv\", "
                             "or a [protocol] table")

        self._check_suite_gates(suite_gates, protocol)
        cases = self._finish_cases(drafts, gates)
        return Suite(
            path=self.path,
            name=name,
            concepts=dict(self.concepts),
            cases=cases,
            gates=gates,
            suite_gates=suite_gates,
            protocol=protocol,
        )

    def _read_text(self) -> str:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            _fail(self.name, "suite file not found")
        except IsADirectoryError:
            _fail(self.name, "suite path is a directory, not a file")
        except OSError as error:
            _fail(self.name, f"cannot read the suite file ({error})")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            _fail(self.name, f"not UTF-8 text ({error})")

    def _default_name(self) -> str:
        stem = self.path.stem
        return stem[len("masc_"):] if stem.startswith("masc_") and len(stem) > len("masc_") else stem

    @staticmethod
    def _table(where: str, what: str, value: Any) -> dict:
        if not isinstance(value, dict):
            _fail(where, f"{what} must be a table, got {_type_name(value)} {value!r}")
        return value

    # -- paths --------------------------------------------------------------------

    def _resolve(self, where: str, name: str, value: Any, *, confined: bool = True) -> Path:
        text = _text(where, name, value)
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = self.directory / candidate
        resolved = candidate.resolve()
        if confined and not resolved.is_relative_to(self.root):
            _fail(where, f"{name} {text!r} escapes the suite's directory {self.root} (resolves to {resolved})")
        return resolved

    def _file(self, where: str, name: str, value: Any) -> Path:
        path = self._resolve(where, name, value)
        if self.check_files and not path.is_file():
            problem = "is a directory, not a file" if path.is_dir() else "not found"
            _fail(where, f"{name} file {value.strip()!r} {problem} (looked for {path})")
        return path

    # -- tables ---------------------------------------------------------------------

    def _concept(self, name: str, entry: Any) -> Concept:
        where = f"{self.name}, concept {name!r}"
        if not name.strip():
            _fail(f"{self.name}, [concepts]", "a concept name must not be empty")
        entry = self._table(where, f"[concepts.{name}]", entry)
        _check_keys(where, entry, _CONCEPT_KEYS)
        for key in ("reference", "reference_mask"):
            if key not in entry:
                _fail(where, f"missing required key {key!r}")
        subject = _text(where, "subject", entry["subject"]) if "subject" in entry else None
        references = self._path_list(where, "reference", entry["reference"])
        masks = self._path_list(where, "reference_mask", entry["reference_mask"])
        if len(references) != len(masks):
            _fail(where, f"reference has {len(references)} path(s) but reference_mask has {len(masks)}; "
                         "give one mask per reference")
        return Concept(name=name, subject=subject, references=references, reference_masks=masks)

    def _path_list(self, where: str, name: str, value: Any) -> tuple[Path, ...]:
        if isinstance(value, list):
            if not value:
                _fail(where, f"{name} must not be an empty list")
            return tuple(self._file(where, f"{name}[{i}]", item) for i, item in enumerate(value))
        return (self._file(where, name, value),)

    def _protocol(self, value: Any) -> dict[str, str]:
        where = f"{self.name}, [protocol]"
        table = self._table(self.name, "[protocol]", value)
        _check_keys(where, table, _PROTOCOL_KEYS)
        for key in ("kind", "root"):
            if key not in table:
                _fail(where, f"missing required key {key!r}")
        kind = _text(where, "kind", table["kind"])
        if kind not in PROTOCOL_KINDS:
            _fail(where, f"unknown kind {kind!r}{_did_you_mean(kind, PROTOCOL_KINDS)}")
        protocol = {"kind": kind}
        for key in ("root", "masks"):
            if key in table:
                path = self._resolve(where, key, table[key], confined=False)
                if self.check_files and not path.is_dir():
                    _fail(where, f"{key} directory {table[key].strip()!r} not found (looked for {path})")
                protocol[key] = str(path)
        if "split" in table:
            protocol["split"] = _text(where, "split", table["split"])
        for key in ("n_subjects", "min_backgrounds"):
            if key in table:
                if isinstance(table[key], bool) or not isinstance(table[key], int) or table[key] < 1:
                    _fail(where, f"{key} must be a positive integer, got {table[key]!r}")
                protocol[key] = str(table[key])
        if kind == "dreambench_plus" and "masks" not in protocol:
            _fail(where, "kind 'dreambench_plus' needs masks = DIR (a directory of masks mirroring the image paths)")
        return protocol

    # -- cases ----------------------------------------------------------------------

    def _toml_cases(self, entries: list, text: str) -> list[_Draft]:
        header_lines = [text.count("\n", 0, m.start()) + 1 for m in _CASES_HEADER.finditer(text)]
        lines = header_lines if len(header_lines) == len(entries) else [None] * len(entries)
        drafts = []
        for index, (entry, line) in enumerate(zip(entries, lines), start=1):
            at_line = f" (line {line})" if line else ""
            where = f"{self.name}, case #{index}{at_line}"
            entry = self._table(where, "a case", entry)
            if isinstance(entry.get("id"), str) and entry["id"].strip():
                where = f"{self.name}, case {entry['id'].strip()!r}{at_line}"
            for key in entry:
                if key in SUITE_GATE_KEYS:
                    _fail(where, f"{key} is a suite-level gate; set it in [suite], not in a case")
            _check_keys(where, entry, _CASE_KEYS)
            human = self._table(where, "human", entry.get("human", {}))
            _check_keys(f"{where}, human", human, _HUMAN_KEYS)
            distractors = entry.get("distractors")
            if distractors is not None and not isinstance(distractors, list):
                _fail(where, f"distractors must be an array of prompts, got {_type_name(distractors)} {distractors!r}")
            drafts.append(_Draft(
                where=where,
                fields={k: v for k, v in entry.items() if k not in ("human", "distractors")},
                human={k: r for k, v in human.items() if (r := _ratings(where, f"human.{k}", v))},
                distractors=distractors,
                missing="missing required key {key!r}",
                location=lambda case_id, at_line=at_line: f"{self.name}, case {case_id!r}{at_line}",
            ))
        return drafts

    def _csv_cases(self, value: str) -> list[_Draft]:
        path = self._resolve(self.name, "cases", value)
        if not path.is_file():
            _fail(self.name, f"cases CSV {value.strip()!r} not found (looked for {path})")
        csv_name = _display(path)
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                rows = []
                previous_end = 0
                for row in reader:
                    rows.append((previous_end + 1, row))
                    previous_end = reader.line_num
        except UnicodeDecodeError as error:
            _fail(csv_name, f"not UTF-8 text ({error})")
        except csv.Error as error:
            _fail(f"{csv_name}, line {previous_end + 1}", f"malformed CSV ({error})")
        if not rows:
            _fail(csv_name, "the cases CSV is empty (expected a header row naming the columns)")

        header_line, header = rows[0]
        columns = [cell.strip() for cell in header]
        where = f"{csv_name}, line {header_line}"
        for number, column in enumerate(columns, start=1):
            if not column:
                _fail(where, f"header cell {number} is empty; every column needs a name")
            if column not in CSV_COLUMNS:
                _fail(where, f"unknown column {column!r}{_did_you_mean(column, CSV_COLUMNS)}")
            if columns.count(column) > 1:
                _fail(where, f"column {column!r} appears more than once")
        for column in _CASE_REQUIRED:
            if column not in columns:
                _fail(csv_name, f"missing required column {column!r} (columns: {', '.join(columns)})")

        drafts = []
        for line, row in rows[1:]:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{csv_name}, line {line}"
            if len(row) > len(columns):
                _fail(where, f"{len(row)} cells but the header has {len(columns)} columns "
                             "(quote cells that contain commas)")
            cells = {column: cell.strip() for column, cell in zip(columns, row) if cell.strip()}
            fields = {}
            for column in ("id", "concept", "prompt", "image", "mask"):
                if column in cells:
                    fields[column] = cells[column]
            for key in GATE_KEYS:
                if key in cells:
                    try:
                        fields[key] = float(cells[key])
                    except ValueError:
                        _fail(where, f"{key} must be a number, got {cells[key]!r}")
            human = {}
            for key in _HUMAN_KEYS:
                column = f"human_{key}"
                if column in cells:
                    numbers = []
                    for item in _split_cell(where, column, cells[column]):
                        try:
                            numbers.append(float(item))
                        except ValueError:
                            _fail(where, f"{column} must be '|'-separated numbers, got {item!r}")
                    human[key] = _ratings(where, column, numbers)
            distractors = _split_cell(where, "distractors", cells["distractors"]) if "distractors" in cells else None
            drafts.append(_Draft(
                where=where,
                fields=fields,
                human=human,
                distractors=distractors,
                missing="empty cell in required column {key!r}",
                location=lambda case_id, where=where: where,
            ))
        if not drafts:
            _fail(csv_name, "the cases CSV has a header but no case rows")
        return drafts

    def _check_suite_gates(self, suite_gates: dict[str, float], protocol: Optional[dict[str, str]]) -> None:
        """A suite-level gate must be one the suite can compute, or it would never be checked."""
        kind = protocol["kind"] if protocol else None
        where = f"{self.name}, [suite]"
        for gate in suite_gates:
            if gate == "min_auc" and kind != "orida":
                _fail(where, "min_auc gates the identity AUC of an ORIDa protocol: add "
                             "[protocol] kind = \"orida\" or remove it")
            if gate.startswith("min_alpha_") and kind == "orida":
                _fail(where, f"{gate} gates agreement with human ratings, which an ORIDa protocol has "
                             "none of (use min_auc)")

    def _finish_cases(self, drafts: list[_Draft], suite_gates: dict[str, float]) -> tuple[Case, ...]:
        """Validate the fields shared by TOML and CSV cases; default ids and distractors."""
        partial = []
        seen: dict[str, str] = {}
        for draft in drafts:
            where, fields = draft.where, draft.fields
            for key in _CASE_REQUIRED:
                if key not in fields:
                    _fail(where, draft.missing.format(key=key))
            concept = _text(where, "concept", fields["concept"])
            if concept not in self.concepts:
                _fail(where, f"unknown concept {concept!r}{_did_you_mean(concept, self.concepts)}")
            self.concept_counts[concept] = self.concept_counts.get(concept, 0) + 1
            if "id" in fields:
                case_id = _text(where, "id", fields["id"])
            else:
                case_id = f"{concept}-{self.concept_counts[concept]}"
            location = draft.location(case_id)
            if case_id in seen:
                _fail(self.name, f"duplicate case id {case_id!r}: {seen[case_id]} and {location}")
            seen[case_id] = location
            where = location
            prompt = _text(where, "prompt", fields["prompt"])
            image = self._file(where, "image", fields["image"])
            mask = self._file(where, "mask", fields["mask"])
            own_gates = {k: _gate(where, k, fields[k]) for k in GATE_KEYS if k in fields}
            merged = {**suite_gates, **own_gates}
            gates = {k: merged[k] for k in GATE_KEYS if k in merged}
            distractors = None
            if draft.distractors is not None:
                distractors = []
                for number, item in enumerate(draft.distractors):
                    item = _text(where, f"distractors[{number}]", item)
                    if item == prompt:
                        _fail(where, f"distractors[{number}] is the case's own prompt {prompt!r}")
                    if item not in distractors:
                        distractors.append(item)
            partial.append((case_id, concept, prompt, image, mask, gates, distractors, draft.human, location))

        prompts_by_concept: dict[str, list[str]] = {}
        for _, concept, prompt, *_ in partial:
            prompts = prompts_by_concept.setdefault(concept, [])
            if prompt not in prompts:
                prompts.append(prompt)
        cases = []
        for case_id, concept, prompt, image, mask, gates, distractors, human, location in partial:
            if distractors is None:
                distractors = [p for p in prompts_by_concept[concept] if p != prompt]
            cases.append(Case(
                id=case_id,
                concept=concept,
                prompt=prompt,
                image=image,
                mask=mask,
                gates=gates,
                distractors=tuple(distractors),
                human=dict(human),
                location=location,
            ))
        return tuple(cases)
