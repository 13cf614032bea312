"""The two towers as encoders: images (read, preprocess, vision forward with out-of-memory
recovery) and texts (tokenise, pooled embedding, cached), plus the cache of reference
encodings that outlives one ``score_many`` call.

Each encoder owns its policy and state; the pipeline (:mod:`pytest_masc.metric.pipeline`)
only calls their public methods.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from . import functional
from ..defaults import DEFAULT_THRESHOLD
from ..errors import DeviceError, InputError, PromptTruncatedWarning
from .inputs import describe, load_image, read_mask
from .loading import fixed_resolution
from .preprocess import fast_preprocess_settings, image_to_patches, naflex_patches, patch_normalisation, resized_patches
from .vision import OneImageVisionForward


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


#: (mask key, mask source, what it is, for messages): a mask to read with its image
MaskRequest = tuple[tuple, Any, str]


@dataclass
class Pixels:
    """One preprocessed image: ``patches (N, 3 * P * P)`` (uint8 to normalise on the device,
    or float32 from the processor) and its grid ``(Hp, Wp)``, for NaFlex and fixed-resolution
    towers alike (see :mod:`pytest_masc.metric.preprocess`)."""

    patches: np.ndarray
    grid: tuple[int, int]
    size: tuple[int, int]  # (height, width) of the image as read
    masks: dict[tuple, Any] = field(default_factory=dict)  # mask key -> (weights (H, W), MaskReading) or its InputError


@dataclass
class Encoding:
    """One image through the vision tower."""

    tokens: torch.Tensor  # (Hp * Wp, D), model dtype, on the device
    pooled: torch.Tensor  # (D,) the head's pooled embedding over all patches
    grid: tuple[int, int]
    size: tuple[int, int]
    masks: dict[tuple, Any] = field(default_factory=dict)  # mask key -> (weights (H, W), MaskReading)
    # (Hp * Wp, 2 * D) the pooling head's keys and values, projected from this image's tokens
    # alone; a run moves them to its own table for the outputs' background pools.
    keys_values: Optional[torch.Tensor] = None
    _unit: Optional[torch.Tensor] = None

    @property
    def unit(self) -> torch.Tensor:
        """``(Hp * Wp, D)`` float32 unit-length tokens, computed once."""
        if self._unit is None:
            self._unit = functional.unit_tokens(self.tokens)
        return self._unit

    def detached_copy(self) -> "Encoding":
        """Own copies of tokens and pooled embedding (a batch's views would keep the whole
        batch tensor alive), without keys and values: what a cache keeps."""
        return Encoding(self.tokens.clone(), self.pooled.clone(), self.grid, self.size, self.masks)


class TextEncoder:
    """Pooled text embeddings, each distinct text encoded once per instance.

    Texts go through the tower in forwards of exactly ``batch_size`` rows of ``text_length``
    tokens (the last forward filled up with empty texts), so a text's embedding is the same
    floats whatever texts it is encoded with. Texts longer than the text tower's context are
    truncated with a :class:`~pytest_masc.errors.PromptTruncatedWarning`.
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: torch.device, text_length: int,
                 batch_size: int, stats: EncodeStats) -> None:
        self.model = model  # a SigLIP2 model; its text_model is read when a text is encoded
        self.tokenizer = tokenizer
        self.device = device
        self.text_length = int(text_length)
        self.batch_size = int(batch_size)
        self.stats = stats
        self._embeddings: dict[str, torch.Tensor] = {}
        self._truncated: set[str] = set()

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``(D,)`` float32 pooled embedding (on the device) of each text, by text."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._embeddings]
        self.stats.texts_cached += len(set(texts)) - len(missing)
        if missing:
            with torch.inference_mode():
                self._encode_new(missing)
        return {text: self._embeddings[text] for text in texts}

    def truncated(self, text: str) -> bool:
        """Whether ``text`` was longer than the text tower's context and got truncated."""
        return text in self._truncated

    def clear(self) -> None:
        self._embeddings.clear()
        self._truncated.clear()

    def _encode_new(self, texts: list[str]) -> None:
        lengths = self.tokenizer(texts, truncation=False, padding=False)["input_ids"]
        for text, ids in zip(texts, lengths):
            if len(ids) > self.text_length:
                self._truncated.add(text)
                warnings.warn(
                    f"prompt {text!r} is {len(ids)} tokens long; the text tower reads "
                    f"{self.text_length}, so it was truncated",
                    PromptTruncatedWarning,
                    stacklevel=5,
                )
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            filled = chunk + [""] * (self.batch_size - len(chunk))  # fixed shape: see the class docstring
            input_ids = self.tokenizer(
                filled, padding="max_length", truncation=True, max_length=self.text_length, return_tensors="pt"
            )["input_ids"].to(self.device)
            pooled = self.model.text_model(input_ids=input_ids).pooler_output.to(torch.float32)
            for text, row in zip(chunk, pooled):
                self._embeddings[text] = row
        self.stats.texts_encoded += len(texts)


class ImageEncoder:
    """Reads and preprocesses images (any thread) and runs the vision tower on batches.

    Args:
        vision_model: the vision tower (``model.vision_model``): SigLIP2 NaFlex, or a
            fixed-resolution SigLIP one (its images resized to its square).
        image_processor: its PIL image processor; used directly only when it is configured
            unlike :mod:`~pytest_masc.metric.preprocess` (bilinear resizing).
        device, dtype: where and in what the tower runs.
        max_num_patches: the NaFlex patch budget per image (unused at fixed resolution).
        batch_size: images per forward; lowered for good after an out-of-memory batch.
        one_image_forward: run every image through
            :class:`~pytest_masc.metric.vision.OneImageVisionForward` (a batch image by
            image) instead of Transformers' padded forward.

    An image's encoding does not depend on the images batched with it: Transformers' forward
    pads every NaFlex image to the patch budget (``token_slots``), not to the batch's longest,
    and the global pool of every path is
    :func:`~pytest_masc.metric.functional.attention_pool_projected` over the image's own keys
    and values in those slots.
    """

    def __init__(self, vision_model: Any, image_processor: Any, *, device: torch.device, dtype: torch.dtype,
                 max_num_patches: int, batch_size: int, one_image_forward: bool,
                 fg_threshold: float = DEFAULT_THRESHOLD) -> None:
        self.vision_model = vision_model
        self.fg_threshold = fg_threshold  # masks are read for a foreground cut here (inputs.read_mask)
        self.image_processor = image_processor
        self.device = device
        self.dtype = dtype
        self.max_num_patches = int(max_num_patches)
        self.batch_size = int(batch_size)
        self.one_image_forward = OneImageVisionForward(vision_model) if one_image_forward else None
        self.fixed_size = fixed_resolution(vision_model.config)  # (H, W); None: NaFlex
        self.patch_size = int(vision_model.config.patch_size)
        # Rows every image is laid out in wherever images are padded together: the budget
        # (NaFlex), or the one grid's patches (fixed resolution).
        self.token_slots = (self.max_num_patches if self.fixed_size is None
                            else (self.fixed_size[0] // self.patch_size) * (self.fixed_size[1] // self.patch_size))
        self.preprocess_settings = fast_preprocess_settings(
            image_processor, self.patch_size if self.fixed_size is not None else None
        )
        self._normalisation = (
            tuple(torch.from_numpy(a).to(device) for a in patch_normalisation(**self.preprocess_settings))
            if self.preprocess_settings is not None else None
        )

    def clear(self) -> None:
        """Drop the one-image forward's kept position embeddings."""
        if self.one_image_forward is not None:
            self.one_image_forward.clear()

    # -- reading (worker threads)

    def prepare(self, source: Any, what: str, masks: Sequence[MaskRequest]) -> Pixels:
        """Read an image and its masks, resize and patchify the image.

        A bad mask fails only the samples that use it, not every sample of its image: its
        :class:`InputError` is kept in the mask's place. A bad image raises ``InputError``.
        """
        image = load_image(source, what)
        if self.preprocess_settings is None:  # a processor configured unlike ours: let it do the work
            patches, grid = self._processor_patches(image)
        elif self.fixed_size is None:
            patches, grid = naflex_patches(
                image, max_num_patches=self.max_num_patches, normalise=False, **self.preprocess_settings
            )
        else:
            patches, grid = resized_patches(image, self.fixed_size, normalise=False, **self.preprocess_settings)
        size = (image.height, image.width)
        loaded = {mask_key: _mask_or_error(mask_source, mask_what, source, size, self.fg_threshold)
                  for mask_key, mask_source, mask_what in masks}
        return Pixels(patches, grid, size, loaded)

    def _processor_patches(self, image: Any) -> tuple[np.ndarray, tuple[int, int]]:
        """float32 normalised patches and their grid, as the image processor makes them."""
        if self.fixed_size is not None:
            pixel_values = np.asarray(self.image_processor(images=[image], return_tensors="np")["pixel_values"][0],
                                      dtype=np.float32)  # (3, H, W)
            grid = (pixel_values.shape[1] // self.patch_size, pixel_values.shape[2] // self.patch_size)
            return image_to_patches(pixel_values, self.patch_size), grid
        features = self.image_processor(images=[image], max_num_patches=self.max_num_patches, return_tensors="np")
        count = int(features["pixel_attention_mask"][0].sum())
        grid = tuple(int(x) for x in features["spatial_shapes"][0])
        return np.ascontiguousarray(features["pixel_values"][0, :count], dtype=np.float32), grid

    # -- the vision tower

    def encode(self, batch: list[Pixels]) -> list[Encoding]:
        """:meth:`forward` with out-of-memory recovery: halve the batch, down to one image."""
        try:
            return self.forward(batch)
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
            return self.encode(batch[:half]) + self.encode(batch[half:])

    def forward(self, batch: list[Pixels]) -> list[Encoding]:
        """The batch's encodings: one vision forward (or one per image with the one-image
        forward), then each image's keys and values and its global pool."""
        if self.one_image_forward is not None:
            hidden = [self._forward_one(pixels)[None] for pixels in batch]
        else:
            hidden = [self._forward_fixed(batch) if self.fixed_size is not None else self._forward_padded(batch)]
        tokens = [image[:len(pixels.patches)] for image, pixels in zip((i for f in hidden for i in f), batch)]
        head = self.vision_model.head
        # Per image, from its own tokens: keys and values for the pools, and the unit-length
        # tokens CP compares (computed here rather than on the thread that scores).
        keys_values = [functional.pool_keys_values(head, image[None])[0] for image in tokens]
        padded, own = functional.pad_rows(keys_values, max(self.token_slots, *(len(t) for t in tokens)))
        pooled = functional.attention_pool_projected(head, padded, ~own)
        return [
            Encoding(image, pooled[row], p.grid, p.size, p.masks, keys_values=keys_values[row],
                     _unit=functional.unit_tokens(image))
            for row, (image, p) in enumerate(zip(tokens, batch))
        ]

    def _forward_padded(self, batch: list[Pixels]) -> torch.Tensor:
        """Transformers' NaFlex forward, every image padded to the patch budget: ``(B, L, D)``."""
        slots = max(self.token_slots, *(len(p.patches) for p in batch))
        raw = batch[0].patches.dtype == np.uint8  # normalised on the device, after the copy
        pixel_values = torch.zeros(len(batch), slots, batch[0].patches.shape[1],
                                   dtype=torch.uint8 if raw else torch.float32)
        attention = torch.zeros(len(batch), slots, dtype=torch.long)
        for row, pixels in enumerate(batch):
            pixel_values[row, : len(pixels.patches)] = torch.from_numpy(pixels.patches)
            attention[row, : len(pixels.patches)] = 1
        shapes = torch.tensor([p.grid for p in batch], dtype=torch.long)
        if self.device.type == "cuda":  # an asynchronous copy needs page-locked memory
            pixel_values = pixel_values.pin_memory()
        pixel_values = self._normalised(pixel_values.to(self.device, non_blocking=True))
        return self.vision_model(
            pixel_values=pixel_values.to(self.dtype),
            pixel_attention_mask=attention.to(self.device),
            spatial_shapes=shapes.to(self.device),
        ).last_hidden_state

    def _forward_fixed(self, batch: list[Pixels]) -> torch.Tensor:
        """A fixed-resolution forward: the patches of every image (one grid) reassembled into
        ``(B, 3, H, W)`` images, which the tower's convolution cuts into the same patches."""
        patches = torch.stack([torch.from_numpy(p.patches) for p in batch])  # (B, N, P * P * 3)
        if self.device.type == "cuda":  # an asynchronous copy needs page-locked memory
            patches = patches.pin_memory()
        patches = self._normalised(patches.to(self.device, non_blocking=True))
        (rows, columns), side = batch[0].grid, self.patch_size
        pixel_values = (
            patches.reshape(len(batch), rows, columns, side, side, 3)
            .permute(0, 5, 1, 3, 2, 4)
            .reshape(len(batch), 3, rows * side, columns * side)
        )
        return self.vision_model(pixel_values=pixel_values.to(self.dtype)).last_hidden_state  # (B, N, D)

    def _normalised(self, patches: torch.Tensor) -> torch.Tensor:
        """uint8 patches (on the device) normalised as the processor does, ``(x / 255 - mean) / std``
        in float32; float patches (already normalised by the processor) unchanged."""
        if patches.dtype != torch.uint8:
            return patches
        scale, offset = self._normalisation
        return patches.to(torch.float32) / scale - offset

    def _forward_one(self, pixels: Pixels) -> torch.Tensor:
        """``(N, D)`` tokens of one image through the one-image forward."""
        patches = self._normalised(torch.from_numpy(pixels.patches).to(self.device))
        return self.one_image_forward(patches.to(self.dtype), pixels.grid)


def _mask_or_error(source: Any, what: str, image_source: Any, size: tuple[int, int], threshold: float) -> Any:
    """``(H, W)`` mask weights with the :class:`~pytest_masc.metric.inputs.MaskReading` that
    says how they were read, or the :class:`InputError` that reading them raised (a mask not
    the size ``(H, W)`` of its image included)."""
    try:
        weights, reading = read_mask(source, what, threshold=threshold)
        if weights.shape != size:
            raise InputError(
                f"{describe(source)}: {what} is {weights.shape[1]}x{weights.shape[0]} "
                f"but its image {describe(image_source)} is {size[1]}x{size[0]}; masks must have "
                "their image's size (width x height)"
            )
    except InputError as error:
        return error
    return weights, reading


class EncodingCache:
    """Least-recently-used encodings of reference images, kept across ``score_many`` calls."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._entries: OrderedDict[tuple, Encoding] = OrderedDict()

    def get(self, key: tuple, mask_keys: Sequence[tuple]) -> Optional[Encoding]:
        """The encoding of image ``key`` when it holds every mask in ``mask_keys``, else ``None``."""
        cached = self._entries.get(key)
        if cached is None or not all(m in cached.masks for m in mask_keys):
            return None
        self._entries.move_to_end(key)
        return cached

    def put(self, key: tuple, encoding: Encoding) -> None:
        if self.capacity <= 0:
            return
        self._entries[key] = encoding.detached_copy()
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def encodings(self) -> list[Encoding]:
        """The kept encodings, least recently used first."""
        return list(self._entries.values())

    def clear(self) -> None:
        self._entries.clear()
