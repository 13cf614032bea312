"""Test helpers: tiny random-weight SAM3 and CLIPSeg checkpoints written to disk, offline.

Real foreground masks need the real ``facebook/sam3`` or ``CIDAS/clipseg-rd64-refined``
weights. These checkpoints have the same architectures, processor files and tokenizer
layout at a toy size, so :mod:`pytest_masc.metric.segmentation` (loading, pre- and
post-processing, batching, caching) can be tested in seconds on a CPU. Their masks are
noise: they show the format, never a segmentation.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

#: Side of the square model input of the tiny SAM3 (the real one: 1008). 8x8 patches of 14.
TINY_SAM3_IMAGE_SIZE = 112
#: Text length of SAM3's CLIP text encoder (the processor pads every prompt to it).
SAM3_TEXT_LENGTH = 32
#: Side of the square model input of the tiny CLIPSeg processor (the real one: 352).
TINY_CLIPSEG_IMAGE_SIZE = 64
#: CLIP's text length, used by CLIPSeg.
CLIP_TEXT_LENGTH = 77


def _byte_level_symbols() -> list[str]:
    """The 256 symbols byte-level BPE uses for the bytes 0..255 (printable ones stand for
    themselves, the others are shifted past U+0100), in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    shifted = 0
    symbols = []
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def byte_clip_tokenizer(model_max_length: int):
    """A CLIP tokenizer without merges: every byte is a token (plain and word-final), then
    ``<|startoftext|>`` and ``<|endoftext|>``, which has the highest id (as in CLIP)."""
    from transformers import CLIPTokenizer

    symbols = _byte_level_symbols()
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": len(symbols) + index for index, symbol in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length, pad_token="<|endoftext|>")


def _random_model(model_class, config, seed: int, matrix_gain: float, gains: dict[str, float] | None = None):
    """``model_class(config)`` with transformers' initialisation drawn from ``seed``, every
    weight matrix then multiplied by ``matrix_gain`` (or by ``gains[prefix]`` for parameters
    under that module prefix) and every bias drawn from N(0, 0.1^2). The gains are chosen per
    architecture so that outputs are neither constant nor saturated. Torch's global RNG is
    restored afterwards."""
    import torch

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_class(config).eval()
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.ndim >= 2:
                    gain = next((g for prefix, g in (gains or {}).items() if name.startswith(prefix)), matrix_gain)
                    parameter.mul_(gain)
                elif name.endswith("bias"):
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    finally:
        torch.random.set_rng_state(state)
    return model


def _save_quietly(model, path: Path) -> None:
    """``save_pretrained`` without progress bars off a terminal (the configs' token ids are
    all within their vocabularies, so transformers has nothing to warn about)."""
    from ..metric.hub import quiet_loading

    with quiet_loading():
        model.save_pretrained(path)


def tiny_sam3_config(*, hidden_size: int = 32, num_queries: int = 16, image_size: int = TINY_SAM3_IMAGE_SIZE, vocab_size: int = 514):
    """A ``Sam3Config`` at toy size: a 2-layer ViT (patch 14) with windowed and global
    attention, FPN levels at 4x, 2x, 1x and 0.5x the patch grid, a 2-layer CLIP text encoder,
    one DETR encoder and decoder layer with ``num_queries`` queries, and the mask decoder."""
    from transformers import Sam3Config

    if image_size % 14 or (image_size // 14) % 2:
        raise ValueError(f"image_size must be an even multiple of the patch size 14, got {image_size}")
    grid = image_size // 14
    small = dict(num_attention_heads=2, intermediate_size=2 * hidden_size)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=hidden_size, num_hidden_layers=2, image_size=image_size,
                patch_size=14, window_size=grid // 2, global_attn_indexes=[1], pretrain_image_size=image_size // 2,
                **small,
            ),
            fpn_hidden_size=hidden_size,
            backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
        ),
        text_config=dict(
            vocab_size=vocab_size, hidden_size=hidden_size, projection_dim=hidden_size, num_hidden_layers=2,
            max_position_embeddings=SAM3_TEXT_LENGTH, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1, **small,
        ),
        geometry_encoder_config=dict(hidden_size=hidden_size, num_layers=1, **small),
        detr_encoder_config=dict(hidden_size=hidden_size, num_layers=1, **small),
        detr_decoder_config=dict(hidden_size=hidden_size, num_layers=1, num_queries=num_queries, **small),
        mask_decoder_config=dict(hidden_size=hidden_size, num_attention_heads=2),
    )


def sam3_preprocessor_config(image_size: int) -> dict:
    """What ``Sam3ImageProcessor.save_pretrained`` writes, for a square input of ``image_size``
    (written by hand: that class imports torchvision)."""
    mask_side = 4 * (image_size // 14)
    return {
        "image_processor_type": "Sam3ImageProcessor",
        "processor_class": "Sam3Processor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": image_size, "width": image_size},
        "mask_size": {"height": mask_side, "width": mask_side},
        "resample": 2,  # PIL.Image.BILINEAR
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }


def tiny_sam3_checkpoint(path: str | os.PathLike, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random-weight SAM3 checkpoint: ``Sam3Model`` weights and config, a CLIP
    tokenizer (byte tokens, no merges) and ``preprocessor_config.json``.

    ``load_segmenter("sam3", path)`` loads it offline, and so does transformers'
    ``Sam3Processor.from_pretrained(path)`` where torchvision imports.

    Args:
        path: directory to create (parents too); existing files are overwritten.
        seed: seeds the random weights; the same seed writes the same weights.
        **config_overrides: keyword arguments for :func:`tiny_sam3_config`.

    Returns:
        The checkpoint directory as a ``Path``.
    """
    from transformers import Sam3Model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_clip_tokenizer(SAM3_TEXT_LENGTH)
    config = tiny_sam3_config(vocab_size=len(tokenizer), **config_overrides)
    # Gains measured on this config: instance scores spread over about 0.2..0.5 and each
    # instance mask covers 5..40% of the image (transformers' own init: all scores 0.25).
    model = _random_model(Sam3Model, config, seed, matrix_gain=8.0, gains={"mask_decoder.": 4.0})
    _save_quietly(model, path)
    tokenizer.save_pretrained(path)
    image_size = config.vision_config.backbone_config.image_size
    (path / "preprocessor_config.json").write_text(json.dumps(sam3_preprocessor_config(image_size), indent=2) + "\n")
    return path


def tiny_clipseg_config(*, hidden_size: int = 32, image_size: int = 32, vocab_size: int = 514):
    """A ``CLIPSegConfig`` at toy size: 3-layer ViT-B/16 layout and CLIP text towers, the
    decoder reading layers 1 and 2 (rd16), with the refined (complex) transposed convolution."""
    from transformers import CLIPSegConfig

    common = dict(hidden_size=hidden_size, num_hidden_layers=3, num_attention_heads=2, intermediate_size=2 * hidden_size)
    return CLIPSegConfig(
        text_config=dict(
            common, vocab_size=vocab_size, max_position_embeddings=CLIP_TEXT_LENGTH,
            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        ),
        vision_config=dict(common, image_size=image_size, patch_size=16),
        projection_dim=16,
        extract_layers=[1, 2],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,
    )


def tiny_clipseg_checkpoint(
    path: str | os.PathLike, seed: int = 0, *, processor_size: int = TINY_CLIPSEG_IMAGE_SIZE, **config_overrides
) -> Path:
    """Write a tiny random-weight CLIPSeg checkpoint: ``CLIPSegForImageSegmentation`` weights
    and config, a CLIP tokenizer (byte tokens, no merges) and the ViT image processor, which
    resizes to ``processor_size`` (larger than the vision config's ``image_size``, so the
    position embeddings are interpolated as with the real 352-pixel processor).

    Args:
        path: directory to create (parents too); existing files are overwritten.
        seed: seeds the random weights; the same seed writes the same weights.
        processor_size: side of the processor's square output, a multiple of 16.
        **config_overrides: keyword arguments for :func:`tiny_clipseg_config`.

    Returns:
        The checkpoint directory as a ``Path``.
    """
    from transformers import CLIPSegForImageSegmentation
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    if processor_size % 16:
        raise ValueError(f"processor_size must be a multiple of the patch size 16, got {processor_size}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_clip_tokenizer(CLIP_TEXT_LENGTH)
    config = tiny_clipseg_config(vocab_size=len(tokenizer), **config_overrides)
    # Gain measured on this config: logits with a standard deviation of about 7, 40-45% of
    # pixels foreground, text-dependent (transformers' own init: standard deviation 56).
    model = _random_model(CLIPSegForImageSegmentation, config, seed, matrix_gain=0.5)
    _save_quietly(model, path)
    tokenizer.save_pretrained(path)
    ViTImageProcessorPil(
        size={"height": processor_size, "width": processor_size},
        resample=2,  # PIL.Image.BILINEAR, as CIDAS/clipseg-rd64-refined
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)
    return path
