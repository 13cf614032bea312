"""pytest-masc: MaSC (masked similarity for concept-driven generation) as pytest release gates.

``from pytest_masc import MaSC, Sample, Score``. ``MaSC`` (and with it torch and transformers)
is imported on first use only, so ``pytest`` without ``--masc`` stays fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DeviceError, InputError, MaSCError, ModelLoadError, SuiteError
from .types import Sample, Score

__version__ = "0.1.0"
__all__ = [
    "DeviceError",
    "InputError",
    "MaSC",
    "MaSCError",
    "ModelLoadError",
    "Sample",
    "Score",
    "SuiteError",
    "__version__",
]

if TYPE_CHECKING:
    from .metric.scorer import MaSC


def __getattr__(name: str) -> Any:
    if name == "MaSC":
        from .metric.scorer import MaSC

        return MaSC
    raise AttributeError(f"module 'pytest_masc' has no attribute {name!r}")
