"""Cases from a CSV file (``cases = "cases.csv"`` in a suite file), the rows of one seeded case
joined; the format is in :mod:`pytest_masc.suite.schema`."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .cases import CaseDraft
from .checks import belongs_elsewhere, decode_text, did_you_mean, display, fail, ratings
from .files import SuiteFile
from .schema import CASE_REQUIRED, CSV_COLUMNS, GATE_KEYS, HUMAN_KEYS
from .seeds import RawImage

#: (line number, cells) of one CSV row
Row = tuple[int, list[str]]

_SAVE_AS_UTF8 = "; save it as UTF-8 (in Excel: Save As > 'CSV UTF-8')"


def read_csv_cases(suite_file: SuiteFile, value: str) -> list[CaseDraft]:
    """The case drafts of the cases CSV ``value`` (relative to the suite file)."""
    path = suite_file.resolve(suite_file.name, "cases", value)
    if not path.is_file():
        fail(suite_file.name, f"cases CSV {value.strip()!r} not found (looked for {path})")
    csv_name = display(path)
    rows, delimiter = _read_rows(path, csv_name)
    rows = _without_empty_columns(rows, csv_name)
    columns = _columns(rows[0], csv_name)
    drafts = []
    for line, row in rows[1:]:
        if any(cell.strip() for cell in row):
            drafts.append(_draft(f"{csv_name}, line {line}", columns, row, decimal_comma=delimiter != ","))
    if not drafts:
        fail(csv_name, "the cases CSV has a header but no case rows")
    return _join_seeds(csv_name, drafts)


def _read_rows(path: Path, csv_name: str) -> tuple[list[Row], str]:
    """Every row with the line it starts on (at least the header), and the delimiter."""
    rows: list[Row] = []
    previous_end = 0
    try:
        raw = path.read_bytes()
    except OSError as error:
        fail(csv_name, f"cannot read the cases CSV ({error})")
    text = decode_text(csv_name, raw, _SAVE_AS_UTF8)
    delimiter = _delimiter(text.partition("\n")[0])
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for row in reader:
            rows.append((previous_end + 1, row))
            previous_end = reader.line_num
    except csv.Error as error:
        fail(f"{csv_name}, line {previous_end + 1}", f"malformed CSV ({error})")
    if not rows:
        fail(csv_name, "the cases CSV is empty (expected a header row naming the columns)")
    return rows, delimiter


def _delimiter(header_line: str) -> str:
    """The cell separator: of ``,``, ``;`` and tab, the one that splits the header into the
    most known column names (``,`` on a tie or when none does). Spreadsheets in many locales
    save semicolon-separated "CSV"; Excel may add empty cells to the header."""
    best, best_known = ",", 0
    for delimiter in (",", ";", "\t"):
        cells = [cell.strip().strip('"').strip() for cell in header_line.split(delimiter)]
        known = sum(cell in CSV_COLUMNS for cell in cells) if len(cells) > 1 else 0
        if known > best_known:
            best, best_known = delimiter, known
    return best


def _without_empty_columns(rows: list[Row], csv_name: str) -> list[Row]:
    """The rows without the columns whose header cell and every other cell are empty (Excel
    saves such columns when cells beyond the table were ever formatted). A column with an
    empty header but a value in some row is an error."""
    (header_line, header), body = rows[0], rows[1:]
    width = max(len(cells) for _, cells in rows)
    empty = [i for i in range(width) if i >= len(header) or not header[i].strip()]
    for index in empty:
        for line, cells in body:
            if index < len(cells) and cells[index].strip():
                where = f"{csv_name}, line {line}"
                if index >= len(header):
                    fail(where, f"{len(cells)} cells but the header has {len(header)} columns "
                                "(quote cells that contain the separator)")
                fail(where, f"{cells[index].strip()!r} is in column {index + 1}, whose header cell (line "
                            f"{header_line}) is empty; name the column or delete its cells")
    drop = set(empty)
    return [(line, [cell for i, cell in enumerate(cells) if i not in drop]) for line, cells in rows]


def _columns(header: Row, csv_name: str) -> list[str]:
    """The header's column names, checked: known, named, unique, the required ones present."""
    line, cells = header
    columns = [cell.strip() for cell in cells]
    where = f"{csv_name}, line {line}"
    for column in columns:
        if column not in CSV_COLUMNS:
            if ";" in column or "\t" in column:
                fail(where, f"unknown column {column!r}: the header must name known columns separated by "
                            f"commas, semicolons or tabs (known: {', '.join(CSV_COLUMNS)})")
            belongs = belongs_elsewhere(column, "case")
            if belongs:
                fail(where, f"unknown column {column!r}: {belongs} in the suite file, not a cases CSV column")
            fail(where, f"unknown column {column!r}{did_you_mean(column, CSV_COLUMNS)}")
        if columns.count(column) > 1:
            fail(where, f"column {column!r} appears more than once")
    for column in CASE_REQUIRED:
        if column not in columns:
            fail(csv_name, f"missing required column {column!r} (columns: {', '.join(columns)})")
    return columns


def _draft(where: str, columns: list[str], row: list[str], decimal_comma: bool) -> CaseDraft:
    """One row as a case draft: empty cells are "not given"; numbers parsed (``0,6`` too
    when ``decimal_comma``)."""
    cells = {column: cell.strip() for column, cell in zip(columns, row) if cell.strip()}
    fields: dict = {column: cells[column] for column in ("id", "concept", "prompt") if column in cells}
    for key in GATE_KEYS:
        if key in cells:
            fields[key] = _number(where, cells[key], f"{key} must be a number, got {{item!r}}", decimal_comma)
    human = {}
    for key in HUMAN_KEYS:
        column = f"human_{key}"
        if column in cells:
            numbers = [_number(where, item, f"{column} must be '|'-separated numbers, got {{item!r}}", decimal_comma)
                       for item in _split_cell(where, column, cells[column])]
            human[key] = ratings(where, column, numbers)
    seed = _seed(where, cells["seed"]) if "seed" in cells else None
    if seed is not None and "id" not in fields:
        fail(where, f"seed {seed} but no id: the rows of one case (one per seed) share its id")
    if seed is not None and "image" not in cells:
        fail(where, "empty cell in required column 'image'")
    at = "" if seed is None else f" ({where.rpartition(', ')[2]}, seed {seed})"  # several rows make the case
    image = [RawImage(f"image{at}", cells["image"], f"mask{at}", cells.get("mask"), seed)] if "image" in cells else []
    return CaseDraft(
        where=where,
        fields=fields,
        images=image,
        human=human,
        distractors=_split_cell(where, "distractors", cells["distractors"]) if "distractors" in cells else None,
        missing="empty cell in required column {key!r}",
        location=lambda case_id: where,
    )


def _seed(where: str, cell: str) -> int:
    """A ``seed`` cell: a non-negative integer."""
    if not cell.isdigit():
        fail(where, f"seed must be a non-negative integer, got {cell!r}")
    return int(cell)


def _join_seeds(csv_name: str, drafts: list[CaseDraft]) -> list[CaseDraft]:
    """The rows that repeat a case id with a seed joined into one draft per case (in the order
    of each case's first row); rows without a seed pass through (their ids are checked later)."""
    joined: list[CaseDraft] = []
    by_id: dict[str, CaseDraft] = {}
    for draft in drafts:
        case_id = draft.fields.get("id")
        seeded = bool(draft.images) and draft.images[0].seed is not None
        first = by_id.get(case_id) if case_id is not None else None
        if first is None:
            joined.append(draft)
            if case_id is not None:
                by_id[case_id] = draft
            continue
        first_seeded = bool(first.images) and first.images[0].seed is not None
        if not (seeded and first_seeded):
            if seeded or first_seeded:
                fail(csv_name, f"case {case_id!r}: {first.where.partition(', ')[2]} and "
                               f"{draft.where.partition(', ')[2]} repeat its id, but only one has a seed; "
                               "give every row of a seeded case its seed")
            joined.append(draft)  # a repeated id without seeds: refused as a duplicate id
            continue
        _add_seed(csv_name, case_id, first, draft)
    return joined


def _add_seed(csv_name: str, case_id: str, first: CaseDraft, draft: CaseDraft) -> None:
    """Join ``draft``'s image into ``first``, the case's first row: every other field must agree."""
    lines = (first.where.partition(", ")[2], draft.where.partition(", ")[2])
    seed = draft.images[0].seed
    for image in first.images:
        if image.seed == seed:
            fail(csv_name, f"case {case_id!r}: seed {seed} is given twice ({_line(image)} and {lines[1]}); "
                           "each seed of a case is one row")
    for name, ours, theirs in (
        *((key, first.fields.get(key), draft.fields.get(key)) for key in sorted({*first.fields, *draft.fields})),
        ("human ratings", first.human, draft.human), ("distractors", first.distractors, draft.distractors),
    ):
        if ours != theirs:
            fail(csv_name, f"case {case_id!r}: {lines[1]} has {name} {theirs!r} but {lines[0]} has {ours!r}; "
                           "the rows of one case differ only in seed, image and mask")
    first.images.append(draft.images[0])
    numbers = ", ".join(_line(image).removeprefix("line ") for image in first.images)
    first.location = lambda _case_id: f"{csv_name}, case {case_id!r} (lines {numbers})"


def _line(image: RawImage) -> str:
    """``line 7``: the row a seeded image was read from (its name says)."""
    return image.name.partition("(")[2].partition(",")[0]


def _number(where: str, item: str, message: str, decimal_comma: bool) -> float:
    """``item`` as a float; in semicolon- and tab-separated files a decimal comma (``0,6``) as
    the spreadsheets of comma-decimal locales write it."""
    comma = item.count(",") == 1 and "." not in item
    try:
        return float(item.replace(",", ".") if decimal_comma and comma else item)
    except ValueError:
        hint = " (a decimal comma is read only in semicolon- or tab-separated files; write a point)" if comma else ""
        fail(where, message.format(item=item) + hint)


def _split_cell(where: str, name: str, cell: str) -> list[str]:
    items = [item.strip() for item in cell.split("|")]
    if any(not item for item in items):
        fail(where, f"{name} has an empty item in its '|'-separated list {cell!r}")
    return items
