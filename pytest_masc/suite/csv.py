"""Cases from a CSV file (``cases = "cases.csv"`` in a suite file); the format is in
:mod:`pytest_masc.suite.schema`."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .schema import (
    CASE_REQUIRED, CSV_COLUMNS, GATE_KEYS, HUMAN_KEYS, CaseDraft, SuiteFile, did_you_mean, display, fail, ratings,
)

#: (line number, cells) of one CSV row
Row = tuple[int, list[str]]


def read_csv_cases(suite_file: SuiteFile, value: str) -> list[CaseDraft]:
    """The case drafts of the cases CSV ``value`` (relative to the suite file)."""
    path = suite_file.resolve(suite_file.name, "cases", value)
    if not path.is_file():
        fail(suite_file.name, f"cases CSV {value.strip()!r} not found (looked for {path})")
    csv_name = display(path)
    rows = _read_rows(path, csv_name)
    columns = _columns(rows[0], csv_name)
    drafts = []
    for line, row in rows[1:]:
        if any(cell.strip() for cell in row):
            drafts.append(_draft(f"{csv_name}, line {line}", columns, row))
    if not drafts:
        fail(csv_name, "the cases CSV has a header but no case rows")
    return drafts


def _read_rows(path: Path, csv_name: str) -> list[Row]:
    """Every row with the line it starts on; at least the header."""
    rows: list[Row] = []
    previous_end = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text.partition("\n")[0]))
        for row in reader:
            rows.append((previous_end + 1, row))
            previous_end = reader.line_num
    except UnicodeDecodeError as error:
        fail(csv_name, f"not UTF-8 text ({error})")
    except csv.Error as error:
        fail(f"{csv_name}, line {previous_end + 1}", f"malformed CSV ({error})")
    if not rows:
        fail(csv_name, "the cases CSV is empty (expected a header row naming the columns)")
    return rows


def _delimiter(header_line: str) -> str:
    """The cell separator: ``,`` unless the header splits into known column names only at
    ``;`` or a tab (spreadsheets in many locales save semicolon-separated "CSV")."""
    for delimiter in (",", ";", "\t"):
        cells = [cell.strip().strip('"').strip() for cell in header_line.split(delimiter)]
        if len(cells) > 1 and all(cell in CSV_COLUMNS for cell in cells):
            return delimiter
    return ","


def _columns(header: Row, csv_name: str) -> list[str]:
    """The header's column names, checked: known, named, unique, the required ones present."""
    line, cells = header
    columns = [cell.strip() for cell in cells]
    where = f"{csv_name}, line {line}"
    for number, column in enumerate(columns, start=1):
        if not column:
            fail(where, f"header cell {number} is empty; every column needs a name")
        if column not in CSV_COLUMNS:
            if ";" in column or "\t" in column:
                fail(where, f"unknown column {column!r}: the header must name known columns separated by "
                            f"commas, semicolons or tabs (known: {', '.join(CSV_COLUMNS)})")
            fail(where, f"unknown column {column!r}{did_you_mean(column, CSV_COLUMNS)}")
        if columns.count(column) > 1:
            fail(where, f"column {column!r} appears more than once")
    for column in CASE_REQUIRED:
        if column not in columns:
            fail(csv_name, f"missing required column {column!r} (columns: {', '.join(columns)})")
    return columns


def _draft(where: str, columns: list[str], row: list[str]) -> CaseDraft:
    """One row as a case draft: empty cells are "not given"; numbers parsed."""
    if len(row) > len(columns):
        fail(where, f"{len(row)} cells but the header has {len(columns)} columns (quote cells that contain commas)")
    cells = {column: cell.strip() for column, cell in zip(columns, row) if cell.strip()}
    fields: dict = {column: cells[column] for column in ("id", "concept", "prompt", "image", "mask") if column in cells}
    for key in GATE_KEYS:
        if key in cells:
            fields[key] = _number(where, cells[key], f"{key} must be a number, got {{item!r}}")
    human = {}
    for key in HUMAN_KEYS:
        column = f"human_{key}"
        if column in cells:
            numbers = [_number(where, item, f"{column} must be '|'-separated numbers, got {{item!r}}")
                       for item in _split_cell(where, column, cells[column])]
            human[key] = ratings(where, column, numbers)
    return CaseDraft(
        where=where,
        fields=fields,
        human=human,
        distractors=_split_cell(where, "distractors", cells["distractors"]) if "distractors" in cells else None,
        missing="empty cell in required column {key!r}",
        location=lambda case_id: where,
    )


def _number(where: str, item: str, message: str) -> float:
    try:
        return float(item)
    except ValueError:
        fail(where, message.format(item=item))


def _split_cell(where: str, name: str, cell: str) -> list[str]:
    items = [item.strip() for item in cell.split("|")]
    if any(not item for item in items):
        fail(where, f"{name} has an empty item in its '|'-separated list {cell!r}")
    return items
