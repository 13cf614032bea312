""":class:`ModelOptions`: how to load the MaSC model, one frozen object for the plugin (built
once from the ``--masc-*`` options), the Ray actors and the run settings a report records.
Imports neither torch nor transformers (the plugin builds it at configure time)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL

if TYPE_CHECKING:
    from .scorer import MaSC


@dataclass(frozen=True)
class ModelOptions:
    """``MaSC.from_pretrained``'s model arguments. ``max_num_patches`` is the NaFlex patch budget
    per image (``--masc-max-patches``; ``max_num_patches`` in reports and baselines);
    ``batch_size``: images per vision forward (``None``: 32 on CUDA, 1 on CPU);
    ``local_files_only``: never touch the hub (``HF_HUB_OFFLINE=1`` does the same)."""

    model: str = DEFAULT_MODEL
    revision: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    max_num_patches: int = DEFAULT_MAX_PATCHES
    batch_size: Optional[int] = None
    local_files_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", os.fspath(self.model))

    def load_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``MaSC.from_pretrained(**options.load_kwargs())``."""
        return {
            "model_id": self.model, "revision": self.revision, "device": self.device, "dtype": self.dtype,
            "max_num_patches": self.max_num_patches, "batch_size": self.batch_size,
            "local_files_only": self.local_files_only,
        }

    def load(self) -> "MaSC":
        """The ``MaSC`` these options describe (torch and transformers are imported here)."""
        from .scorer import MaSC

        return MaSC.from_pretrained(**self.load_kwargs())

    def recorded(self) -> dict[str, Any]:
        """What a report records of the requested model (its run settings): model, revision,
        dtype and patch budget; the device and batch size do not change the scores."""
        return {"model": self.model, "revision": self.revision, "dtype": self.dtype,
                "max_num_patches": self.max_num_patches}


__all__ = ["ModelOptions"]
