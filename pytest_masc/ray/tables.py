"""Reading and writing samples tables as Parquet or CSV files, local or at a URI."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import InputError
from .schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, is_missing

if TYPE_CHECKING:
    import pandas as pd


def read_table(path: str | os.PathLike) -> "pd.DataFrame":
    """A samples table from Parquet (``.parquet``/``.pq``) or CSV (``.csv``), local or a URI.

    CSV cells of the text columns are read as text (empty cells as missing), so a prompt
    like ``1984`` stays a string.
    """
    import pandas as pd

    name = os.fspath(path)
    kind = _table_kind(name)
    try:
        if kind == "parquet":
            return pd.read_parquet(name)
        text = {column: object for column in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        return pd.read_csv(name, dtype=text, keep_default_na=False, na_values={c: [""] for c in text})
    except FileNotFoundError:
        raise InputError(f"{name}: samples table not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{name}: cannot read the samples table as {kind} ({error})") from None


def write_table(table: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Write a scored table as Parquet or CSV (by extension). In CSV, list cells (distractors)
    are joined with ``|``, the form :func:`read_table` reads back."""
    name = os.fspath(path)
    if _table_kind(name) == "parquet":
        table.to_parquet(name, index=False)
        return
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object and table[column].map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).any():
            table[column] = table[column].map(lambda v: v if is_missing(v) or isinstance(v, str) else "|".join(list(v)))
    table.to_csv(name, index=False)


def _table_kind(name: str) -> str:
    lower = name.lower().split("?", 1)[0]
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise ValueError(f"{name}: unknown table format; use a .parquet, .pq or .csv file")


__all__ = ["read_table", "write_table"]
