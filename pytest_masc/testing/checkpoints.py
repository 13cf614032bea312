"""Test helpers: tiny random-weight SigLIP2 NaFlex checkpoints written to disk.

Real MaSC scores need the real ``google/siglip2-so400m-patch16-naflex`` weights. These
checkpoints have the same architecture family, processor and tokenizer layout at a
toy size, so the loading code, batching and the metric's tensor math can be tested
offline, in seconds, against the reference implementation.
"""
from __future__ import annotations

import os
import string
from pathlib import Path

TINY_TEXT_LENGTH = 64  # SigLIP2's trained text length; the tokenizer pads to it


def _tiny_vocab() -> dict[str, int]:
    """Special tokens, 256 byte-fallback tokens, then lower-case characters and words."""
    vocab: dict[str, int] = {}
    for token in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"):
        vocab[token] = len(vocab)
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in ["▁"] + list(string.ascii_lowercase + string.digits + ".,;:!?'-"):
        vocab.setdefault(char, len(vocab))
    return vocab


def tiny_config(
    seed: int = 0,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
    patch_size: int = 16,
    num_patches: int = 256,
    vocab_size: int | None = None,
):
    """A ``Siglip2Config`` at toy size (vision and text towers alike)."""
    from transformers import Siglip2Config, Siglip2TextConfig, Siglip2VisionConfig

    vocab_size = vocab_size or len(_tiny_vocab())
    common = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
    )
    return Siglip2Config(
        text_config=Siglip2TextConfig(
            **common,
            vocab_size=vocab_size,
            max_position_embeddings=TINY_TEXT_LENGTH,
            projection_size=hidden_size,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=1,
        ).to_dict(),
        vision_config=Siglip2VisionConfig(**common, patch_size=patch_size, num_patches=num_patches).to_dict(),
    )


def tiny_checkpoint(path: str | os.PathLike, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random-weight SigLIP2 NaFlex checkpoint (model, processor, tokenizer).

    Both ``MaSC.from_pretrained(path)`` and the reference ``masc.MaSC(model_id=path)`` load
    it offline. The reference recognises NaFlex checkpoints by the word ``naflex`` in the
    model id, so name the directory accordingly (e.g. ``tmp/tiny-siglip2-naflex``).

    Args:
        path: directory to create (parents too); existing files are overwritten.
        seed: seeds the random weights; the same seed writes the same weights.
        **config_overrides: keyword arguments for :func:`tiny_config`.

    Returns:
        The checkpoint directory as a ``Path``.
    """
    import torch
    from transformers import Siglip2Model, Siglip2Processor
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = tiny_config(seed, **config_overrides)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Siglip2Model(config).eval()
        # post_init leaves some parameters (probe, attention biases) at constant values;
        # give every parameter random values so no score is degenerate by construction.
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.2)
    finally:
        torch.random.set_rng_state(generator_state)
    _save_quietly(model, path)
    tokenizer = _tiny_tokenizer()
    image_processor = Siglip2ImageProcessorPil(
        patch_size=config.vision_config.patch_size,
        max_num_patches=config.vision_config.num_patches,
    )
    Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_fixed_checkpoint(
    path: str | os.PathLike, seed: int = 0, *, image_size: int = 64, patch_size: int = 16, resample: int = 2,
) -> Path:
    """Write a tiny random-weight fixed-resolution checkpoint (``SiglipModel``, the layout of
    ``google/siglip2-base-patch16-224`` … ``-512``): a ``SiglipImageProcessorPil`` that
    resizes to ``image_size`` squared (``resample``: a PIL filter, bilinear by default, as
    those checkpoints), the tokenizer of :func:`tiny_checkpoint`.

    The reference implementation treats a model id without ``naflex`` as fixed resolution,
    so do not name the directory ``...naflex``.
    """
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    vocab = _tiny_vocab()
    config = SiglipConfig(
        text_config=dict(common, vocab_size=len(vocab), max_position_embeddings=TINY_TEXT_LENGTH,
                         projection_size=common["hidden_size"], pad_token_id=0, bos_token_id=2, eos_token_id=1),
        vision_config=dict(common, image_size=image_size, patch_size=patch_size),
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = SiglipModel(config).eval()
        with torch.no_grad():  # as in tiny_checkpoint: no parameter left at a constant value
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.2)
    finally:
        torch.random.set_rng_state(generator_state)
    _save_quietly(model, path)
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size}, resample=resample,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    SiglipProcessor(image_processor=image_processor, tokenizer=_tiny_tokenizer()).save_pretrained(path)
    return path


def _tiny_tokenizer():
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

    return Siglip2Tokenizer(
        vocab=_tiny_vocab(), merges=[], padding_side="right", add_eos_token=True, model_max_length=TINY_TEXT_LENGTH,
    )


def _save_quietly(model, path: Path) -> None:
    """``save_pretrained`` without progress bars off a terminal, and without transformers'
    warnings about the token ids of its own default SigLIP configs (``save_pretrained``
    diffs against them); this checkpoint's ids are all within its vocabulary."""
    from ..metric.hub import quiet_loading
    from ..metric.loading import siglip_text_configs

    with quiet_loading(siglip_text_configs()):
        model.save_pretrained(path)


# --- baseline metrics (CLIP-I/CLIP-T, DINO-I) at toy size, for offline tests of the protocol tables


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: the 256 base symbols of byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_clip_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """A random CLIP at toy size, with a byte-level CLIP tokenizer (no merges) and the PIL processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = CLIPConfig(
        text_config=dict(common, vocab_size=len(vocab), max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(common, image_size=224, patch_size=32),
        projection_dim=16,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    finally:
        torch.random.set_rng_state(state)
    path = Path(path)
    _save_quietly(model, path)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    CLIPImageProcessorPil().save_pretrained(path)
    return path


def tiny_dino_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """A random ViT (DINO layout: CLS token, no pooler) at toy size."""
    import torch
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=224, patch_size=32)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ViTModel(config, add_pooling_layer=False).eval()
    finally:
        torch.random.set_rng_state(state)
    path = Path(path)
    _save_quietly(model, path)
    return path
