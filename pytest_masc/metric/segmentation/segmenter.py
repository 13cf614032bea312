"""The backend-independent :class:`Segmenter`: input checks, batching and the LRU mask cache."""
from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from pytest_masc.defaults import segmenter_threshold
from pytest_masc.errors import InputError

from ..inputs import ImageInput, read_image, source_key
from .checkpoints import MODEL_NAMES

if TYPE_CHECKING:  # torch is imported when a segmenter is loaded
    import torch

class TextTruncatedWarning(UserWarning):
    """A segmentation prompt is longer than the text encoder's context and was cut to fit."""


@dataclass
class SegmentStats:
    """Work done by one segmenter, cumulative over calls."""

    segmented: int = 0       # (image, text) pairs run through the model
    cached: int = 0          # pairs answered from the cache (or repeated within a call)
    images_encoded: int = 0  # vision-tower forwards, one per distinct image needing work
    texts_encoded: int = 0   # text-tower forwards, one per distinct text
    seconds: float = 0.0     # wall time spent in segment_many

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def foreground_fraction(mask: np.ndarray) -> float:
    """Share of foreground pixels of an ``HxW`` mask, in ``[0, 1]`` (``nan`` for an empty array)."""
    mask = np.asarray(mask)
    return float(np.count_nonzero(mask) / mask.size) if mask.size else float("nan")


def image_key(source: ImageInput) -> tuple:
    """Identity of an image for the cache: resolved path, size and mtime for files, a hash of
    the pixels for PIL images and arrays (the scorer's :func:`~pytest_masc.metric.inputs.source_key`,
    so a mask and an encoding of one image share its key). Equal keys mean equal pixels."""
    return source_key(Path(source).expanduser() if isinstance(source, (str, os.PathLike)) else source)



def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InputError(f"segmentation prompts must be strings, got {type(text).__name__} {text!r}")
    if not text.strip():
        raise InputError("a segmentation prompt is empty: give the subject, e.g. 'dog'")
    return text



class Segmenter:
    """A loaded text-prompted segmenter. Build one with :func:`load_segmenter`
    (or :meth:`Segmenter.from_pretrained`, the same function).

    Attributes ``kind``, ``model``, ``revision`` and ``threshold`` (and ``mask_threshold``
    for SAM3) say which segmenter made a mask; :attr:`settings` gathers them.
    """

    kind: str = ""

    def __init__(
        self,
        network: Any,
        tokenizer: Any,
        *,
        device: "torch.device",
        dtype: "torch.dtype",
        model_id: str,
        revision: Optional[str],
        threshold: Optional[float],
        batch_size: Optional[int],
        cache_size: int,
    ) -> None:
        self.network = network
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.model = model_id
        self.revision = revision
        self._threshold = segmenter_threshold(self.kind, threshold)
        self.batch_size = int(batch_size) if batch_size else (8 if device.type == "cuda" else 2)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = int(cache_size)
        self.stats = SegmentStats()
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._text_features: OrderedDict[str, Any] = OrderedDict()
        self.text_length = self._text_length()

    # from_pretrained = load_segmenter, attached by the package's __init__ (loading imports this module)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def settings(self) -> dict[str, Any]:
        """What made a mask: kind, model, revision, thresholds and dtype (JSON-friendly)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "revision": self.revision,
            "threshold": self.threshold,
            **self._extra_settings(),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def segment(self, image: ImageInput, text: str) -> np.ndarray:
        """The ``HxW`` bool foreground mask of ``text`` in ``image`` (read-only, maybe cached)."""
        return self.segment_many([image], [text])[0]

    def segment_many(self, images: Sequence[ImageInput], texts: Union[str, Sequence[str]]) -> list[np.ndarray]:
        """Masks for the pairs ``(images[i], texts[i])``, or for every image with one text.

        Each distinct image is read and encoded once, each distinct text encoded once, and
        each distinct (image, text) pair decoded once, in batches of ``batch_size``; pairs
        already in the cache cost nothing. Returns one read-only ``HxW`` bool array per
        pair, at the image's own size.

        Raises:
            InputError: an unreadable image, a non-string or empty text, or lists of
                different lengths.
        """
        import torch

        started = time.perf_counter()
        images = list(images)
        texts = [texts] * len(images) if isinstance(texts, str) else list(texts)
        if len(images) != len(texts):
            raise InputError(f"segment_many got {len(images)} images but {len(texts)} texts")
        texts = [check_text(text) for text in texts]
        settings_key = tuple(self.settings.items())
        keys = [(settings_key, image_key(image), text) for image, text in zip(images, texts)]
        results: list[Optional[np.ndarray]] = [None] * len(keys)
        todo: dict[tuple, list[int]] = {}
        for index, key in enumerate(keys):
            cached = self._masks.get(key)
            if cached is not None:
                self._masks.move_to_end(key)
                results[index] = cached
                self.stats.cached += 1
            elif key in todo:
                todo[key].append(index)
                self.stats.cached += 1
            else:
                todo[key] = [index]
        if todo:
            # group the pairs by image so each image is read and encoded once
            by_image: OrderedDict[tuple, list[tuple]] = OrderedDict()
            source_of: dict[tuple, ImageInput] = {}
            for key, indices in todo.items():
                by_image.setdefault(key[1], []).append(key)
                source_of.setdefault(key[1], images[indices[0]])
            self._ensure_text_features(sorted({key[2] for key in todo}))
            image_keys = list(by_image)
            with torch.inference_mode():
                for start in range(0, len(image_keys), self.batch_size):
                    chunk = image_keys[start:start + self.batch_size]
                    pixels = [read_image(source_of[k]) for k in chunk]
                    pairs = [(slot, key) for slot, k in enumerate(chunk) for key in by_image[k]]
                    masks = self._segment_chunk(pixels, [(slot, key[2]) for slot, key in pairs])
                    self.stats.images_encoded += len(chunk)
                    self.stats.segmented += len(pairs)
                    for (_, key), mask in zip(pairs, masks):
                        mask.setflags(write=False)
                        for index in todo[key]:
                            results[index] = mask
                        self._remember(key, mask)
        self.stats.seconds += time.perf_counter() - started
        return results  # type: ignore[return-value]

    def clear_cache(self) -> None:
        """Forget cached masks and text features (the stats are kept)."""
        self._masks.clear()
        self._text_features.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings.items())}, device={str(self.device)!r})"

    # -------------------------------------------------------------- shared machinery

    def _remember(self, key: tuple, mask: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self._masks[key] = mask
        while len(self._masks) > self.cache_size:
            self._masks.popitem(last=False)

    def _tokenize(self, texts: list[str]) -> dict[str, "torch.Tensor"]:
        """Token ids and attention masks ``(len(texts), text_length)``, padded to the text
        encoder's full length (as the SAM3 processor does), so a text's tokens never depend
        on the batch it is in; longer texts are cut with a :class:`TextTruncatedWarning`."""
        for text in texts:
            count = len(self.tokenizer(text)["input_ids"])
            if count > self.text_length:
                warnings.warn(
                    f"segmentation prompt {text!r} has {count} tokens; the {MODEL_NAMES[self.kind]} text "
                    f"encoder takes {self.text_length}: it was truncated",
                    TextTruncatedWarning,
                    stacklevel=4,
                )
        encoded = self.tokenizer(
            texts, padding="max_length", max_length=self.text_length, truncation=True, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"].to(self.device), "attention_mask": encoded["attention_mask"].to(self.device)}

    def _ensure_text_features(self, texts: list[str]) -> None:
        import torch

        missing = [text for text in texts if text not in self._text_features]
        with torch.inference_mode():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                for text, features in zip(chunk, self._encode_texts(chunk)):
                    self._text_features[text] = features
                self.stats.texts_encoded += len(chunk)
        for text in texts:
            self._text_features.move_to_end(text)
        while len(self._text_features) > max(4096, len(texts)):
            self._text_features.popitem(last=False)

    # -------------------------------------------------------------- per backend

    def _text_length(self) -> int:
        raise NotImplementedError

    def _extra_settings(self) -> dict[str, Any]:
        return {}

    def _encode_texts(self, texts: list[str]) -> list[Any]:
        """Per-text features, on the device."""
        raise NotImplementedError

    def _segment_chunk(self, images: list[np.ndarray], pairs: list[tuple[int, str]]) -> list[np.ndarray]:
        """Masks for ``pairs`` of (index into ``images``, text): encode the images once, then
        decode the pairs in batches."""
        raise NotImplementedError
