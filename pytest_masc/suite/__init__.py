"""Suite files (``masc_*.toml`` and their cases CSV): parsed and validated, no pytest.

The format, with every validation rule, is documented in :mod:`pytest_masc.suite.schema`;
:func:`load_suite` reads a file.
"""
from __future__ import annotations

from ..protocols.spec import PROTOCOL_KINDS
from .files import missing_files
from .model import Case, CaseImage, Concept, Suite, is_suite_file
from .schema import CSV_COLUMNS, GATE_KEYS, SEED_TOKEN, SUITE_GATE_KEYS
from .toml import load_suite

__all__ = [
    "CSV_COLUMNS",
    "Case",
    "CaseImage",
    "Concept",
    "GATE_KEYS",
    "PROTOCOL_KINDS",
    "SEED_TOKEN",
    "SUITE_GATE_KEYS",
    "Suite",
    "is_suite_file",
    "load_suite",
    "missing_files",
]
