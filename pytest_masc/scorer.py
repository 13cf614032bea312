"""The stateful layer: load SigLIP2 once, encode each distinct image and prompt once, score.

``MaSC.score_many`` plans the work before running it:

1. every distinct prompt text (stripped, full, distractors) is encoded once, in batches;
2. every distinct image (by path + mtime, or by content hash) is encoded once: images are
   read and preprocessed by worker threads while the vision tower runs the previous
   batch; a batch is padded only to its longest NaFlex sequence;
3. a sample is scored as soon as both of its images are encoded, and an image's tokens
   are dropped as soon as no pending sample needs them, so memory stays bounded by the
   batch size and the references in flight, not by the number of samples.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
import warnings
from collections import OrderedDict, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from . import functional
from .defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DEFAULT_THRESHOLD, DTYPE_ALIASES
from .errors import DeviceError, InputError, MaSCError, ModelLoadError
from .inputs import describe, load_image, read_mask, source_key
from .preprocess import naflex_patches, patch_normalisation
from .text import strip_subject
from .vision import OneImageVisionForward, unsupported_reason
from .types import Sample, Score


ProgressCallback = Callable[[int, int], None]


class PromptTruncatedWarning(UserWarning):
    """A prompt is longer than the text tower's context and was cut to fit."""


@dataclass
class EncodeStats:
    """Work done by one ``MaSC`` instance, cumulative over calls."""

    images_encoded: int = 0
    images_cached: int = 0
    texts_encoded: int = 0
    texts_cached: int = 0
    encode_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class _Pixels:
    """One preprocessed image: ``patches (N, 3 * P * P)`` (uint8 to normalise on the device,
    or float32 from the processor) and its grid ``(Hp, Wp)``."""

    patches: np.ndarray
    grid: tuple[int, int]
    size: tuple[int, int]  # (height, width) of the image as read
    masks: dict[tuple, Any] = field(default_factory=dict)  # mask key -> (weights (H, W), MaskReading) or its InputError


@dataclass
class _Encoding:
    """One image through the vision tower."""

    tokens: torch.Tensor  # (Hp * Wp, D), model dtype, on the device
    pooled: torch.Tensor  # (D,) the head's pooled embedding over all patches
    grid: tuple[int, int]
    size: tuple[int, int]
    masks: dict[tuple, Any] = field(default_factory=dict)  # mask key -> (weights, MaskReading)
    # (Hp * Wp, 2 * D) the pooling head's keys and values when the forward made them (the
    # one-image forward); a run moves them to its own table for the outputs' background pools.
    keys_values: Optional[torch.Tensor] = None
    _unit: Optional[torch.Tensor] = None

    @property
    def unit(self) -> torch.Tensor:
        """``(Hp * Wp, D)`` float32 unit-length tokens, computed once."""
        if self._unit is None:
            self._unit = functional.unit_tokens(self.tokens)
        return self._unit


def resolve_device(device: Optional[str | torch.device]) -> torch.device:
    """``None`` means CUDA when present, else CPU; a CUDA or MPS request without one fails clearly."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {str(device)!r} was requested but MPS is not available")
    return resolved


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


def _fast_preprocess_settings(image_processor: Any) -> Optional[dict[str, Any]]:
    """Arguments for :func:`~pytest_masc.preprocess.naflex_patches` when the processor does
    exactly what it does (bilinear resize, 1/255 rescale, normalise); ``None`` otherwise."""
    from PIL import Image

    get = lambda name, default=None: getattr(image_processor, name, default)  # noqa: E731
    resample = get("resample")
    standard = (
        get("do_resize", True) and get("do_rescale", True) and get("do_normalize", True)
        and resample is not None and int(resample) == int(Image.BILINEAR)
        and abs(float(get("rescale_factor", 1 / 255)) - 1 / 255) < 1e-12
        and isinstance(get("patch_size"), int)
    )
    if not standard:
        return None
    mean, std = get("image_mean"), get("image_std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    return {"patch_size": int(get("patch_size")), "mean": tuple(map(float, mean)), "std": tuple(map(float, std))}


def _load_error(model_id: str, revision: Optional[str], error: BaseException) -> ModelLoadError:
    at = f" at revision {revision!r}" if revision else ""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    looks_local = model_id.startswith((".", "/", "~")) or os.sep in model_id.strip("/").split("/", 1)[-1]
    if looks_local or os.path.isdir(model_id):
        return ModelLoadError(
            f"cannot load the SigLIP2 checkpoint {model_id!r}{at}: {reason}. "
            "The directory must hold a Siglip2Model saved with save_pretrained "
            "(config.json, model.safetensors, processor and tokenizer files)."
        )
    return ModelLoadError(
        f"cannot load the SigLIP2 checkpoint {model_id!r}{at}: {reason}. "
        "Its weights are neither in the local Hugging Face cache nor reachable. "
        f"Pre-download them where the hub is reachable with `hf download {model_id}` "
        "(the google/siglip2 checkpoints may ask you to accept their license and "
        "`hf auth login` first; share the cache through HF_HOME), or point at a local "
        "directory: MaSC.from_pretrained('/path/to/checkpoint') or --masc-model /path/to/checkpoint."
    )


class MaSC:
    """MaSC scorer over a frozen SigLIP2 NaFlex model.

    Build it with :meth:`from_pretrained`. ``score`` scores one sample, ``score_many`` a list
    with every distinct image and prompt encoded once. Scores follow the paper exactly:
    CP from ``last_hidden_state`` patch tokens, PF from the trained attention-pooling head
    with foreground and padding hidden (see :mod:`pytest_masc.functional`).
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
        # On CPU one image per forward is fastest (measured in benchmarks/RESULTS.md).
        self.batch_size = int(batch_size) if batch_size else (32 if device.type == "cuda" else 1)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        # Readers must keep a GPU fed (about 500 SO400M images/s): use the cores there.
        cores = os.cpu_count() or 1
        self.num_workers = int(num_workers) if num_workers else (min(32, cores) if device.type == "cuda" else min(8, cores))
        # On CPU, forwards of one image each on one thread, side by side, beat one forward on
        # all threads (1.3x measured on 2 cores; benchmarks/RESULTS.md). A GPU runs one stream.
        cpu_threads = torch.get_num_threads()
        if encode_streams is None:
            encode_streams = 1 if device.type != "cpu" else max(1, min(4, cpu_threads))
        self.encode_streams = int(encode_streams)
        if self.encode_streams < 1:
            raise ValueError(f"encode_streams must be positive, got {encode_streams}")
        self.stream_threads = max(1, cpu_threads // self.encode_streams) if self.encode_streams > 1 else None
        # On CPU, a forward of one image skips the padded-batch machinery (vision.py); it is
        # used for batches of one, the CPU default. GPUs run Transformers' batched forward.
        if one_image_forward is None:
            one_image_forward = device.type == "cpu" and unsupported_reason(model.vision_model) is None
        self.one_image_forward = OneImageVisionForward(model.vision_model) if one_image_forward else None
        self.model_id = model_id
        self.revision = revision
        self.text_length = int(getattr(model.config.text_config, "max_position_embeddings", 64))
        self.stats = EncodeStats()
        self._fast_preprocess = _fast_preprocess_settings(image_processor)
        self._patch_normalisation = (
            tuple(torch.from_numpy(a).to(device) for a in patch_normalisation(**self._fast_preprocess))
            if self._fast_preprocess is not None else None
        )
        self._cache_size = int(cache_size)
        self._image_cache: OrderedDict[tuple, _Encoding] = OrderedDict()
        self._text_cache: dict[str, torch.Tensor] = {}
        self._truncated_texts: set[str] = set()

    # ------------------------------------------------------------------ loading

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
        """Load a SigLIP2 NaFlex checkpoint (hub id or local directory) and its processor.

        Args:
            model_id: hub id or directory; default ``google/siglip2-so400m-patch16-naflex``.
            device: ``None`` for CUDA when available, else CPU.
            dtype: ``None`` for bfloat16 on CUDA, float32 on CPU.
            max_num_patches: NaFlex patch budget per image (the paper: 1024).
            fg_threshold: mask weight on the patch grid that makes a patch foreground.
            batch_size: images per vision forward; ``None``: 32 on CUDA, 1 on CPU.
            revision: hub branch, tag or commit.
            local_files_only: never touch the network (also set by ``HF_HUB_OFFLINE=1``).
            cache_dir: Hugging Face cache directory.
            num_workers: threads that read and preprocess images.
            encode_streams: vision forwards run side by side; ``None``: one on a GPU, on a
                CPU as many as torch has threads (at most 4), each with its share of them.
            one_image_forward: encode batches of one image with :mod:`pytest_masc.vision`'s
                lean forward instead of Transformers' padded one; ``None``: on CPU.

        Raises:
            ModelLoadError: weights missing offline, or not a SigLIP2 checkpoint.
            DeviceError: the device is not available.
        """
        from transformers import AutoConfig, AutoTokenizer, Siglip2Model
        from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

        model_id = os.fspath(model_id)
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        hub = dict(revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        try:
            config = AutoConfig.from_pretrained(model_id, **hub)
        except Exception as error:  # hub, network and file errors come in many types
            raise _load_error(model_id, revision, error) from error
        if getattr(config, "model_type", None) != "siglip2":
            raise ModelLoadError(
                f"{model_id!r} is a {getattr(config, 'model_type', 'unknown')!r} checkpoint, not SigLIP2 "
                "NaFlex: MaSC needs a Siglip2Model such as google/siglip2-so400m-patch16-naflex"
            )
        try:
            model = Siglip2Model.from_pretrained(model_id, dtype=resolved_dtype, attn_implementation="sdpa", **hub)
            image_processor = Siglip2ImageProcessorPil.from_pretrained(model_id, **hub)
            tokenizer = AutoTokenizer.from_pretrained(model_id, **hub)
        except Exception as error:
            raise _load_error(model_id, revision, error) from error
        model = model.eval().to(resolved_device)
        model.requires_grad_(False)
        return cls(
            model,
            image_processor,
            tokenizer,
            device=resolved_device,
            dtype=resolved_dtype,
            max_num_patches=max_num_patches,
            fg_threshold=fg_threshold,
            batch_size=batch_size,
            num_workers=num_workers,
            encode_streams=encode_streams,
            one_image_forward=one_image_forward,
            model_id=model_id,
            revision=getattr(config, "_commit_hash", None) or revision,
        )

    # ------------------------------------------------------------------ public API

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
        with torch.inference_mode():
            return _ScoreRun(self, samples, progress, errors).run()

    def encode_texts(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pooled text embeddings ``(D,)`` float32 by text; each distinct text encoded once."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._text_cache]
        self.stats.texts_cached += len(set(texts)) - len(missing)
        if missing:
            with torch.inference_mode():
                self._encode_new_texts(missing)
        return {text: self._text_cache[text] for text in texts}

    def truncated(self, text: str) -> bool:
        """Whether ``text`` was longer than the text tower's context and got truncated."""
        return text in self._truncated_texts

    def clear_cache(self) -> None:
        """Drop cached image encodings, text embeddings and resized position embeddings."""
        self._image_cache.clear()
        if self.one_image_forward is not None:
            self.one_image_forward.clear()
        self._text_cache.clear()
        self._truncated_texts.clear()

    def describe(self) -> dict[str, Any]:
        """Model id, revision, device, dtype, patch budget: for reports."""
        return {
            "model": self.model_id,
            "revision": self.revision,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_num_patches": self.max_num_patches,
            "fg_threshold": self.fg_threshold,
            "batch_size": self.batch_size,
            "encode_streams": self.encode_streams,
            "one_image_forward": self.one_image_forward is not None,
        }

    # ------------------------------------------------------------------ internals

    def _encode_new_texts(self, texts: list[str]) -> None:
        lengths = self.tokenizer(texts, truncation=False, padding=False)["input_ids"]
        for text, ids in zip(texts, lengths):
            if len(ids) > self.text_length:
                self._truncated_texts.add(text)
                warnings.warn(
                    f"prompt {text!r} is {len(ids)} tokens long; the text tower reads "
                    f"{self.text_length}, so it was truncated",
                    PromptTruncatedWarning,
                    stacklevel=4,
                )
        text_batch = max(self.batch_size * 4, 32)
        for start in range(0, len(texts), text_batch):
            chunk = texts[start:start + text_batch]
            input_ids = self.tokenizer(
                chunk, padding="max_length", truncation=True, max_length=self.text_length, return_tensors="pt"
            )["input_ids"].to(self.device)
            pooled = self.model.text_model(input_ids=input_ids).pooler_output.to(torch.float32)
            for text, row in zip(chunk, pooled):
                self._text_cache[text] = row
        self.stats.texts_encoded += len(texts)

    def _prepare(self, source: Any, what: str, masks: list[tuple[tuple, Any, str]]) -> _Pixels:
        """Worker thread: read an image and its masks, resize and patchify the image."""
        image = load_image(source, what)
        if self._fast_preprocess is not None:
            patches, grid = naflex_patches(
                image, max_num_patches=self.max_num_patches, normalise=False, **self._fast_preprocess
            )
        else:  # a processor configured unlike SigLIP2's: let it do the work
            features = self.image_processor(
                images=[image], max_num_patches=self.max_num_patches, return_tensors="np"
            )
            count = int(features["pixel_attention_mask"][0].sum())
            grid = tuple(int(x) for x in features["spatial_shapes"][0])
            patches = np.ascontiguousarray(features["pixel_values"][0, :count], dtype=np.float32)
        size = (image.height, image.width)
        loaded = {}
        for mask_key, mask_source, mask_what in masks:
            # A bad mask fails only the samples that use it, not every sample of its image:
            # the error is kept in the mask's place and raised (or returned) at scoring.
            try:
                weights, reading = read_mask(mask_source, mask_what)
                if weights.shape != size:
                    raise InputError(
                        f"{describe(mask_source)}: {mask_what} is {weights.shape[1]}x{weights.shape[0]} "
                        f"but its image {describe(source)} is {size[1]}x{size[0]}; masks must have "
                        "their image's size (width x height)"
                    )
                loaded[mask_key] = (weights, reading)
            except InputError as error:
                loaded[mask_key] = error
        return _Pixels(patches, grid, size, loaded)

    def _forward(self, batch: list[_Pixels]) -> list[_Encoding]:
        """One vision forward; the batch is padded to its longest sequence, not to the budget."""
        if len(batch) == 1 and self.one_image_forward is not None:
            return [self._forward_one(batch[0])]
        longest = max(len(p.patches) for p in batch)
        raw = batch[0].patches.dtype == np.uint8  # normalised on the device, after the copy
        pixel_values = torch.zeros(len(batch), longest, batch[0].patches.shape[1],
                                   dtype=torch.uint8 if raw else torch.float32)
        attention = torch.zeros(len(batch), longest, dtype=torch.long)
        for row, pixels in enumerate(batch):
            pixel_values[row, : len(pixels.patches)] = torch.from_numpy(pixels.patches)
            attention[row, : len(pixels.patches)] = 1
        shapes = torch.tensor([p.grid for p in batch], dtype=torch.long)
        if self.device.type == "cuda":  # an asynchronous copy needs page-locked memory
            pixel_values = pixel_values.pin_memory()
        pixel_values = self._normalised(pixel_values.to(self.device, non_blocking=True))
        vision = self.model.vision_model(
            pixel_values=pixel_values.to(self.dtype),
            pixel_attention_mask=attention.to(self.device),
            spatial_shapes=shapes.to(self.device),
        )
        hidden = vision.last_hidden_state
        pooled = vision.pooler_output
        return [
            _Encoding(hidden[row, : len(p.patches)], pooled[row], p.grid, p.size, p.masks)
            for row, p in enumerate(batch)
        ]

    def _normalised(self, patches: torch.Tensor) -> torch.Tensor:
        """uint8 patches (on the device) normalised as the processor does, ``(x / 255 - mean) / std``
        in float32; float patches (already normalised by the processor) unchanged."""
        if patches.dtype != torch.uint8:
            return patches
        scale, offset = self._patch_normalisation
        return patches.to(torch.float32) / scale - offset

    def _forward_one(self, pixels: _Pixels) -> _Encoding:
        """One image through :class:`~pytest_masc.vision.OneImageVisionForward`; the global
        pool comes from keys and values that the background pool reuses."""
        patches = self._normalised(torch.from_numpy(pixels.patches).to(self.device))
        tokens = self.one_image_forward(patches.to(self.dtype), pixels.grid)
        head = self.model.vision_model.head
        keys_values = functional.pool_keys_values(head, tokens[None])
        nothing_hidden = torch.zeros(1, len(tokens), dtype=torch.bool, device=self.device)
        pooled = functional.attention_pool_projected(head, keys_values, nothing_hidden)[0]
        return _Encoding(tokens, pooled, pixels.grid, pixels.size, pixels.masks, keys_values=keys_values[0])

    def _encode_batch(self, batch: list[_Pixels]) -> list[_Encoding]:
        """Vision forward with out-of-memory recovery: halve the batch, down to one image."""
        try:
            return self._forward(batch)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                raise DeviceError(
                    f"out of memory encoding a single image of {len(batch[0].patches)} patches on "
                    f"{self.device} in {str(self.dtype).removeprefix('torch.')}: lower max_num_patches "
                    "(--masc-max-patches), use bfloat16, or free device memory"
                ) from None
            half = len(batch) // 2
            self.batch_size = max(1, min(self.batch_size, half))
            warnings.warn(f"out of memory at batch {len(batch)}; retrying with batches of {half}", RuntimeWarning, stacklevel=2)
            return self._encode_batch(batch[:half]) + self._encode_batch(batch[half:])

    def _cache_put(self, key: tuple, encoding: _Encoding) -> None:
        if self._cache_size <= 0:
            return
        # Own copies: the batch's views would keep the whole batch tensor alive.
        self._image_cache[key] = _Encoding(
            encoding.tokens.clone(), encoding.pooled.clone(), encoding.grid, encoding.size, encoding.masks,
        )
        self._image_cache.move_to_end(key)
        while len(self._image_cache) > self._cache_size:
            self._image_cache.popitem(last=False)


@contextlib.contextmanager
def _intra_op_threads(count: Optional[int]):
    """Set torch's intra-op thread count for the block (``None``: leave it), then restore it."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _ScoreRun:
    """One ``score_many`` call: the plan, the pipeline and the per-sample scoring."""

    def __init__(self, masc: MaSC, samples: list[Sample], progress: Optional[ProgressCallback], errors: str):
        self.masc = masc
        self.samples = samples
        self.progress = progress
        self.errors = errors
        self.results: list[Any] = [None] * len(samples)
        self.grid_weights: dict[tuple, torch.Tensor] = {}  # (image key, mask key) -> (Hp * Wp,)
        self.keys_values: dict[tuple, torch.Tensor] = {}  # output image key -> (Hp * Wp, 2D), until released

    def run(self) -> list[Any]:
        masc = self.masc
        texts = self._plan_texts()
        self.text_embedding = masc.encode_texts(texts)
        self._plan_images()
        started = time.perf_counter()
        lookahead = 2 * masc.batch_size * masc.encode_streams + masc.num_workers
        with ThreadPoolExecutor(max_workers=masc.num_workers, thread_name_prefix="masc-read") as pool, \
                ThreadPoolExecutor(max_workers=masc.encode_streams, thread_name_prefix="masc-encode") as encoder, \
                _intra_op_threads(masc.stream_threads):
            # A bounded window of images is read ahead while the vision tower runs; on CPU,
            # several single-threaded forwards run side by side (faster there than one
            # multi-threaded forward), and finished batches are scored in order.
            pending = deque()
            upcoming = iter(self.to_encode)
            for key in itertools.islice(upcoming, lookahead):
                pending.append((key, pool.submit(self._prepare_safely, key)))
            in_flight: deque = deque()
            done = 0
            batch: list[tuple[tuple, _Pixels]] = []
            while pending or batch or in_flight:
                if pending:
                    key, future = pending.popleft()
                    for next_key in itertools.islice(upcoming, 1):
                        pending.append((next_key, pool.submit(self._prepare_safely, next_key)))
                    pixels = future.result()
                    if isinstance(pixels, Exception):
                        self._fail_key(key, pixels)
                    else:
                        batch.append((key, pixels))
                if batch and (len(batch) >= masc.batch_size or not pending):
                    in_flight.append((batch, encoder.submit(self._encode_in_stream, batch)))
                    batch = []
                while in_flight and (len(in_flight) >= masc.encode_streams or not pending):
                    finished, encodings = in_flight.popleft()
                    done += self._finish_batch(finished, encodings.result())
                    if self.progress:
                        self.progress(done, len(self.to_encode))
        masc.stats.encode_seconds += time.perf_counter() - started
        for index, result in enumerate(self.results):
            if result is None:  # every sample is scored or holds its error by now; guard the invariant
                raise MaSCError(f"sample {index} was never scored (internal error)")
        return self.results

    # -- planning

    def _plan_texts(self) -> list[str]:
        self.stripped = []
        self.distractor_texts = []
        texts = []
        for sample in self.samples:
            # A blank subject strips nothing and keeps the prompt as given, as the paper's code does.
            subject = sample.subject if sample.subject and sample.subject.strip() else None
            stripped = strip_subject(sample.prompt, subject)
            self.stripped.append(stripped)
            distractors = [strip_subject(d, subject).text for d in sample.distractors]
            self.distractor_texts.append(distractors)
            texts += [stripped.text, sample.prompt, *distractors]
        return list(dict.fromkeys(texts))

    def _plan_images(self) -> None:
        """Order images so each reference is encoded next to its outputs, and count their uses."""
        masc = self.masc
        self.ref_keys = [source_key(s.ref_image) for s in self.samples]
        self.out_keys = [source_key(s.out_image) for s in self.samples]
        self.ref_mask_keys = [source_key(s.ref_mask) for s in self.samples]
        self.out_mask_keys = [source_key(s.out_mask) for s in self.samples]
        first_seen: dict[tuple, int] = {}
        for index, key in enumerate(self.ref_keys):
            first_seen.setdefault(key, index)
        order = sorted(range(len(self.samples)), key=lambda i: (first_seen[self.ref_keys[i]], i))
        self.sources: dict[tuple, tuple[Any, str]] = {}
        self.masks_of: dict[tuple, dict[tuple, tuple[Any, str]]] = defaultdict(dict)
        self.waiting: dict[tuple, list[int]] = defaultdict(list)  # image key -> samples using it
        self.remaining: dict[tuple, int] = defaultdict(int)
        for index in order:
            sample = self.samples[index]
            for key, image, mask_key, mask, what in (
                (self.ref_keys[index], sample.ref_image, self.ref_mask_keys[index], sample.ref_mask, "reference"),
                (self.out_keys[index], sample.out_image, self.out_mask_keys[index], sample.out_mask, "output"),
            ):
                self.sources.setdefault(key, (image, f"{what} image"))
                self.masks_of[key].setdefault(mask_key, (mask, f"{what} mask"))
                self.waiting[key].append(index)
                self.remaining[key] += 1
        self.encoded: dict[tuple, _Encoding] = {}
        self.to_encode = []
        for key in self.sources:
            cached = masc._image_cache.get(key)
            if cached is not None and all(m in cached.masks for m in self.masks_of[key]):
                masc._image_cache.move_to_end(key)
                self.encoded[key] = cached
                masc.stats.images_cached += 1
            else:
                self.to_encode.append(key)
        self.is_reference = set(self.ref_keys)
        self.is_output = set(self.out_keys)
        ready = {i for key in self.encoded for i in self.waiting[key]}
        self._score_ready(sorted(ready))

    def _prepare_safely(self, key: tuple) -> Any:
        image, what = self.sources[key]
        masks = [(mask_key, mask, mask_what) for mask_key, (mask, mask_what) in self.masks_of[key].items()]
        try:
            return self.masc._prepare(image, what, masks)
        except InputError as error:
            return error

    def _fail_key(self, key: tuple, error: Exception) -> None:
        if self.errors == "raise":
            raise error
        for index in self.waiting[key]:
            if self.results[index] is None:
                self.results[index] = error
                self._release(index)

    # -- encoding and scoring

    def _encode_in_stream(self, batch: list[tuple[tuple, _Pixels]]) -> list[_Encoding]:
        """Encoder thread: one vision forward (inference mode is per thread)."""
        with torch.inference_mode():
            return self.masc._encode_batch([pixels for _, pixels in batch])

    def _finish_batch(self, batch: list[tuple[tuple, _Pixels]], encodings: list[_Encoding]) -> int:
        """Main thread: keep a batch's encodings, cache references, score what became ready."""
        masc = self.masc
        masc.stats.images_encoded += len(batch)
        candidates = set()
        for (key, _), encoding in zip(batch, encodings):
            # Keys and values serve only an output's background pool: kept for outputs, per run.
            if encoding.keys_values is not None and key in self.is_output:
                self.keys_values[key] = encoding.keys_values
            encoding.keys_values = None
            self.encoded[key] = encoding
            if key in self.is_reference:
                masc._cache_put(key, encoding)
            candidates.update(self.waiting[key])
        self._score_ready(sorted(candidates))
        return len(batch)

    def _score_ready(self, candidates: list[int]) -> None:
        ready = [
            i for i in candidates
            if self.results[i] is None and self.ref_keys[i] in self.encoded and self.out_keys[i] in self.encoded
        ]
        for index in ready:
            masks = (self.encoded[self.ref_keys[index]].masks[self.ref_mask_keys[index]],
                     self.encoded[self.out_keys[index]].masks[self.out_mask_keys[index]])
            error = next((mask for mask in masks if isinstance(mask, InputError)), None)
            if error is not None:
                if self.errors == "raise":
                    raise error
                self.results[index] = error
                self._release(index)
        ready = [i for i in ready if self.results[i] is None]
        if not ready:
            return
        for index, score in zip(ready, self._score_group(ready)):
            self.results[index] = score
            self._release(index)

    def _release(self, index: int) -> None:
        """Sample ``index`` is done: drop the encodings (and grid weights) no pending sample needs."""
        for key in (self.ref_keys[index], self.out_keys[index]):
            self.remaining[key] -= 1
            if self.remaining[key] == 0:
                self.encoded.pop(key, None)
                self.keys_values.pop(key, None)
                for mask_key in self.masks_of[key]:
                    self.grid_weights.pop((key, mask_key), None)

    def _background_pools(self, ready: list[int]) -> dict[tuple, tuple[torch.Tensor, torch.Tensor]]:
        """Pooled background embedding ``(D,)`` (on the device) and grid weights ``(N,)`` (on
        the CPU) per (output, output mask) pair, pooled in batches. Keys and values the
        forward already projected are reused; the others are projected here."""
        masc = self.masc
        pairs = list(dict.fromkeys((self.out_keys[i], self.out_mask_keys[i]) for i in ready))
        pools = {}
        head = masc.model.vision_model.head
        chunk_size = max(masc.batch_size, 8)
        for start in range(0, len(pairs), chunk_size):
            chunk = pairs[start:start + chunk_size]
            encodings = [self.encoded[out_key] for out_key, _ in chunk]
            longest = max(len(e.tokens) for e in encodings)
            hidden = torch.ones(len(chunk), longest, dtype=torch.bool)
            weights_list, projected = [], []
            for row, ((out_key, mask_key), encoding) in enumerate(zip(chunk, encodings)):
                weights = self._grid_weights(out_key, mask_key)
                weights_list.append(weights)
                hidden[row, :len(encoding.tokens)] = functional.background_hidden(weights, masc.fg_threshold)
                if out_key not in self.keys_values:
                    self.keys_values[out_key] = functional.pool_keys_values(head, encoding.tokens[None])[0]
                projected.append(self.keys_values[out_key])
            # (B, L, 2D), zero-padded; the padding is hidden
            keys_values = torch.nn.utils.rnn.pad_sequence(projected, batch_first=True) if len(projected) > 1 else projected[0][None]
            pooled = functional.attention_pool_projected(head, keys_values, hidden.to(masc.device)).to(torch.float32)
            for row, pair in enumerate(chunk):
                pools[pair] = (pooled[row], weights_list[row])
        return pools

    def _grid_weights(self, image_key: tuple, mask_key: tuple) -> torch.Tensor:
        """``(Hp * Wp,)`` mask weights on the image's patch grid, resized once per (image, mask):
        a reference shared by many outputs is not resized again for each."""
        key = (image_key, mask_key)
        if key not in self.grid_weights:
            encoding = self.encoded[image_key]
            self.grid_weights[key] = functional.mask_to_grid(torch.from_numpy(encoding.masks[mask_key][0]), encoding.grid)
        return self.grid_weights[key]

    def _score_group(self, ready: list[int]) -> list[Score]:
        """Scores of samples whose images are encoded. The device work of the whole group is
        queued first and read back in two transfers, so a GPU never waits on each sample."""
        masc = self.masc
        pools = self._background_pools(ready)
        left: list[torch.Tensor] = []   # (D,) float32 pairs whose cosines are needed
        right: list[torch.Tensor] = []
        matches: list[torch.Tensor] = []  # best-match cosines of each sample's foreground rows
        plans = []
        for index in ready:
            sample = self.samples[index]
            ref = self.encoded[self.ref_keys[index]]
            out = self.encoded[self.out_keys[index]]
            ref_weights = self._grid_weights(self.ref_keys[index], self.ref_mask_keys[index])
            # Only foreground rows count for CP (and its map), so only they are compared.
            foreground = ref_weights > masc.fg_threshold
            rows = torch.nonzero(foreground).squeeze(1)
            if len(rows):
                matches.append(functional.best_match_cosine(
                    ref.unit.index_select(0, rows.to(ref.unit.device)), out.unit, normalized=True))
            pooled, out_weights = pools[(self.out_keys[index], self.out_mask_keys[index])]
            first = len(left)
            for text in (self.stripped[index].text, *self.distractor_texts[index]):
                left.append(pooled)
                right.append(self.text_embedding[text])
            left += [ref.pooled.to(torch.float32), out.pooled.to(torch.float32)]
            right += [out.pooled.to(torch.float32), self.text_embedding[sample.prompt]]
            plans.append((index, ref, out, ref_weights, foreground, out_weights, first))
        cosines = functional.cosine(torch.stack(left), torch.stack(right)).tolist()
        best = torch.cat(matches).cpu() if matches else torch.empty(0)
        scores, used = [], 0
        for index, ref, out, ref_weights, foreground, out_weights, first in plans:
            count = int(foreground.sum())
            concept_map = torch.full((foreground.numel(),), torch.nan)
            concept_map[foreground] = best[used:used + count]
            used += count
            scores.append(self._make_score(index, ref, out, ref_weights, out_weights, concept_map, cosines, first))
        return scores

    def _make_score(self, index, ref, out, ref_weights, out_weights, concept_map, cosines, first) -> Score:
        masc = self.masc
        sample = self.samples[index]
        stripped = self.stripped[index]
        prompt = cosines[first]
        distractors = dict(zip(sample.distractors, cosines[first + 1: first + 1 + len(sample.distractors)]))
        global_concept, global_prompt = cosines[first + 1 + len(sample.distractors): first + 3 + len(sample.distractors)]
        margin = prompt - max(distractors.values()) if distractors else math.nan
        out_hidden = functional.background_hidden(out_weights, masc.fg_threshold)
        extras = {
            "prompt_text": stripped.text,
            "subject_found": stripped.subject_found,
            "prompt_stripped": stripped.text.split() != sample.prompt.split(),
            "prompt_truncated": any(
                masc.truncated(text) for text in (stripped.text, sample.prompt, *self.distractor_texts[index])
            ),
            "ref_grid": list(ref.grid),
            "out_grid": list(out.grid),
            "ref_patches": int(ref_weights.numel()),
            "ref_foreground_patches": int((ref_weights > masc.fg_threshold).sum()),
            "ref_foreground_fraction": float(ref_weights.mean()),
            "out_patches": int(out_weights.numel()),
            "out_foreground_patches": int(out_hidden.sum()),
            "out_foreground_fraction": float(out_weights.mean()),
            "background_patches": int((~out_hidden).sum()),
            "ref_mask_reading": ref.masks[self.ref_mask_keys[index]][1].as_dict(),
            "out_mask_reading": out.masks[self.out_mask_keys[index]][1].as_dict(),
        }
        return Score(
            concept=functional.concept_score(concept_map, ref_weights, masc.fg_threshold),
            prompt=prompt,
            global_concept=global_concept,
            global_prompt=global_prompt,
            prompt_margin=margin,
            distractor_prompts=distractors,
            extras=extras,
            concept_map=concept_map.reshape(ref.grid).numpy(),
        )
