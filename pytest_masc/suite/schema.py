"""Data-driven gate suites: the format of ``masc_*.toml`` files (and their cases CSV), the
parsed records, and the checks TOML and CSV cases share.

A suite file names the concepts (reference images + masks), the cases (a prompt, the
generated image + mask, the concept it shows) and the gates each case must pass. This
docstring is the reference for the format; :mod:`.toml` reads the file, :mod:`.csv` a cases
CSV. Pure Python + stdlib; no image is opened here (image and mask sizes are checked by
the scorer).

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
is an error that suggests the closest known key, or says where the key belongs when it is
valid at another level (in TOML every key below a ``[table]`` header belongs to that table, so
``cases = "cases.csv"`` written under ``[suite]`` is a ``[suite]`` key: the error says to write
it above the first header). The file is UTF-8, with or without a BOM, or UTF-16 with a BOM.

``[suite]``
    ``name`` (non-empty string); the case gates below (defaults for every case); and the
    suite-level gates ``min_alpha_concept``, ``min_alpha_prompt`` (Krippendorff's alpha of the
    scores against the human ratings, in ``[-1, 1]``) and ``min_auc`` (in ``[0, 1]``).

``[concepts.<name>]``
    ``reference`` is required and ``reference_mask`` usually given: each a path or a
    non-empty list of paths, with as many masks as references (a single string counts as a
    list of one). ``subject`` is optional; when absent it is ``None`` and nothing is stripped
    from prompts. ``segment_prompt`` (optional) is what a segmenter looks for instead of the
    subject. Without ``reference_mask`` the references are segmented (``--masc-segmenter``)
    with ``segment_prompt``, else ``subject``; one of the two is then required.

``[[cases]]``
    ``concept``, ``prompt`` and ``image`` are required; ``mask`` may be left out when the
    concept has a ``subject`` or ``segment_prompt``: the image is then segmented with it
    (the plugin needs ``--masc-segmenter`` for that). ``concept`` must name a
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
    self-contained; a path that leaves it (``../refs/dog.png``) is an error: copy the file
    under the suite's directory, or move the suite file up. With ``check_files=True`` (the
    default) each must be an existing file; the pytest plugin loads with ``check_files=False``
    and fails a case whose files are missing when it runs (:func:`missing_files`), so the
    other cases still run.
    ``[protocol]`` paths (``root``, ``masks``) name external datasets: they are resolved the
    same way but may lie anywhere; with ``check_files=True`` they must be existing
    directories.

Cases in a CSV file
===================

Instead of ``[[cases]]`` tables a suite may say, at the top level, ``cases = "cases.csv"``
(a string). The CSV is UTF-8 (a BOM is fine) or UTF-16 with a BOM (Excel's "Unicode Text"),
separated by commas, semicolons or tabs with ``"`` quoting (the separator that splits the
header into the most known column names; spreadsheets in many locales save semicolon-
separated "CSV"), and its first row names the columns: ``id``, ``concept``, ``prompt``,
``image``, ``mask``, the case gates (``min_concept`` …), ``distractors`` (``|``-separated
prompts), ``human_concept`` and ``human_prompt`` (``|``-separated numbers). In a semicolon-
or tab-separated file, numbers may have a decimal comma (``0,6``), as those locales write
them. ``concept``, ``prompt`` and ``image`` columns are required; the others optional (an
empty or absent ``mask`` is segmented, as above). An empty cell means "not given" (so a CSV
row cannot ask for zero distractors); blank rows are skipped; a column whose header cell and
every other cell are empty is ignored (Excel writes such columns), but a value under an empty
header cell, or beyond the header's last column, is an error; a shorter row has empty
trailing cells. Paths in the CSV are relative to the suite file, like everywhere else. The
concepts stay in the TOML file.

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

import codecs
import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

from ..errors import SuiteError
from ..gates import GATE_RANGES, GATES, HUMAN_SCALE, SUITE_GATES, is_number, valid_gate, valid_rating
from ..protocols.spec import PROTOCOL_KEYS, ProtocolSpec

__all__ = [
    "CSV_COLUMNS",
    "Case",
    "CaseDraft",
    "Concept",
    "GATE_KEYS",
    "SUITE_GATE_KEYS",
    "Suite",
    "SuiteFile",
    "finish_cases",
    "is_suite_file",
    "missing_files",
]

#: Gates of one case: ``[suite]`` defaults, overridable per case. Each in ``[-1, 1]``.
GATE_KEYS = tuple(GATES)
#: Gates of the whole suite, ``[suite]`` only.
SUITE_GATE_KEYS = tuple(SUITE_GATES)
#: Keys of a case, in a ``[[cases]]`` table.
CASE_KEYS = ("id", "concept", "prompt", "image", "mask", *GATE_KEYS, "human", "distractors")
#: Fields every case needs.
CASE_REQUIRED = ("concept", "prompt", "image")
#: Keys of ``human``.
HUMAN_KEYS = ("concept", "prompt")
#: Columns of a cases CSV.
CSV_COLUMNS = ("id", "concept", "prompt", "image", "mask", *GATE_KEYS, "distractors", "human_concept", "human_prompt")
#: Keys of the file's top level, of ``[suite]`` and of a ``[concepts.<name>]`` table.
TOP_KEYS = ("suite", "concepts", "cases", "protocol")
SUITE_KEYS = ("name", *GATE_KEYS, *SUITE_GATE_KEYS)
CONCEPT_KEYS = ("subject", "reference", "reference_mask", "segment_prompt")
#: Where each kind of key is written: place -> (how messages name it, its keys).
PLACES: dict[str, tuple[str, tuple[str, ...]]] = {
    "top": ("the top level", TOP_KEYS),
    "suite": ("[suite]", SUITE_KEYS),
    "concept": ("a [concepts.<name>] table", CONCEPT_KEYS),
    "case": ("a [[cases]] table", CASE_KEYS),
    "protocol": ("[protocol]", PROTOCOL_KEYS),
}


@dataclass(frozen=True)
class Concept:
    """One concept: its reference images and their masks (absolute, resolved paths; ``None``
    for each reference when ``reference_mask`` is left out, to be segmented with
    :attr:`segmentation_text`)."""

    name: str
    subject: Optional[str]
    references: tuple[Path, ...]
    reference_masks: tuple[Optional[Path], ...]
    segment_prompt: Optional[str] = None

    @property
    def segmentation_text(self) -> Optional[str]:
        """What a segmenter looks for in this concept's images: ``segment_prompt``, else ``subject``."""
        return self.segment_prompt or self.subject


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
    mask: Optional[Path]  # None: computed by the session's segmenter
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
    protocol: Optional[ProtocolSpec] = None

    def __hash__(self) -> int:  # the dict fields are not hashable; equal suites share these
        return hash((self.path, self.name, self.cases))

    def concept_cases(self, concept: str) -> tuple[Case, ...]:
        """The cases of one concept, in file order; ``KeyError`` for an unknown concept."""
        if concept not in self.concepts:
            raise KeyError(f"suite {self.name!r} has no concept {concept!r}{did_you_mean(concept, self.concepts)}")
        return tuple(case for case in self.cases if case.concept == concept)


def is_suite_file(path: str | os.PathLike) -> bool:
    """Whether a file name matches ``masc_*.toml`` (case-sensitive, non-empty ``*``)."""
    name = Path(path).name
    return name.startswith("masc_") and name.endswith(".toml") and len(name) > len("masc_.toml")


# --------------------------------------------------------------------------- checks


def fail(where: str, message: str) -> NoReturn:
    raise SuiteError(f"{where}: {message}")


def did_you_mean(word: str, options: Sequence[str] | dict) -> str:
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if options:
        return f" (expected one of: {', '.join(repr(o) for o in options)})"
    return ""


def display(path: Path) -> str:
    """A path for messages: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def type_name(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def check_keys(
    where: str, table: dict, allowed: Sequence[str], what: str = "key", place: Optional[str] = None,
    header: str = "",
) -> None:
    """Every key of ``table`` is in ``allowed``; else an error with a close match and, when
    ``place`` (a key of :data:`PLACES`) is given and the key is valid elsewhere, where it belongs
    (``header``: the table's TOML header, for keys that belong at the top level)."""
    for key in table:
        if key in allowed:
            continue
        belongs = belongs_elsewhere(key, place, header) if place else ""
        if not belongs:
            fail(where, f"unknown {what} {key!r}{did_you_mean(key, allowed)}")
        close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.8)  # only a near-miss
        maybe = f" (did you mean {close[0]!r}?)" if close else ""
        fail(where, f"unknown {what} {key!r}{maybe}: {belongs}")


def belongs_elsewhere(key: str, place: str, header: str = "") -> str:
    """Where ``key``, unknown in ``place``, is valid (empty: nowhere)."""
    others = [label for name, (label, keys) in PLACES.items() if name != place and key in keys]
    if not others:
        return ""
    if others == [PLACES["top"][0]]:
        below = f"every key below the {header} header belongs to that table" if header else \
            "every key below a [table] header belongs to that table"
        return f"{key!r} is a top-level key; write it above the first [table] header (in TOML {below})"
    return f"{key!r} is a key of {' or of '.join(others)}"


def decode_text(where: str, raw: bytes, hint: str = "") -> str:
    """A suite file's or CSV's bytes as text: UTF-8, with or without a BOM, or UTF-16 with its
    BOM (Excel's "Unicode Text", Notepad's "Unicode"); ``hint`` follows a decoding error."""
    encoding = "utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        fail(where, f"not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text ({error}){hint}")


def text(where: str, name: str, value: Any) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str):
        fail(where, f"{name} must be a string, got {type_name(value)} {value!r}")
    value = value.strip()
    if not value:
        fail(where, f"{name} must not be empty")
    return value


def gate(where: str, name: str, value: Any) -> float:
    """A gate threshold (:func:`pytest_masc.gates.valid_gate`), as a float."""
    if not is_number(value):
        fail(where, f"{name} must be a number, got {type_name(value)} {value!r}")
    if not valid_gate(name, value):
        low, high = GATE_RANGES[name]
        fail(where, f"{name} = {float(value)!r} is outside [{low:g}, {high:g}]")
    return float(value)


def ratings(where: str, name: str, value: Any) -> tuple[float, ...]:
    """Human ratings (:func:`pytest_masc.gates.valid_rating`): a number or a list of them."""
    low, high = HUMAN_SCALE
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not is_number(item):
            fail(where, f"{name} must be numbers (ratings {low:g}..{high:g}), got {type_name(item)} {item!r}")
        if not valid_rating(item):
            fail(where, f"{name} rating {float(item):g} is outside {low:g}..{high:g}")
    return tuple(float(item) for item in values)


# --------------------------------------------------------------------------- the file


class SuiteFile:
    """One suite file being loaded: its names for messages and its path rules."""

    def __init__(self, path: Path, check_files: bool) -> None:
        self.path = Path(os.path.abspath(path))
        self.directory = self.path.parent
        self.root = self.directory.resolve()
        self.check_files = check_files
        self.name = display(self.path)

    def default_suite_name(self) -> str:
        stem = self.path.stem
        return stem[len("masc_"):] if stem.startswith("masc_") and len(stem) > len("masc_") else stem

    def resolve(self, where: str, name: str, value: Any, *, confined: bool = True) -> Path:
        """``value`` relative to the suite's directory, resolved; ``confined``: it must stay inside."""
        given = text(where, name, value)
        candidate = Path(given)
        if not candidate.is_absolute():
            candidate = self.directory / candidate
        resolved = candidate.resolve()
        if confined and not resolved.is_relative_to(self.root):
            fail(where, f"{name} {given!r} escapes the suite's directory {self.root} (resolves to {resolved}); "
                        "suite paths must stay inside the suite file's directory: copy or move the file under "
                        f"{self.root}, or move the suite file up to a directory that contains both")
        return resolved

    def file(self, where: str, name: str, value: Any) -> Path:
        """:meth:`resolve`, and with ``check_files`` an existing file."""
        path = self.resolve(where, name, value)
        if self.check_files and not path.is_file():
            problem = "is a directory, not a file" if path.is_dir() else "not found"
            fail(where, f"{name} file {value.strip()!r} {problem} (looked for {path})")
        return path


def missing_files(suite: Suite, case: Case) -> list[str]:
    """Why a case of a suite loaded with ``check_files=False`` cannot be scored: one message
    per reference, reference mask, image or mask that is not an existing file (empty: none).
    A mask left out (``None``: the segmenter computes it) is not a file to look for."""
    root = suite.path.parent.resolve()
    concept = suite.concepts[case.concept]
    named = [(f"concept {concept.name!r} reference", path) for path in concept.references]
    named += [(f"concept {concept.name!r} reference_mask", path) for path in concept.reference_masks]
    named += [("image", case.image), ("mask", case.mask)]
    problems = []
    for name, path in named:
        if path is not None and not path.is_file():
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            problem = "is a directory, not a file" if path.is_dir() else "not found"
            problems.append(f"{name} file '{shown}' {problem} (looked for {path})")
    return problems


# --------------------------------------------------------------------------- cases


@dataclass
class CaseDraft:
    """A case as read from TOML or CSV, before the checks both forms share."""

    where: str                           # where the case is, before its id is known
    fields: dict[str, Any]               # id, concept, prompt, image, mask and gates as given
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
    for key in CASE_REQUIRED:
        if key not in fields:
            fail(where, draft.missing.format(key=key))
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
    image = suite_file.file(where, "image", fields["image"])
    mask = suite_file.file(where, "mask", fields["mask"]) if "mask" in fields else None
    if mask is None and concepts[concept].segmentation_text is None:
        fail(where, f"no mask, and concept {concept!r} has neither subject nor segment_prompt to segment "
                    "the image with: give mask = ..., or a subject")
    own_gates = {k: gate(where, k, fields[k]) for k in GATE_KEYS if k in fields}
    merged = {**suite_gates, **own_gates}
    return Case(
        id=case_id,
        concept=concept,
        prompt=prompt,
        image=image,
        mask=mask,
        gates={k: merged[k] for k in GATE_KEYS if k in merged},
        distractors=_distractors(where, draft.distractors, prompt),
        human=dict(draft.human),
        location=location,
    )


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
