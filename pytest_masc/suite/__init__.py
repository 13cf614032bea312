"""Suite files (``masc_*.toml`` and their cases CSV): parsed and validated, no pytest.

The format is documented in :mod:`pytest_masc.suite.toml`.
"""
from __future__ import annotations

from .toml import (
    CSV_COLUMNS,
    GATE_KEYS,
    PROTOCOL_KINDS,
    SUITE_GATE_KEYS,
    Case,
    Concept,
    Suite,
    is_suite_file,
    load_suite,
)

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
