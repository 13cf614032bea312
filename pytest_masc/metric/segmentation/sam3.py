"""SAM3: preprocessing equal to transformers' ``Sam3ImageProcessor``, instance union masks, the backend."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from pytest_masc.errors import SegmenterLoadError

from ...defaults import check_probability
from .segmenter import Segmenter

if TYPE_CHECKING:  # torch and transformers are imported when a segmenter is loaded
    import torch

#: SAM3: the probability that makes a pixel of a kept instance foreground.
DEFAULT_SAM3_MASK_THRESHOLD = 0.5


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
        self._mask_threshold = check_probability("mask_threshold", mask_threshold)
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
