"""Moved to :mod:`pytest_masc.testing.strategies`; this old name stays importable and is the same module."""
import sys

from .testing import strategies as _moved

sys.modules[__name__] = _moved
