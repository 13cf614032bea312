"""Moved to :mod:`pytest_masc.metric.inputs`; this old name stays importable and is the same module."""
import sys

from .metric import inputs as _moved

sys.modules[__name__] = _moved
