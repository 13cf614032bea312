"""``MaSC``: the public scorer, a thin facade over the encoders
(:mod:`~pytest_masc.metric.encoders`), the scoring pipeline
(:mod:`~pytest_masc.metric.pipeline`) and checkpoint loading
(:mod:`~pytest_masc.metric.loading`). It holds the device and thread policy.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence

import torch

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DEFAULT_THRESHOLD
from ..errors import PromptTruncatedWarning
from .encoders import EncodeStats, EncodingCache, ImageEncoder, TextEncoder
from .identity import checkpoint_identity
from .loading import load_backbone, resolve_device, resolve_dtype
from .pipeline import Concurrency, Encoders, ProgressCallback, ScoreRun
from .vision import OneImageVisionForward, unsupported_reason
from ..types import Sample, Score

__all__ = ["MaSC", "PromptTruncatedWarning", "ProgressCallback", "resolve_device", "resolve_dtype"]


class MaSC:
    """MaSC scorer over a frozen SigLIP2 NaFlex model (or a fixed-resolution SigLIP one).

    Build it with :meth:`from_pretrained`. ``score`` scores one sample, ``score_many`` a list
    with every distinct image and prompt encoded once. Scores follow the paper exactly:
    CP from ``last_hidden_state`` patch tokens, PF from the trained attention-pooling head
    with foreground and padding hidden (see :mod:`pytest_masc.metric.functional`).
    """

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        tokenizer: Any,
        *,
        device: torch.device,
        dtype: torch.dtype,
        max_num_patches: int = DEFAULT_MAX_PATCHES,
        fg_threshold: float = DEFAULT_THRESHOLD,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        encode_streams: Optional[int] = None,
        one_image_forward: Optional[bool] = None,
        cache_size: int = 64,
        model_id: str = DEFAULT_MODEL,
        revision: Optional[str] = None,
    ) -> None:
        if int(max_num_patches) < 1:
            raise ValueError(f"max_num_patches must be positive, got {max_num_patches}")
        if not 0.0 < float(fg_threshold) < 1.0:
            raise ValueError(f"fg_threshold must be in (0, 1), got {fg_threshold}")
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.max_num_patches = int(max_num_patches)
        self.fg_threshold = float(fg_threshold)
        self.model_id = model_id
        self.revision = revision
        self.stats = EncodeStats()
        # On CPU one image per forward is fastest (measured in benchmarks/RESULTS.md).
        batch_size = int(batch_size) if batch_size else (32 if device.type == "cuda" else 1)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.concurrency = _concurrency(device, num_workers, encode_streams)
        # On CPU, a forward of one image skips the padded-batch machinery (vision.py); it is
        # used with batches of one, the CPU default. GPUs run Transformers' batched forward.
        # Chosen once, never per batch: an image's tokens must not depend on its batch.
        if one_image_forward is None:
            one_image_forward = (device.type == "cpu" and batch_size == 1
                                 and unsupported_reason(model.vision_model) is None)
        self.image_encoder = ImageEncoder(
            model.vision_model, image_processor, device=device, dtype=dtype,
            max_num_patches=self.max_num_patches, batch_size=batch_size, one_image_forward=bool(one_image_forward),
            fg_threshold=self.fg_threshold,
        )
        self.text_encoder = TextEncoder(
            model, tokenizer, device=device,
            text_length=int(getattr(model.config.text_config, "max_position_embeddings", 64)),
            # Every text forward has this many rows (see TextEncoder): one on a CPU, where a
            # forward of one text costs no more per text, and a full batch elsewhere.
            batch_size=1 if device.type == "cpu" else max(batch_size * 4, 32), stats=self.stats,
        )
        self.cache = EncodingCache(cache_size)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike = DEFAULT_MODEL,
        *,
        device: Optional[str | torch.device] = None,
        dtype: Optional[str | torch.dtype] = None,
        max_num_patches: int = DEFAULT_MAX_PATCHES,
        fg_threshold: float = DEFAULT_THRESHOLD,
        batch_size: Optional[int] = None,
        revision: Optional[str] = None,
        local_files_only: bool = False,
        cache_dir: Optional[str | os.PathLike] = None,
        num_workers: Optional[int] = None,
        encode_streams: Optional[int] = None,
        one_image_forward: Optional[bool] = None,
    ) -> "MaSC":
        """Load a checkpoint (hub id or local directory) and its processor: SigLIP2 NaFlex
        (the paper's backbone) or fixed resolution (SigLIP, and SigLIP2 ``-224`` … ``-512``).

        Args:
            model_id: hub id or directory; default ``google/siglip2-so400m-patch16-naflex``.
            device: ``None`` for CUDA when available, else Apple MPS when available, else CPU.
            dtype: ``None`` for bfloat16 on CUDA, float32 elsewhere.
            max_num_patches: NaFlex patch budget per image (the paper: 1024); unused at fixed resolution.
            fg_threshold: mask weight on the patch grid that makes a patch foreground.
            batch_size: images per vision forward; ``None``: 32 on CUDA, 1 on CPU.
            revision: hub branch, tag or commit.
            local_files_only: never touch the network (also set by ``HF_HUB_OFFLINE=1``).
            cache_dir: Hugging Face cache directory.
            num_workers: threads that read and preprocess images.
            encode_streams: vision forwards run side by side; ``None``: one on a GPU, on a
                CPU as many as torch has threads (at most 4), each with its share of them.
            one_image_forward: encode every image on its own with :mod:`pytest_masc.metric.vision`'s
                lean forward instead of Transformers' padded one; ``None``: on CPU with batches of one.

        Raises:
            ModelLoadError: weights missing offline, or not a SigLIP / SigLIP2 checkpoint.
            DeviceError: the device is not available.
        """
        backbone = load_backbone(
            os.fspath(model_id), device=device, dtype=dtype, revision=revision,
            local_files_only=local_files_only, cache_dir=cache_dir,
        )
        return cls(
            backbone.model,
            backbone.image_processor,
            backbone.tokenizer,
            device=backbone.device,
            dtype=backbone.dtype,
            max_num_patches=max_num_patches,
            fg_threshold=fg_threshold,
            batch_size=batch_size,
            num_workers=num_workers,
            encode_streams=encode_streams,
            one_image_forward=one_image_forward,
            model_id=backbone.model_id,
            revision=backbone.revision,
        )

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        ref_image: Any,
        ref_mask: Any,
        out_image: Any,
        out_mask: Any,
        prompt: str,
        subject: Optional[str] = None,
        distractors: Sequence[str] = (),
    ) -> Score:
        """Score one sample; see :class:`~pytest_masc.types.Sample` for the accepted inputs."""
        sample = Sample(ref_image, ref_mask, out_image, out_mask, prompt, subject, tuple(distractors))
        return self.score_many([sample])[0]

    def score_many(
        self,
        samples: Iterable[Sample],
        *,
        progress: Optional[ProgressCallback] = None,
        errors: str = "raise",
    ) -> list[Any]:
        """Score samples in order, encoding each distinct image and prompt once.

        Args:
            samples: :class:`Sample` objects.
            progress: called as ``progress(images_done, images_total)`` after each batch.
            errors: ``"raise"`` stops at the first bad input; ``"return"`` puts the
                :class:`~pytest_masc.errors.InputError` in that sample's place and scores the rest.

        Returns:
            One :class:`Score` per sample, same order (or an ``InputError`` with ``errors="return"``).
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        samples = list(samples)
        for index, sample in enumerate(samples):
            if not isinstance(sample, Sample):
                raise TypeError(f"samples[{index}] is a {type(sample).__name__}, not a pytest_masc.Sample")
        if not samples:
            return []
        encoders = Encoders(
            images=self.image_encoder, texts=self.text_encoder, cache=self.cache,
            fg_threshold=self.fg_threshold, stats=self.stats,
        )
        with torch.inference_mode():
            return ScoreRun(samples, encoders, self.concurrency, progress=progress, errors=errors).run()

    def encode_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled text embeddings ``(D,)`` float32 by text; each distinct text encoded once."""
        return self.text_encoder.encode(texts)

    def truncated(self, text: str) -> bool:
        """Whether ``text`` was longer than the text tower's context and got truncated."""
        return self.text_encoder.truncated(text)

    # ------------------------------------------------------------------ state

    @property
    def batch_size(self) -> int:
        """Images per vision forward (lowered for good after an out-of-memory batch)."""
        return self.image_encoder.batch_size

    @property
    def one_image_forward(self) -> Optional[OneImageVisionForward]:
        """The lean one-image vision forward every image goes through, or ``None``."""
        return self.image_encoder.one_image_forward

    @property
    def text_length(self) -> int:
        """Tokens the text tower reads; longer prompts are truncated."""
        return self.text_encoder.text_length

    @property
    def num_workers(self) -> int:
        return self.concurrency.readers

    @property
    def encode_streams(self) -> int:
        return self.concurrency.encode_streams

    def clear_cache(self) -> None:
        """Drop cached image encodings, text embeddings and resized position embeddings."""
        self.cache.clear()
        self.image_encoder.clear()
        self.text_encoder.clear()

    def describe(self) -> dict[str, Any]:
        """Model id, revision, checkpoint identity, device, dtype, patch budget: for reports."""
        return {
            "model": self.model_id,
            "revision": self.revision,
            "checkpoint": checkpoint_identity(self.model_id, self.revision),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_num_patches": self.max_num_patches,
            "fg_threshold": self.fg_threshold,
            "batch_size": self.batch_size,
            "encode_streams": self.encode_streams,
            "one_image_forward": self.one_image_forward is not None,
        }


def _concurrency(device: torch.device, num_workers: Optional[int], encode_streams: Optional[int]) -> Concurrency:
    """Readers must keep a GPU fed (about 500 SO400M images/s): use the cores there. On CPU,
    forwards of one image each on one thread, side by side, beat one forward on all threads
    (1.3x measured on 2 cores; benchmarks/RESULTS.md). A GPU runs one stream."""
    cores = os.cpu_count() or 1
    readers = int(num_workers) if num_workers else (min(32, cores) if device.type == "cuda" else min(8, cores))
    cpu_threads = torch.get_num_threads()
    if encode_streams is None:
        encode_streams = 1 if device.type != "cpu" else max(1, min(4, cpu_threads))
    streams = int(encode_streams)
    if streams < 1:
        raise ValueError(f"encode_streams must be positive, got {encode_streams}")
    stream_threads = max(1, cpu_threads // streams) if streams > 1 else None
    return Concurrency(readers=readers, encode_streams=streams, stream_threads=stream_threads)
