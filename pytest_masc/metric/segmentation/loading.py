"""Loading a segmenter: check the arguments, find the checkpoint, check its type and tokenizer, build the backend."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Union

from pytest_masc.defaults import DEFAULT_SEGMENTER_MODELS, SEGMENTER_KINDS

from ..hub import ExpectedCheckpoint, load_checkpoint, tokenizer_problem
from .checkpoints import expected_checkpoint
from .clipseg import ClipSegSegmenter
from .sam3 import Sam3Segmenter
from .segmenter import Segmenter

if TYPE_CHECKING:  # torch is imported when a segmenter is loaded
    import torch

BACKENDS: dict[str, type[Segmenter]] = {"sam3": Sam3Segmenter, "clipseg": ClipSegSegmenter}


def load_segmenter(
    kind: str,
    model: Optional[Union[str, os.PathLike]] = None,
    *,
    revision: Optional[str] = None,
    device: Optional[Union[str, "torch.device"]] = None,
    dtype: Optional[Union[str, "torch.dtype"]] = None,
    threshold: Optional[float] = None,
    mask_threshold: Optional[float] = None,
    local_files_only: bool = False,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    batch_size: Optional[int] = None,
    cache_size: int = 256,
) -> "Segmenter":
    """Load a text-prompted segmenter (hub id or local directory).

    Args:
        kind: ``"sam3"`` or ``"clipseg"``.
        model: hub id or directory; ``None`` for the kind's default checkpoint
            (``facebook/sam3``, ``CIDAS/clipseg-rd64-refined``).
        revision: hub branch, tag or commit.
        device: ``None`` for CUDA when available, else MPS, else CPU (as the scorer:
            :func:`pytest_masc.metric.loading.resolve_device`).
        dtype: ``None`` for bfloat16 on CUDA, float32 elsewhere.
        threshold: SAM3: instance score (in ``[0, 1]``) an instance must exceed to be part
            of the mask; CLIPSeg: foreground probability. ``None``: 0.5 for both.
        mask_threshold: SAM3 only: probability a pixel of a kept instance must exceed
            (``None``: 0.5).
        local_files_only: never touch the network (also set by ``HF_HUB_OFFLINE=1``).
        cache_dir: Hugging Face cache directory.
        batch_size: images per vision forward and (image, text) pairs per head forward;
            ``None``: 8 on CUDA, 2 elsewhere.
        cache_size: masks kept in the LRU cache (0 turns it off).

    Raises:
        SegmenterLoadError (a ``ModelLoadError``): files missing (offline, the hub
            unreachable, or a local directory that does not exist or lacks files), or a
            checkpoint of another model type.
        DeviceError: the device is not available.
        ValueError: an unknown kind or a threshold outside ``[0, 1]``.
    """
    _check_kind_and_settings(kind, mask_threshold)
    from ..loading import resolve_device, resolve_dtype  # torch: only once a segmenter loads

    model_id = os.fspath(model) if model is not None else DEFAULT_SEGMENTER_MODELS[kind]
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    expected = expected_checkpoint(kind)
    config, parts = load_checkpoint(
        model_id, expected, lambda source, config: BACKENDS[kind]._load_parts(source.path, resolved_dtype, source.hub),
        revision=revision, local_files_only=local_files_only, cache_dir=cache_dir,
    )
    _check_tokenizer(parts, model_id, expected)
    network = _ready_network(parts.pop("model"), resolved_device)
    extra = {"mask_threshold": mask_threshold} if kind == "sam3" else {}
    return BACKENDS[kind](
        network,
        **parts,
        device=resolved_device,
        dtype=resolved_dtype,
        model_id=model_id,
        revision=getattr(config, "_commit_hash", None) or revision,
        threshold=threshold,
        batch_size=batch_size,
        cache_size=cache_size,
        **extra,
    )


def _check_kind_and_settings(kind: str, mask_threshold: Optional[float]) -> None:
    """An unknown kind, or a SAM3-only setting given to another kind: ``ValueError``."""
    if kind not in SEGMENTER_KINDS:
        raise ValueError(f"segmenter kind {kind!r} is not one of {list(SEGMENTER_KINDS)}")
    if kind != "sam3" and mask_threshold is not None:
        raise ValueError("mask_threshold is a SAM3 setting; CLIPSeg has only threshold")


def _check_tokenizer(parts: dict[str, Any], model_id: str, expected: ExpectedCheckpoint) -> None:
    """The tokenizer must fit the text encoder's vocabulary."""
    problem = tokenizer_problem(parts["tokenizer"], int(parts["model"].config.text_config.vocab_size))
    if problem:
        raise expected.fail(model_id, f"{problem}. It must hold {expected.contents}.")


def _ready_network(network: Any, device: "torch.device") -> Any:
    """The model in eval mode on ``device``, gradients off."""
    network = network.eval().to(device)
    network.requires_grad_(False)
    return network
