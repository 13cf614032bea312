"""CLIPSeg: the backend, with transformers' PIL image processor and a thresholded probability map."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .segmenter import Segmenter

if TYPE_CHECKING:  # torch is imported when a segmenter is loaded
    import torch


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
