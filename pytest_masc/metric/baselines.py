"""Baseline metrics of personalization papers: CLIP-I, CLIP-T and DINO-I, as DreamBench++ computes them.

* **CLIP-I**: cosine of the CLIP image embeddings of reference and output
  (``openai/clip-vit-base-patch32``, ``CLIPModel.get_image_features``: the projected pooled
  output). **CLIP-T**: cosine of the output's image embedding and the prompt's text
  embedding. Images go through ``CLIPImageProcessorPil`` (transformers' PIL/numpy path,
  no torchvision): resize the shorter side to 224 (bicubic), center-crop 224, rescale,
  normalise with the CLIP mean/std. Prompts are tokenised with the CLIP tokenizer, padded
  to the batch's longest and cut at the text tower's 77 positions.
* **DINO-I**: cosine of the DINO ViT-S/8 CLS features (``facebook/dino-vits8`` through
  ``ViTModel``: ``last_hidden_state[:, 0]`` after the final layer norm, which is what the
  ``torch.hub`` ``dino_vits8`` model DreamBench++ loads returns). Preprocessing follows
  DreamBench++'s torchvision pipeline, re-implemented with PIL + numpy: resize the shorter
  side to 256 (bicubic, longer side ``int(256 * long / short)``), center-crop 224 (offsets
  ``round((size - 224) / 2)``), scale to ``[0, 1]``, normalise with the ImageNet mean/std.

Scores are plain cosines in ``[-1, 1]`` (DreamBench++ prints ``100 x`` their mean). Every
distinct image is encoded once per call. torch and transformers are imported on first use.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .hub import CheckpointSource, ExpectedCheckpoint, load_checkpoint
from .inputs import load_image, source_key

CLIP_MODEL = "openai/clip-vit-base-patch32"
DINO_MODEL = "facebook/dino-vits8"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_RESIZE = 256
DINO_CROP = 224


def _expected(kind: str, model_type: str, wanted: str, example: str, option: str, needs_processor: bool) -> ExpectedCheckpoint:
    """What a baseline's checkpoint holds, for :mod:`pytest_masc.metric.hub`'s errors."""
    files = "config.json, model.safetensors" + (", preprocessor_config.json and the tokenizer files" if needs_processor else "")
    return ExpectedCheckpoint(
        name=f"{kind} checkpoint", contents=f"a {kind} checkpoint saved with save_pretrained ({files})", example=example,
        point_at=f"--masc-baselines={option}=/path/to/checkpoint", needs_processor=needs_processor,
        model_types=(model_type,), wanted=wanted,
    )


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _pairwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b).astype(np.float64)


def _embed_once(items: list, keys: list, embed_batch: Callable[[list], Any], batch_size: int, dim: int) -> np.ndarray:
    """``(len(items), D)`` float32 unit rows: ``embed_batch`` (a list of items -> torch ``(b, D)``)
    runs once per distinct key, in batches of ``batch_size``, under ``torch.inference_mode``."""
    import torch

    unique = list(dict.fromkeys(keys))
    first = {key: items[keys.index(key)] for key in unique}
    rows: dict[Any, np.ndarray] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        with torch.inference_mode():
            embedded = _unit(embed_batch([first[key] for key in chunk]).float()).cpu().numpy()
        rows.update(zip(chunk, embedded))
    return np.stack([rows[key] for key in keys]) if keys else np.zeros((0, dim), np.float32)


class _Encoder:
    """A baseline's image encoder: one loader, batching and per-call de-duplication of images.

    A subclass names its default checkpoint (``DEFAULT_MODEL``), what that checkpoint holds
    (``CHECKPOINT``), how its parts are read (``_read_parts``: a dict with ``"model"`` and the
    subclass's other constructor arguments), how images become pixels and pixels embeddings.
    """

    DEFAULT_MODEL: str
    CHECKPOINT: ExpectedCheckpoint

    def __init__(self, model: Any, device: Any, batch_size: int, model_id: str):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        self.model_id = model_id

    @classmethod
    def from_pretrained(
        cls,
        model_id: Optional[str | os.PathLike] = None,
        *,
        device: Any = None,
        revision: Optional[str] = None,
        local_files_only: bool = False,
        cache_dir: Optional[str | os.PathLike] = None,
        batch_size: int = 32,
    ):
        """Load the scorer from a hub id or directory (``None``: ``DEFAULT_MODEL``), float32, eval,
        on ``device`` (``None``: as :func:`pytest_masc.metric.loading.resolve_device`).

        Raises:
            ModelLoadError: weights missing (offline or not downloaded) or a checkpoint of another type.
            DeviceError: the device is not available.
        """
        from .loading import ready_model, resolve_device  # imports torch: only when a baseline is loaded

        model_id = os.fspath(model_id) if model_id is not None else cls.DEFAULT_MODEL
        resolved = resolve_device(device)
        _, parts = load_checkpoint(model_id, cls.CHECKPOINT, cls._read_parts, revision=revision,
                                   local_files_only=local_files_only, cache_dir=cache_dir)
        model = ready_model(parts.pop("model"), resolved)
        return cls(model, **parts, device=resolved, batch_size=batch_size, model_id=model_id)

    @classmethod
    def _read_parts(cls, source: CheckpointSource, config: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _pixels(self, images: list) -> np.ndarray:  # (b, 3, H, W) float32
        raise NotImplementedError

    def _embed_pixels(self, pixels):  # torch (b, 3, H, W) -> (b, D)
        raise NotImplementedError

    def _embed_images(self, images: list):  # torch (b, D)
        import torch

        pixels = self._pixels([load_image(image, "image") for image in images])
        return self._embed_pixels(torch.from_numpy(pixels).to(self.device))

    def image_embeddings(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised embeddings ``(n, D)`` float32; each distinct image encoded once.

        ``images``: paths, PIL images or ``HxWx3`` uint8 arrays (read as in :mod:`pytest_masc.metric.inputs`).
        """
        images = list(images)
        return _embed_once(images, [source_key(image) for image in images], self._embed_images, self.batch_size, 0)

    def image_similarity(self, ref_images: Sequence[Any], out_images: Sequence[Any]) -> np.ndarray:
        """``(n,)`` cosine of each (reference, output) image pair."""
        ref_images, out_images = list(ref_images), list(out_images)
        if len(ref_images) != len(out_images):
            raise ValueError(f"{len(ref_images)} reference images but {len(out_images)} output images")
        embedded = self.image_embeddings(ref_images + out_images)
        return _pairwise_cosine(embedded[: len(ref_images)], embedded[len(ref_images):])


class CLIPScorer(_Encoder):
    """CLIP-I and CLIP-T with a ``CLIPModel``, ``CLIPImageProcessorPil`` and ``CLIPTokenizer``;
    build with :meth:`from_pretrained`."""

    DEFAULT_MODEL = CLIP_MODEL
    CHECKPOINT = _expected("CLIP", "clip", "CLIP", CLIP_MODEL, "clip", True)

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any, device: Any, batch_size: int = 32,
                 model_id: str = CLIP_MODEL):
        super().__init__(model, device, batch_size, model_id)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.max_length = int(getattr(model.config.text_config, "max_position_embeddings", 77))

    @classmethod
    def _read_parts(cls, source: CheckpointSource, config: Any) -> dict[str, Any]:
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        return {
            "model": CLIPModel.from_pretrained(source.path, **source.hub),
            "image_processor": CLIPImageProcessorPil.from_pretrained(source.path, **source.hub),
            "tokenizer": CLIPTokenizer.from_pretrained(source.path, **source.hub),
        }

    def _pixels(self, images: list) -> np.ndarray:
        return np.asarray(self.image_processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32)

    def _embed_pixels(self, pixels):
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self.model.visual_projection(pooled)

    def _embed_texts(self, texts: list):
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        pooled = self.model.text_model(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device),
        ).pooler_output
        return self.model.text_projection(pooled)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings ``(n, D)`` float32; each distinct text encoded once."""
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is a {type(text).__name__}, not a str")
        dim = int(self.model.config.projection_dim)
        return _embed_once(texts, texts, self._embed_texts, self.batch_size, dim)

    def text_similarity(self, out_images: Sequence[Any], prompts: Sequence[str]) -> np.ndarray:
        """``(n,)`` CLIP-T: cosine of each output image and its prompt."""
        out_images, prompts = list(out_images), list(prompts)
        if len(out_images) != len(prompts):
            raise ValueError(f"{len(out_images)} output images but {len(prompts)} prompts")
        return _pairwise_cosine(self.image_embeddings(out_images), self.text_embeddings(prompts))


def dino_preprocess(image: Any) -> np.ndarray:
    """DreamBench++'s DINO transform on one image: ``(3, 224, 224)`` float32.

    Resize (shorter side 256, bicubic) -> center-crop 224 -> ``/ 255`` -> ImageNet
    normalisation, as ``torchvision.transforms`` does it on a PIL image.
    """
    from PIL import Image

    image = load_image(image, "image")
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = DINO_RESIZE, int(DINO_RESIZE * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    if size != image.size:
        image = image.resize(size, Image.BICUBIC)
    width, height = image.size
    if width < DINO_CROP or height < DINO_CROP:  # cannot happen after the resize; kept for safety
        raise ValueError(f"image {width}x{height} is smaller than the {DINO_CROP} crop")
    top = int(round((height - DINO_CROP) / 2.0))
    left = int(round((width - DINO_CROP) / 2.0))
    image = image.crop((left, top, left + DINO_CROP, top + DINO_CROP))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class DINOScorer(_Encoder):
    """DINO-I with a ``ViTModel`` (``facebook/dino-vits8``, no pooling layer); build with :meth:`from_pretrained`."""

    DEFAULT_MODEL = DINO_MODEL
    CHECKPOINT = _expected("DINO ViT", "vit", "a ViT (DINO) one", DINO_MODEL, "dino", False)

    @classmethod
    def _read_parts(cls, source: CheckpointSource, config: Any) -> dict[str, Any]:
        from transformers import ViTModel

        return {"model": ViTModel.from_pretrained(source.path, add_pooling_layer=False, **source.hub)}

    def _pixels(self, images: list) -> np.ndarray:
        return np.stack([dino_preprocess(image) for image in images])

    def _embed_pixels(self, pixels):
        size = int(getattr(self.model.config, "image_size", DINO_CROP))
        return self.model(pixel_values=pixels, interpolate_pos_encoding=size != DINO_CROP).last_hidden_state[:, 0]


def _scorer(cls, scorer: Any, model_id: Optional[str], load_kwargs: dict):
    if scorer is not None:
        if load_kwargs or model_id is not None:
            raise TypeError("pass either a scorer or model_id / loading options, not both")
        return scorer
    return cls.from_pretrained(model_id, **load_kwargs)


def clip_image_similarity(ref_images: Sequence[Any], out_images: Sequence[Any], *, scorer: Optional[CLIPScorer] = None,
                          model_id: Optional[str] = None, **load_kwargs: Any) -> np.ndarray:
    """CLIP-I ``(n,)``: cosine of CLIP image embeddings of each (reference, output) pair.

    Pass a loaded ``scorer`` (reused across calls) or ``model_id`` and
    :meth:`CLIPScorer.from_pretrained` options (``local_files_only``, ``revision``, ...).
    """
    return _scorer(CLIPScorer, scorer, model_id, load_kwargs).image_similarity(ref_images, out_images)


def clip_text_similarity(out_images: Sequence[Any], prompts: Sequence[str], *, scorer: Optional[CLIPScorer] = None,
                         model_id: Optional[str] = None, **load_kwargs: Any) -> np.ndarray:
    """CLIP-T ``(n,)``: cosine of each output's CLIP image embedding and its prompt's text embedding."""
    return _scorer(CLIPScorer, scorer, model_id, load_kwargs).text_similarity(out_images, prompts)


def dino_image_similarity(ref_images: Sequence[Any], out_images: Sequence[Any], *, scorer: Optional[DINOScorer] = None,
                          model_id: Optional[str] = None, **load_kwargs: Any) -> np.ndarray:
    """DINO-I ``(n,)``: cosine of DINO ViT-S/8 CLS features of each (reference, output) pair."""
    return _scorer(DINOScorer, scorer, model_id, load_kwargs).image_similarity(ref_images, out_images)


def baseline_metrics(samples: Sequence[Any], *, clip: Optional[CLIPScorer] = None,
                     dino: Optional[DINOScorer] = None) -> dict[str, np.ndarray]:
    """``{"CLIP-I", "CLIP-T", "DINO-I"}`` ``(n,)`` arrays for :class:`~pytest_masc.Sample` s,
    ready as ``extra_metrics`` of :func:`pytest_masc.protocols.evaluate_dreambench`
    (``CLIP-T`` uses the full prompt). Metrics whose scorer is ``None`` are left out."""
    samples = list(samples)
    refs = [s.ref_image for s in samples]
    outs = [s.out_image for s in samples]
    result: dict[str, np.ndarray] = {}
    if clip is not None:
        result["CLIP-I"] = clip.image_similarity(refs, outs)
        result["CLIP-T"] = clip.text_similarity(outs, [s.prompt for s in samples])
    if dino is not None:
        result["DINO-I"] = dino.image_similarity(refs, outs)
    return result


__all__ = [
    "CLIPScorer",
    "CLIP_MODEL",
    "DINOScorer",
    "DINO_MODEL",
    "baseline_metrics",
    "clip_image_similarity",
    "clip_text_similarity",
    "dino_image_similarity",
    "dino_preprocess",
]
