"""Loading a checkpoint: device and dtype policy, the model, its processor and tokenizer,
and load errors that say what to do.

Two kinds of backbone: SigLIP2 NaFlex (``model_type`` ``siglip2``, e.g.
``google/siglip2-so400m-patch16-naflex``: each image keeps its aspect ratio within a patch
budget) and fixed resolution (``model_type`` ``siglip``: SigLIP and the SigLIP2 checkpoints
such as ``google/siglip2-base-patch16-224``, whose processors resize to a square). The
kind comes from the checkpoint's config, not from its name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..defaults import DTYPE_ALIASES
from ..errors import DeviceError, ModelLoadError
from .hub import CheckpointSource, ExpectedCheckpoint, load_checkpoint, tokenizer_problem


def resolve_device(device: Optional[str | torch.device]) -> torch.device:
    """``None`` means CUDA when present, else Apple's MPS when present, else CPU; a CUDA or
    MPS request without one fails clearly."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f"device {device!r} is not a torch device name ({error})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(device)!r} was requested but CUDA is not available "
                "(torch.cuda.is_available() is False: no GPU, or a CPU-only torch build); "
                "use device 'cpu' or leave it unset"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    if resolved.type == "mps" and not _mps_available():
        raise DeviceError(f"device {str(device)!r} was requested but MPS is not available")
    return resolved


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_dtype(dtype: Optional[str | torch.dtype], device: torch.device) -> torch.dtype:
    """``None`` means bfloat16 on CUDA and float32 elsewhere; names like ``"bf16"`` are accepted."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPE_ALIASES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPE_ALIASES)}")
    return getattr(torch, DTYPE_ALIASES[key])


#: the SigLIP backbone MaSC loads, for :mod:`pytest_masc.metric.hub`'s errors
SIGLIP_CHECKPOINT = ExpectedCheckpoint(
    name="SigLIP2 checkpoint",
    contents="a Siglip2Model (or SiglipModel) saved with save_pretrained: config.json, model.safetensors, "
             "the processor's settings and the tokenizer files",
    example="google/siglip2-so400m-patch16-naflex",
    point_at="MaSC.from_pretrained('/path/to/checkpoint') or --masc-model=/path/to/checkpoint",
    hub_note="the google/siglip2 checkpoints may ask you to accept their license and `hf auth login` first",
    model_types=("siglip2", "siglip"),
    wanted="SigLIP2 or SigLIP: MaSC needs a Siglip2Model (NaFlex, such as google/siglip2-so400m-patch16-naflex) "
           "or a SiglipModel (fixed resolution, such as google/siglip2-base-patch16-224)",
)


def siglip_text_configs() -> tuple[type, ...]:
    """The SigLIP text config classes, whose defaults transformers warns about (see
    :class:`~pytest_masc.metric.hub.DefaultConfigWarnings`)."""
    from transformers import Siglip2TextConfig, SiglipTextConfig

    return (SiglipTextConfig, Siglip2TextConfig)


def ready_model(model: Any, device: torch.device) -> Any:
    """``model`` in eval mode, on ``device``, without gradients: how every loader hands a network over."""
    model = model.eval().to(device)
    model.requires_grad_(False)
    return model


def _read_siglip(source: CheckpointSource, config: Any, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """The SigLIP model (in ``dtype``, SDPA attention), its PIL image processor and its tokenizer."""
    from transformers import AutoTokenizer

    model_class, processor_class = _classes(config.model_type)
    model = model_class.from_pretrained(source.path, dtype=dtype, attn_implementation="sdpa", **source.hub)
    image_processor = processor_class.from_pretrained(source.path, **source.hub)
    return model, image_processor, AutoTokenizer.from_pretrained(source.path, **source.hub)


def _classes(model_type: str) -> tuple[Any, Any]:
    """The model and PIL image-processor classes of a ``siglip2`` or ``siglip`` checkpoint."""
    if model_type == "siglip2":
        from transformers import Siglip2Model
        from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

        return Siglip2Model, Siglip2ImageProcessorPil
    from transformers import SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    return SiglipModel, SiglipImageProcessorPil


def fixed_resolution(vision_config: Any) -> Optional[tuple[int, int]]:
    """The ``(height, width)`` a fixed-resolution vision tower reads, ``None`` for NaFlex."""
    if str(getattr(vision_config, "model_type", "")).startswith("siglip2"):
        return None
    side = int(vision_config.image_size)
    return (side, side)


def fixed_resolution_problem(vision_config: Any, image_processor: Any) -> Optional[str]:
    """Why a fixed-resolution tower and its processor do not fit together (``None``: they do)."""
    side, patch = int(vision_config.image_size), int(vision_config.patch_size)
    if side % patch:
        return f"image_size {side} is not a multiple of patch_size {patch}"
    size = getattr(image_processor, "size", None) or {}
    if (size.get("height"), size.get("width")) != (side, side):
        return f"the image processor resizes to {size}, but the vision tower reads {side}x{side} images"
    return None


@dataclass(frozen=True)
class Backbone:
    """A loaded checkpoint: the model (eval mode, no gradients, on ``device`` in ``dtype``),
    its image processor and tokenizer, and where it came from."""

    model: Any
    image_processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    model_id: str
    revision: Optional[str]  # the hub commit when known, else the requested revision


def load_backbone(
    model_id: str,
    *,
    device: Optional[str | torch.device] = None,
    dtype: Optional[str | torch.dtype] = None,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    cache_dir: Optional[str | os.PathLike] = None,
) -> Backbone:
    """Load a SigLIP2 NaFlex or a fixed-resolution SigLIP checkpoint (hub id or local
    directory) with its processor and tokenizer.

    Raises:
        ModelLoadError: weights missing offline, or not a SigLIP / SigLIP2 checkpoint.
        DeviceError: the device is not available.
    """
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    config, (model, image_processor, tokenizer) = load_checkpoint(
        model_id, SIGLIP_CHECKPOINT, lambda source, config: _read_siglip(source, config, resolved_dtype),
        revision=revision, local_files_only=local_files_only, cache_dir=cache_dir, default_configs=siglip_text_configs(),
    )
    problem = tokenizer_problem(tokenizer, int(model.config.text_config.vocab_size))
    if problem:
        raise SIGLIP_CHECKPOINT.fail(model_id, f"{problem}. It must hold {SIGLIP_CHECKPOINT.contents}.")
    if config.model_type == "siglip":
        problem = fixed_resolution_problem(model.vision_model.config, image_processor)
        if problem:
            raise ModelLoadError(f"{model_id!r}: {problem}")
    model = ready_model(model, resolved_device)
    return Backbone(model=model, image_processor=image_processor, tokenizer=tokenizer, device=resolved_device,
                    dtype=resolved_dtype, model_id=model_id, revision=getattr(config, "_commit_hash", None) or revision)
