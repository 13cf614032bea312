"""Moved to :mod:`pytest_masc.stats.agreement`; this old name stays importable and is the same module."""
import sys

from .stats import agreement as _moved

sys.modules[__name__] = _moved
