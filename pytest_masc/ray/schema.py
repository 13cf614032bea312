"""The samples table's columns: their names, the check of a table's columns, and how one cell is read.

Input columns: ``ref_image``, ``ref_mask``, ``out_image``, ``out_mask`` (local paths,
relative to ``base_dir``, or URIs such as ``s3://…`` / ``gs://…`` that ``pyarrow.fs`` or
``fsspec`` can open), ``prompt``, ``subject`` (a blank cell strips nothing) and optionally
``distractors`` (a list, or one ``|``-separated string as in suite case CSVs). Every other
column is passed through unchanged.

Output columns, appended in this order: ``concept``, ``prompt``, ``global_concept``,
``global_prompt``, ``prompt_margin`` (floats, NaN when not scored) and ``error`` (``None``, or
what is wrong with the row, naming the file). Scores keep the names of
:class:`~pytest_masc.types.Score` so a score column reads the same everywhere (``Score.prompt``,
``Score.as_dict()["prompt"]``, JSON reports, this table). Because ``prompt`` is also an input,
the rule is: **an input column whose name is an output column is kept as ``input_<name>``**,
so the prompt text comes back as ``input_prompt`` (and a ``concept`` name column as
``input_concept``). A table that already has that ``input_<name>`` column is refused.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from ..errors import InputError

IMAGE_COLUMNS = ("ref_image", "ref_mask", "out_image", "out_mask")
REQUIRED_COLUMNS = (*IMAGE_COLUMNS, "prompt", "subject")
OPTIONAL_COLUMNS = ("distractors",)
SCORE_COLUMNS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")
OUTPUT_COLUMNS = (*SCORE_COLUMNS, "error")
INPUT_PREFIX = "input_"
ROW_COLUMN = "__masc_row"  # the carried input position; never in the output


def output_names(columns: Iterable[str], where: str = "the table") -> dict[str, str]:
    """Renames that keep input columns clear of the output columns (``prompt`` -> ``input_prompt``)."""
    columns = list(columns)
    renames = {name: INPUT_PREFIX + name for name in columns if name in OUTPUT_COLUMNS}
    for name, new in renames.items():
        if new in columns:
            raise ValueError(
                f"{where}: has both {name!r} and {new!r}; the output puts a score in {name!r} "
                f"and keeps the input {name!r} as {new!r}, so rename one of them"
            )
    return renames


def check_columns(columns: Iterable[str], where: str = "the table") -> None:
    """Raise ``ValueError`` naming ``where`` and the missing columns."""
    columns = list(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {', '.join(missing)}; a MaSC table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally distractors); it has {', '.join(map(str, columns)) or 'none'}"
        )
    output_names(columns, where)


def is_missing(value: Any) -> bool:
    """Whether a cell is empty: ``None``, NaN, ``pd.NA`` or ``pd.NaT``."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def cell_text(value: Any, column: str) -> Optional[str]:
    """A cell as text, ``None`` when empty or missing; anything else than text is an ``InputError``."""
    if is_missing(value):
        return None
    if not isinstance(value, str):
        raise InputError(f"{column} must be text, got {type(value).__name__} {value!r}")
    return value if value.strip() else None


def parse_distractors(value: Any) -> tuple[str, ...]:
    """A ``distractors`` cell: a list/array of prompts, one ``|``-separated string, or empty."""
    if is_missing(value):
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("|") if part.strip())
    if hasattr(value, "tolist"):  # numpy arrays from Parquet list columns
        value = value.tolist()
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(item for item in value if item.strip())
    raise InputError(
        f"distractors must be a list of prompts or one '|'-separated string, got {type(value).__name__} {value!r}"
    )


__all__ = [
    "IMAGE_COLUMNS", "INPUT_PREFIX", "OPTIONAL_COLUMNS", "OUTPUT_COLUMNS", "REQUIRED_COLUMNS", "ROW_COLUMN",
    "SCORE_COLUMNS", "cell_text", "check_columns", "is_missing", "output_names", "parse_distractors",
]
