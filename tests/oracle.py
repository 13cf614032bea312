"""The reference implementation (``masc-metric==0.3.0``) as a test oracle, and the optional
packages some tests need (Ray, pytest-html).

Where one is missing, the tests that need it are skipped, except under ``CI=true``: there a
missing package fails the run, so parity (or Ray scoring, or the HTML report) can never pass
by being skipped.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

INSTALL = 'pip install --no-deps "masc-metric==0.3.0"'


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_oracle(name: str = "masc", install: str = INSTALL, what: str = "the test oracle") -> ModuleType:
    """Import the module ``name`` (by default the oracle); skip without it, or fail under ``CI=true``."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if in_ci():
            pytest.fail(
                f"CI={os.environ['CI']}: {what} {name!r} cannot be imported ({error}); "
                f"these tests must run in CI: {install}",
                pytrace=False,
            )
        pytest.skip(f"could not import {name!r} ({error}); install it: {install}", allow_module_level=True)
