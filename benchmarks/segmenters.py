#!/usr/bin/env python
"""Masks per second of the text-prompted segmenters (``pytest_masc.metric.segmentation``).

Each backend segments a set of distinct in-memory images (mixed aspect ratios), each with
one of a few subject texts, in one ``segment_many`` call with the mask cache off, after a
warm-up call on other images. The time covers everything a caller waits for: hashing the
image for the cache key, preprocessing, text and vision encoding, decoding and resizing
the masks to each image's size, and copying them to host memory. Weights are random
(speed does not depend on their values), built from configs, so no checkpoint or network
is needed:

* ``--preset cpu``: mid-size SAM3 and CLIPSeg (a few million parameters each), about a
  minute on 2 cores;
* ``--preset gpu``: the real architectures: SAM3 from ``Sam3Config()`` (0.84 B parameters,
  1008-pixel input, 200 queries) and CLIPSeg rd64-refined (ViT-B/16 vision, 352-pixel
  input, 151 M parameters), built directly on the GPU in the run's dtype.

SAM3 keeps an instance when its score exceeds ``--sam3-threshold``; the default 0 keeps
all of them, so every instance mask is resized and merged: the most post-processing a mask
can cost (random weights would otherwise keep an arbitrary number).

Examples::

    python benchmarks/segmenters.py --preset cpu --json segmenters-cpu.json
    python benchmarks/segmenters.py --preset gpu --json segmenters-gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SUBJECTS = ["dog", "a red backpack", "the cat", "a vintage teapot", "sks sneaker", "a plush toy", "the robot", "a clock"]


def sam3_config(size: str):
    """``Sam3Config`` for ``"real"`` (transformers' defaults, facebook/sam3's architecture)
    or ``"mid"`` (336-pixel input, 4-layer ViT of width 192, 50 queries, the test tokenizer's
    514-token vocabulary)."""
    from transformers import Sam3Config

    if size == "real":
        return Sam3Config()
    heads = dict(num_attention_heads=4)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=192, intermediate_size=768, num_hidden_layers=4,
                image_size=336, patch_size=14, window_size=12, global_attn_indexes=[3], pretrain_image_size=336, **heads,
            ),
            fpn_hidden_size=128,
            backbone_feature_sizes=[[96, 96], [48, 48], [24, 24]],
        ),
        text_config=dict(vocab_size=514, hidden_size=192, intermediate_size=768, projection_dim=192,
                         num_hidden_layers=4, max_position_embeddings=32, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513, **heads),
        geometry_encoder_config=dict(hidden_size=128, num_layers=1, intermediate_size=512, **heads),
        detr_encoder_config=dict(hidden_size=128, num_layers=2, intermediate_size=512, **heads),
        detr_decoder_config=dict(hidden_size=128, num_layers=2, num_queries=50, intermediate_size=512, **heads),
        mask_decoder_config=dict(hidden_size=128, **heads),
    )


def clipseg_config(size: str):
    """``CLIPSegConfig`` for ``"real"`` (CIDAS/clipseg-rd64-refined: ViT-B/16, CLIP text of
    width 512, decoder on layers 3, 6, 9 reduced to 64, complex transposed convolution) or
    ``"mid"`` (width 192, 6 vision layers, 514-token vocabulary)."""
    from transformers import CLIPSegConfig

    if size == "real":
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        extract, projection, vocab = [3, 6, 9], 512, 49408
    else:
        text = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4)
        vision = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=6, num_attention_heads=4)
        extract, projection, vocab = [2, 4, 5], 128, 514
    return CLIPSegConfig(
        text_config=dict(text, vocab_size=vocab, max_position_embeddings=77, bos_token_id=vocab - 2,
                         eos_token_id=vocab - 1, pad_token_id=vocab - 1),
        vision_config=dict(vision, image_size=224, patch_size=16),
        projection_dim=projection, extract_layers=extract, reduce_dim=64, decoder_num_attention_heads=4,
        decoder_intermediate_size=2048, use_complex_transposed_convolution=True, conditional_layer=0,
    )


PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(
        device="cpu", size="mid", image_sizes=[(384, 512), (512, 384), (448, 448), (300, 400)],
        images={"sam3": 12, "clipseg": 24}, warmup_images=2,
    ),
    "gpu": dict(
        device="cuda", size="real", image_sizes=[(768, 1024), (1024, 768), (1024, 1024), (512, 512)],
        images={"sam3": 256, "clipseg": 1024}, warmup_images=16,
    ),
}


def make_images(count: int, sizes: Sequence[tuple[int, int]], seed: int) -> list[np.ndarray]:
    """``count`` distinct smooth random RGB images (uint8), cycling through ``sizes``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        coarse = rng.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        images.append(np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy())
    return images


def build_segmenter(kind: str, size: str, device, dtype, batch_size: Optional[int], sam3_threshold: float):
    """A segmenter over random weights built from the config, directly on ``device`` in
    ``dtype`` (no CPU initialisation of the 0.84 B SAM3), with a byte-level CLIP tokenizer."""
    import torch
    from transformers import CLIPSegForImageSegmentation, Sam3Model
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    from pytest_masc.metric.segmentation import ClipSegSegmenter, Sam3Preprocessing, Sam3Segmenter
    from pytest_masc.testing.segmenters import byte_clip_tokenizer

    torch.manual_seed(0)
    config = sam3_config(size) if kind == "sam3" else clipseg_config(size)
    model_class = Sam3Model if kind == "sam3" else CLIPSegForImageSegmentation
    with torch.device(device):
        network = model_class._from_config(config, dtype=dtype).eval()
    network.requires_grad_(False)
    common = dict(device=device, dtype=dtype, model_id=f"random {size} {kind}", revision=None,
                  batch_size=batch_size, cache_size=0)
    if kind == "sam3":
        side = config.vision_config.backbone_config.image_size
        return Sam3Segmenter(
            network, byte_clip_tokenizer(config.text_config.max_position_embeddings),
            preprocessing=Sam3Preprocessing(height=side, width=side), threshold=sam3_threshold, **common,
        )
    processor = ViTImageProcessorPil(size={"height": 352, "width": 352}, resample=2,
                                     image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return ClipSegSegmenter(network, byte_clip_tokenizer(77), image_processor=processor, threshold=0.5, **common)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, preset: dict[str, Any], args: argparse.Namespace, device, dtype) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    segmenter = build_segmenter(kind, preset["size"], device, dtype, args.batch_size, args.sam3_threshold)
    synchronize(device)
    build_seconds = time.perf_counter() - started
    count = args.images or preset["images"][kind]
    warmup_count = preset["warmup_images"] if args.warmup is None else args.warmup
    images = make_images(count + warmup_count, preset["image_sizes"], seed=1)
    texts = [SUBJECTS[index % len(SUBJECTS)] for index in range(len(images))]
    warmup, timed = slice(0, warmup_count), slice(warmup_count, None)
    if warmup_count:
        segmenter.segment_many(images[warmup], texts[warmup])
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = segmenter.stats.segmented
    started = time.perf_counter()
    masks = segmenter.segment_many(images[timed], texts[timed])
    synchronize(device)
    seconds = time.perf_counter() - started
    assert segmenter.stats.segmented - before == count and len(masks) == count
    result = {
        "backend": kind,
        "model": segmenter.model,
        "parameters": sum(p.numel() for p in segmenter.network.parameters()),
        "input_side": segmenter.preprocessing.height if kind == "sam3" else 352,
        "masks": count,
        "image_sizes": [list(s) for s in preset["image_sizes"]],
        "batch_size": segmenter.batch_size,
        "threshold": segmenter.threshold,
        "seconds": seconds,
        "masks_per_second": count / seconds,
        "mean_foreground_fraction": float(np.mean([mask.mean() for mask in masks])),
        "build_seconds": build_seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    if kind == "sam3":
        result["instances_per_mask"] = segmenter.network.config.detr_decoder_config.num_queries
    if device.type == "cuda":
        result["peak_gpu_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    del segmenter
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--backend", choices=["sam3", "clipseg", "both"], default="both")
    parser.add_argument("--device", help="torch device (default: the preset's)")
    parser.add_argument("--dtype", help="model dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, help="images per vision forward and pairs per head forward (default: the segmenter's)")
    parser.add_argument("--images", type=int, help="timed masks per backend (default: the preset's)")
    parser.add_argument("--warmup", type=int, help="masks made before timing (default: the preset's)")
    parser.add_argument("--sam3-threshold", type=float, default=0.0, help="SAM3 instance score threshold (default 0: keep all)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    from pytest_masc.errors import DeviceError
    from pytest_masc.metric.loading import resolve_device, resolve_dtype

    started = time.perf_counter()
    import transformers.models.clipseg.modeling_clipseg  # noqa: F401  (imports are not part of a build)
    import transformers.models.sam3.modeling_sam3  # noqa: F401

    import pytest_masc.metric.segmentation  # noqa: F401

    import_seconds = time.perf_counter() - started
    preset = PRESETS[args.preset]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device or preset["device"])
    except DeviceError as error:
        print(f"error: {error} (--preset gpu needs a GPU; --device cpu runs it on the CPU)", file=sys.stderr)
        return 2
    dtype = resolve_dtype(args.dtype, device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    header = {
        "preset": args.preset, "device": str(device), "device_name": device_name, "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other processes sharing the CPUs
        "import_seconds": round(import_seconds, 2),
    }
    print(" ".join(f"{key}={value}" for key, value in header.items()), flush=True)
    results = []
    for kind in (["sam3", "clipseg"] if args.backend == "both" else [args.backend]):
        result = measure(kind, preset, args, device, dtype)
        results.append(result)
        memory = f"peak RSS {result['peak_rss_mib']:.0f} MiB"
        if "peak_gpu_allocated_mib" in result:
            memory = f"peak GPU {result['peak_gpu_allocated_mib']:.0f} MiB allocated ({result['peak_gpu_reserved_mib']:.0f} reserved), " + memory
        print(
            f"{kind:8s} {result['parameters'] / 1e6:8.1f} M params, input {result['input_side']} px, batch {result['batch_size']}: "
            f"{result['masks']} masks in {result['seconds']:.2f} s = {result['masks_per_second']:.3g} masks/s; "
            f"{memory}; built in {result['build_seconds']:.1f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
