"""Suite files (``masc_*.toml`` and their cases CSV): parsed and validated, no pytest.

The format, with every validation rule, is documented in :mod:`pytest_masc.suite.schema`;
:func:`load_suite` reads a file.
"""
from __future__ import annotations

from ..protocols.spec import PROTOCOL_KINDS
from .schema import CSV_COLUMNS, GATE_KEYS, SUITE_GATE_KEYS, Case, Concept, Suite, is_suite_file, missing_files
from .toml import load_suite

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
    "missing_files",
]
