"""Text-prompted foreground masks: the subject's pixels in an image, found from its name.

MaSC needs a foreground mask for every reference and generated image. When a suite does
not ship masks, a segmenter makes them from the subject text, through transformers:

* ``"sam3"``: ``transformers.Sam3Model`` (default checkpoint ``facebook/sam3``). The
  subject text is the concept prompt; the mask is the union of the detected instances
  whose score (instance logit times presence logit, both through a sigmoid) passes
  ``threshold``, each instance mask resized bilinearly to the image and cut at
  ``mask_threshold``. Pre- and post-processing are implemented here, equal to
  transformers' ``Sam3ImageProcessor`` (which needs torchvision) on float32 models:
  ``scripts/compare_sam3_processor.py`` checks that.
* ``"clipseg"``: ``transformers.CLIPSegForImageSegmentation`` (default checkpoint
  ``CIDAS/clipseg-rd64-refined``) with its PIL image processor: the mask is
  ``sigmoid(logits)`` resized bilinearly (``align_corners=False``) to the image and cut
  at ``threshold``.

Licences of the default checkpoints (their own, not this package's):

* ``facebook/sam3``: Meta's SAM License (a custom licence, last updated 2025-11-19: a
  royalty-free licence to use, reproduce, distribute and modify, commercial use included;
  redistributions and derivatives carry a copy of it; subject to trade controls). The hub
  repository is gated: request access on its page, then ``hf auth login``.
* ``CIDAS/clipseg-rd64-refined``: Apache-2.0 on the hub (as stated in the issue; not
  re-checked from this offline environment).

Every segmenter loads like :class:`pytest_masc.MaSC` (hub id or local directory, revision,
``local_files_only``, device and dtype), takes lists of images and texts in one call,
runs each distinct image through the vision tower once and each distinct text through the
text tower once, batches the rest, and keeps an LRU cache of masks so that each distinct
(image, text, settings) is segmented once; :attr:`Segmenter.stats` counts the work.
Masks are ``HxW`` numpy ``bool`` arrays at the image's own size; an image where nothing
is found gets an all-false mask.
"""
from __future__ import annotations

import os
import platform
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from pytest_masc.defaults import DEFAULT_SEGMENTER_MODELS, SEGMENTER_KINDS
from pytest_masc.errors import InputError, ModelLoadError, SegmenterLoadError

from .hub import ExpectedCheckpoint, checkpoint_source, quiet_loading, tokenizer_problem
from .inputs import describe, source_key

if TYPE_CHECKING:  # torch and transformers are imported when a segmenter is loaded
    import torch
    from PIL import Image

#: SAM3: the instance score to keep an instance; CLIPSeg: the foreground probability.
DEFAULT_SEGMENTER_THRESHOLDS = {"sam3": 0.5, "clipseg": 0.5}
#: SAM3: the probability that makes a pixel of a kept instance foreground.
DEFAULT_SAM3_MASK_THRESHOLD = 0.5

_MODEL_TYPES = {"sam3": ("sam3", "sam3_video"), "clipseg": ("clipseg",)}
_MODEL_NAMES = {"sam3": "SAM3", "clipseg": "CLIPSeg"}
_MODEL_CLASSES = {"sam3": "Sam3Model", "clipseg": "CLIPSegForImageSegmentation"}
_HUB_NOTES = {
    "sam3": "facebook/sam3 is gated: accept the SAM License on its hub page and run "
            "`hf auth login` first",
    "clipseg": "CIDAS/clipseg-rd64-refined needs no login",
}


def expected_checkpoint(kind: str) -> ExpectedCheckpoint:
    """What a ``kind`` segmenter checkpoint holds, for :mod:`pytest_masc.metric.hub`'s errors."""
    return ExpectedCheckpoint(
        name=f"{_MODEL_NAMES[kind]} segmenter checkpoint",
        contents=f"a {_MODEL_CLASSES[kind]} saved with save_pretrained: config.json, model.safetensors, "
                 "its CLIP tokenizer files and preprocessor_config.json",
        example=DEFAULT_SEGMENTER_MODELS[kind],
        point_at=f"--masc-segmenter={kind}=/path/to/checkpoint, or load_segmenter({kind!r}, '/path/to/checkpoint') in Python",
        hub_note=_HUB_NOTES[kind],
        error=SegmenterLoadError,
        model_types=_MODEL_TYPES[kind],
    )


ImageInput = Union[str, os.PathLike, "Image.Image", np.ndarray]


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


# ---------------------------------------------------------------------- inputs


def image_key(source: ImageInput) -> tuple:
    """Identity of an image for the cache: resolved path, size and mtime for files, a hash of
    the pixels for PIL images and arrays (the scorer's :func:`~pytest_masc.metric.inputs.source_key`,
    so a mask and an encoding of one image share its key). Equal keys mean equal pixels."""
    return source_key(Path(source).expanduser() if isinstance(source, (str, os.PathLike)) else source)


def _rgb_over_white(image: "Image.Image") -> np.ndarray:
    """``HxWx3`` uint8 RGB; transparent pixels are composited over white, as transformers'
    ``convert_to_rgb`` does before its processors see an image."""
    from PIL import Image

    if image.mode == "RGB":
        return np.asarray(image)
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))


def read_image(source: ImageInput) -> np.ndarray:
    """An image as an ``HxWx3`` uint8 RGB array.

    Accepts a path, a ``PIL.Image`` (any mode) or a uint8 array ``HxW`` (grey), ``HxWx3``
    (RGB) or ``HxWx4`` (RGBA). Alpha is composited over white.

    Raises:
        InputError: missing, unreadable or empty images, arrays of another shape or dtype.
    """
    from PIL import Image, UnidentifiedImageError

    name = describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"{name}: image file not found")
        if path.is_dir():
            raise InputError(f"{name}: image path is a directory, not an image file")
        try:
            with Image.open(path) as opened:
                opened.load()
                array = _rgb_over_white(opened)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise InputError(f"{name}: cannot read the image ({error})") from None
    elif isinstance(source, Image.Image):
        array = _rgb_over_white(source)
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8:
            raise InputError(f"{name}: image arrays must be uint8 (0..255), got {source.dtype}")
        if source.ndim == 2:
            array = np.repeat(source[:, :, None], 3, axis=2)
        elif source.ndim == 3 and source.shape[2] == 3:
            array = source
        elif source.ndim == 3 and source.shape[2] == 4:
            array = _rgb_over_white(Image.fromarray(source, "RGBA"))
        else:
            raise InputError(f"{name}: image arrays must be HxW, HxWx3 or HxWx4")
    else:
        raise InputError(f"{name}: expected an image path, a PIL image or an HxWx3 uint8 array")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name}: the image is empty ({array.shape[1]}x{array.shape[0]})")
    return np.ascontiguousarray(array)


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InputError(f"segmentation prompts must be strings, got {type(text).__name__} {text!r}")
    if not text.strip():
        raise InputError("a segmentation prompt is empty: give the subject, e.g. 'dog'")
    return text


# ---------------------------------------------------------------------- loading


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
    if kind not in SEGMENTER_KINDS:
        raise ValueError(f"segmenter kind {kind!r} is not one of {list(SEGMENTER_KINDS)}")
    if kind != "sam3" and mask_threshold is not None:
        raise ValueError("mask_threshold is a SAM3 setting; CLIPSeg has only threshold")
    from .loading import resolve_device, resolve_dtype  # torch: only once a segmenter loads

    model_id = os.fspath(model) if model is not None else DEFAULT_SEGMENTER_MODELS[kind]
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    expected = expected_checkpoint(kind)
    source = checkpoint_source(model_id, expected, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
    from transformers import AutoConfig

    segmenter_class = Sam3Segmenter if kind == "sam3" else ClipSegSegmenter
    with quiet_loading():
        try:
            config = AutoConfig.from_pretrained(source.path, **source.hub)
        except Exception as error:  # hub, network and file errors come in many types
            raise source.error(error) from error
        model_type = getattr(config, "model_type", None)
        if model_type not in _MODEL_TYPES[kind]:
            raise SegmenterLoadError(
                f"{model_id!r} is a {model_type!r} checkpoint, not {_MODEL_NAMES[kind]}: "
                f"load_segmenter({kind!r}) needs a checkpoint such as {DEFAULT_SEGMENTER_MODELS[kind]} "
                f"(model_type {' or '.join(map(repr, _MODEL_TYPES[kind]))})"
            )
        try:
            parts = segmenter_class._load_parts(source.path, resolved_dtype, source.hub)
        except ModelLoadError:
            raise
        except Exception as error:
            raise source.error(error) from error
    problem = tokenizer_problem(parts["tokenizer"], int(parts["model"].config.text_config.vocab_size))
    if problem:
        raise expected.fail(model_id, f"{problem}. It must hold {expected.contents}.")
    model_obj = parts.pop("model").eval().to(resolved_device)
    model_obj.requires_grad_(False)
    extra = {"mask_threshold": mask_threshold} if kind == "sam3" else {}
    return segmenter_class(
        model_obj,
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


# ---------------------------------------------------------------------- the segmenters


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


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
        threshold = DEFAULT_SEGMENTER_THRESHOLDS[self.kind] if threshold is None else threshold
        self._threshold = _check_probability("threshold", threshold)
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

    from_pretrained = staticmethod(load_segmenter)

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
        texts = [_check_text(text) for text in texts]
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
                    f"segmentation prompt {text!r} has {count} tokens; the {_MODEL_NAMES[self.kind]} text "
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


# ---------------------------------------------------------------------- SAM3


@dataclass(frozen=True)
class Sam3Preprocessing:
    """What ``Sam3ImageProcessor`` does to an image: convert to RGB, resize to
    ``(height, width)`` (bilinear with antialiasing, in uint8 like torchvision), then
    ``(x * rescale_factor - mean) / std`` per channel, in float32."""

    height: int = 1008
    width: int = 1008
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_processor_dict(cls, settings: dict[str, Any], source: str) -> "Sam3Preprocessing":
        """From the image processor's saved settings; anything this code does not implement
        (another resampling, padding, a size without height and width) fails clearly."""
        def unsupported(what: str) -> SegmenterLoadError:
            return SegmenterLoadError(
                f"the SAM3 image processor settings of {source!r} ask for {what}, which "
                "pytest_masc's SAM3 preprocessing does not implement (it does what "
                "Sam3ImageProcessor does by default: bilinear resize to a fixed size, rescale, normalize)"
            )

        resample = settings.get("resample", 2)
        if resample is not None and int(resample) != 2:  # PIL.Image.BILINEAR
            raise unsupported(f"resample={resample}")
        if settings.get("do_pad"):
            raise unsupported("padding (do_pad)")
        if settings.get("do_center_crop"):
            raise unsupported("a center crop")
        size = settings.get("size") or {"height": cls.height, "width": cls.width}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if not (isinstance(size, dict) and "height" in size and "width" in size):
            raise unsupported(f"size={size!r}")
        mean = settings.get("image_mean", cls.image_mean)
        std = settings.get("image_std", cls.image_std)
        mean = (float(mean),) * 3 if isinstance(mean, (int, float)) else tuple(map(float, mean))
        std = (float(std),) * 3 if isinstance(std, (int, float)) else tuple(map(float, std))
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            rescale_factor=float(settings.get("rescale_factor", 1 / 255)),
            image_mean=mean,
            image_std=std,
            do_resize=bool(settings.get("do_resize", True)),
            do_rescale=bool(settings.get("do_rescale", True)),
            do_normalize=bool(settings.get("do_normalize", True)),
        )


def _native_uint8_bilinear_on_cpu() -> bool:
    """Whether torchvision resizes uint8 images on this CPU without converting to float
    (it does on AVX2, AVX512 and ARM64 CPUs)."""
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def resize_uint8_like_torchvision(image: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
    """Bilinear antialiased resize of uint8 ``(N, C, H, W)`` images to ``size = (h, w)``,
    with torchvision's rules: unchanged when the size is already right; on CPUs where
    torchvision does it, in uint8 directly; elsewhere (GPUs) in float32, rounded back."""
    import torch
    import torch.nn.functional as F

    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.device.type == "cpu" and _native_uint8_bilinear_on_cpu():
        return F.interpolate(image, size=list(size), mode="bilinear", align_corners=False, antialias=True)
    resized = F.interpolate(image.to(torch.float32), size=list(size), mode="bilinear", align_corners=False, antialias=True)
    return resized.round_().to(torch.uint8)


def sam3_pixel_values(images: list[np.ndarray], preprocessing: Sam3Preprocessing, device: "torch.device") -> "torch.Tensor":
    """``(N, 3, height, width)`` float32 model inputs for ``HxWx3`` uint8 images, equal to
    ``Sam3ImageProcessor``'s ``pixel_values`` (computed on ``device``)."""
    import torch

    batch = []
    for image in images:
        if not image.flags.writeable:  # torch warns about read-only arrays (np.asarray of a PIL image)
            image = image.copy()
        chw = torch.from_numpy(image).to(device).permute(2, 0, 1).contiguous().unsqueeze(0)
        if preprocessing.do_resize:
            chw = resize_uint8_like_torchvision(chw, (preprocessing.height, preprocessing.width))
        batch.append(chw)
    pixels = torch.cat(batch).to(torch.float32)
    mean = torch.tensor(preprocessing.image_mean, device=device)
    std = torch.tensor(preprocessing.image_std, device=device)
    if preprocessing.do_rescale and preprocessing.do_normalize:
        # transformers fuses the two steps: (x - mean / factor) / (std / factor)
        scale = 1.0 / preprocessing.rescale_factor
        return (pixels - (mean * scale).view(1, 3, 1, 1)) / (std * scale).view(1, 3, 1, 1)
    if preprocessing.do_rescale:
        pixels = pixels * preprocessing.rescale_factor
    if preprocessing.do_normalize:
        pixels = (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    return pixels


def sam3_instance_scores(pred_logits: "torch.Tensor", presence_logits: Optional["torch.Tensor"]) -> "torch.Tensor":
    """``(B, Q)`` instance scores: ``sigmoid(pred_logits) * sigmoid(presence_logits)``."""
    scores = pred_logits.sigmoid()
    if presence_logits is not None:
        scores = scores * presence_logits.sigmoid()
    return scores


def sam3_union_mask(
    mask_logits: "torch.Tensor",
    scores: "torch.Tensor",
    size: tuple[int, int],
    threshold: float,
    mask_threshold: float,
    chunk: int = 16,
) -> "torch.Tensor":
    """One image's foreground: the union of the instances with ``score > threshold``.

    Args:
        mask_logits: ``(Q, h, w)`` the model's ``pred_masks`` for one image and prompt.
        scores: ``(Q,)`` from :func:`sam3_instance_scores`.
        size: ``(H, W)`` of the original image.
        threshold: instance score to exceed.
        mask_threshold: probability to exceed after resizing.
        chunk: instances resized at once (bounds memory; results do not depend on it).

    Returns:
        ``(H, W)`` bool tensor, all false when no instance passes.
    """
    import torch
    import torch.nn.functional as F

    union = torch.zeros(size, dtype=torch.bool, device=mask_logits.device)
    kept = mask_logits[scores > threshold].sigmoid()
    for start in range(0, kept.shape[0], chunk):
        resized = F.interpolate(kept[None, start:start + chunk], size=list(size), mode="bilinear", align_corners=False)[0]
        union |= (resized > mask_threshold).any(dim=0)
    return union


class Sam3Segmenter(Segmenter):
    """SAM3 text-prompted instance segmentation; the mask is the union of kept instances.

    Post-processing runs in float32 whatever the model dtype.
    """

    kind = "sam3"

    def __init__(self, network: Any, tokenizer: Any, *, preprocessing: Sam3Preprocessing, mask_threshold: Optional[float] = None, **kwargs: Any) -> None:
        self.preprocessing = preprocessing
        mask_threshold = DEFAULT_SAM3_MASK_THRESHOLD if mask_threshold is None else mask_threshold
        self._mask_threshold = _check_probability("mask_threshold", mask_threshold)
        super().__init__(network, tokenizer, **kwargs)

    @property
    def mask_threshold(self) -> float:
        return self._mask_threshold

    @staticmethod
    def _load_parts(model_id: str, dtype: "torch.dtype", hub: dict[str, Any]) -> dict[str, Any]:
        from transformers import AutoTokenizer, Sam3Model
        from transformers.image_processing_base import ImageProcessingMixin

        settings, _ = ImageProcessingMixin.get_image_processor_dict(model_id, **hub)
        return {
            "model": Sam3Model.from_pretrained(model_id, dtype=dtype, **hub),
            "tokenizer": AutoTokenizer.from_pretrained(model_id, **hub),
            "preprocessing": Sam3Preprocessing.from_processor_dict(settings, model_id),
        }

    def _text_length(self) -> int:
        return int(self.network.config.text_config.max_position_embeddings)

    def _extra_settings(self) -> dict[str, Any]:
        return {"mask_threshold": self.mask_threshold}

    def _encode_texts(self, texts: list[str]) -> list[tuple["torch.Tensor", "torch.Tensor"]]:
        """Per text: projected token features ``(L, D)`` and the attention mask ``(L,)``."""
        tokens = self._tokenize(texts)
        features = self.network.get_text_features(**tokens).pooler_output
        return list(zip(features, tokens["attention_mask"]))

    def _segment_chunk(self, images: list[np.ndarray], pairs: list[tuple[int, str]]) -> list[np.ndarray]:
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        pixels = sam3_pixel_values(images, self.preprocessing, self.device).to(self.dtype)
        vision = self.network.get_vision_features(pixel_values=pixels)
        masks = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            rows = torch.tensor([slot for slot, _ in batch], device=self.device)
            vision_embeds = Sam3VisionEncoderOutput(
                fpn_hidden_states=tuple(level.index_select(0, rows) for level in vision.fpn_hidden_states),
                fpn_position_encoding=tuple(level.index_select(0, rows) for level in vision.fpn_position_encoding),
            )
            features = [self._text_features[text] for _, text in batch]
            outputs = self.network(
                vision_embeds=vision_embeds,
                text_embeds=BaseModelOutputWithPooling(pooler_output=torch.stack([f for f, _ in features])),
                attention_mask=torch.stack([m for _, m in features]),
            )
            scores = sam3_instance_scores(
                outputs.pred_logits.float(),
                outputs.presence_logits.float() if outputs.presence_logits is not None else None,
            )
            pred_masks = outputs.pred_masks.float()
            for row, (slot, _) in enumerate(batch):
                size = images[slot].shape[:2]
                union = sam3_union_mask(pred_masks[row], scores[row], size, self.threshold, self.mask_threshold)
                masks.append(union.cpu().numpy())
        return masks


# ---------------------------------------------------------------------- CLIPSeg


def clipseg_mask(logits: "torch.Tensor", size: tuple[int, int], threshold: float) -> "torch.Tensor":
    """``(H, W)`` bool foreground: ``sigmoid(logits)`` (``(h, w)``) resized bilinearly
    (``align_corners=False``) to ``size`` and compared ``> threshold``."""
    import torch.nn.functional as F

    probabilities = logits.float().sigmoid()[None, None]
    return F.interpolate(probabilities, size=list(size), mode="bilinear", align_corners=False)[0, 0] > threshold


class ClipSegSegmenter(Segmenter):
    """CLIPSeg: one probability map per (image, text), thresholded."""

    kind = "clipseg"

    def __init__(self, network: Any, tokenizer: Any, *, image_processor: Any, **kwargs: Any) -> None:
        self.image_processor = image_processor
        super().__init__(network, tokenizer, **kwargs)

    @staticmethod
    def _load_parts(model_id: str, dtype: "torch.dtype", hub: dict[str, Any]) -> dict[str, Any]:
        from transformers import AutoTokenizer, CLIPSegForImageSegmentation
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        # the PIL processor always: the torchvision one (picked where torchvision imports)
        # resizes differently, and masks must not depend on what else is installed
        return {
            "model": CLIPSegForImageSegmentation.from_pretrained(model_id, dtype=dtype, **hub),
            "tokenizer": AutoTokenizer.from_pretrained(model_id, **hub),
            "image_processor": ViTImageProcessorPil.from_pretrained(model_id, **hub),
        }

    def _text_length(self) -> int:
        return int(self.network.config.text_config.max_position_embeddings)

    def _encode_texts(self, texts: list[str]) -> list["torch.Tensor"]:
        """Per text: the conditional embedding ``(projection_dim,)``."""
        tokens = self._tokenize(texts)
        return list(self.network.clip.get_text_features(**tokens).pooler_output)

    def _segment_chunk(self, images: list[np.ndarray], pairs: list[tuple[int, str]]) -> list[np.ndarray]:
        import torch

        pixels = self.image_processor(images=images, input_data_format="channels_last", return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, self.dtype)
        vision = self.network.clip.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True, output_hidden_states=True)
        # as CLIPSegForImageSegmentation.forward: hidden_states[0] is the embedding output
        activations = [vision.hidden_states[layer + 1] for layer in self.network.extract_layers]
        masks = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start:start + self.batch_size]
            rows = torch.tensor([slot for slot, _ in batch], device=self.device)
            conditional = torch.stack([self._text_features[text] for _, text in batch])
            logits = self.network.decoder([a.index_select(0, rows) for a in activations], conditional).logits
            for row, (slot, _) in enumerate(batch):
                masks.append(clipseg_mask(logits[row], images[slot].shape[:2], self.threshold).cpu().numpy())
        return masks
