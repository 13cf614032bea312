"""The checks every part of a suite file shares: error raising, did-you-mean suggestions, key
checks, text decoding and the typed values (strings, gates, ratings, seed counts)."""
from __future__ import annotations

import codecs
import difflib
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from ..errors import SuiteError
from ..gates import GATE_RANGES, HUMAN_SCALE, is_number, valid_gate, valid_rating
from .schema import PLACES

__all__ = [
    "belongs_elsewhere", "check_keys", "decode_text", "did_you_mean", "display", "fail", "gate", "ratings",
    "seed_count", "text", "type_name",
]


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


def seed_count(where: str, value: Any) -> int:
    """A ``seeds`` value: an integer of at least 1 (not a boolean, not a float)."""
    if not isinstance(value, int) or isinstance(value, bool):
        fail(where, f"seeds must be an integer (how many images per prompt), got {type_name(value)} {value!r}")
    if value < 1:
        fail(where, f"seeds = {value} must be at least 1 (how many images per prompt)")
    return value
