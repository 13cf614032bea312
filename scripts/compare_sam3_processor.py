"""Check pytest_masc's SAM3 pre- and post-processing against transformers' Sam3Processor.

transformers' ``Sam3ImageProcessor`` imports torchvision, which the project does not install
(its CPU torch has no matching torchvision build), so
``pytest_masc.metric.segmentation`` re-implements what it does. This script compares the
two where torchvision imports, in a separate environment, e.g.::

    python -m venv /tmp/sam3venv
    /tmp/sam3venv/bin/pip install torch torchvision transformers==5.24.0 pillow numpy
    /tmp/sam3venv/bin/python scripts/compare_sam3_processor.py

It builds the tiny random SAM3 checkpoint, then compares, on images of several sizes and
modes: ``pixel_values`` (tiny and real 1008-pixel settings), token ids, the union of
``post_process_instance_segmentation``'s instance masks (on the tiny model's outputs and on
crafted outputs of the real shapes), and whole ``Segmenter.segment_many`` masks. It prints
the largest difference of each and exits 1 when any is not exact.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_masc.metric.segmentation import (  # noqa: E402
    Sam3Preprocessing,
    load_segmenter,
    read_image,
    sam3_instance_scores,
    sam3_pixel_values,
    sam3_union_mask,
)
from pytest_masc.testing.segmenters import tiny_sam3_checkpoint  # noqa: E402


def test_images(seed: int) -> dict[str, Image.Image]:
    """Photos-like and noise images, down- and up-scaled, square and not, with alpha and grey."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    gradient = np.stack([(xx * 255 // 639), (yy * 255 // 479), ((xx + yy) * 255 // 1118)], -1).astype(np.uint8)
    rgba = rng.integers(0, 256, (120, 90, 4), dtype=np.uint8)
    rgba[:40, :, 3] = 0  # a transparent band: composited over white
    return {
        "noise 480x640 RGB": Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)),
        "gradient 480x640 RGB": Image.fromarray(gradient),
        "noise 57x31 RGB (upscaled)": Image.fromarray(rng.integers(0, 256, (57, 31, 3), dtype=np.uint8)),
        "noise 112x112 RGB (model size)": Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)),
        "noise 120x90 RGBA": Image.fromarray(rgba, "RGBA"),
        "noise 333x500 L": Image.fromarray(rng.integers(0, 256, (333, 500), dtype=np.uint8), "L"),
    }


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, what: str, difference: float, tolerance: float = 0.0) -> None:
        ok = difference <= tolerance
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max difference {difference:.3g}")
        if not ok:
            self.failures.append(what)


def compare_pixels(report: Report, processor, preprocessing: Sam3Preprocessing, images: dict[str, Image.Image], label: str, device: torch.device) -> None:
    """Both preprocess on ``device`` (on CUDA both resize in float32, on x86/ARM CPUs in uint8)."""
    label = f"{label} on {device.type}"
    for name, image in images.items():
        theirs = processor(images=image, return_tensors="pt", device=device)["pixel_values"]
        # the processor composites transparency over white; the segmenter drops it, as the scorer does
        ours = sam3_pixel_values([read_image(image, transparent="white")], preprocessing, device)
        if theirs.shape != ours.shape:
            report.check(f"{label} pixel_values shape, {name}: {tuple(theirs.shape)} vs {tuple(ours.shape)}", float("inf"))
            continue
        report.check(f"{label} pixel_values, {name}", (theirs - ours).abs().max().item())
    same_size = [image for image in images.values() if image.size == (640, 480)]
    theirs = processor(images=same_size, return_tensors="pt", device=device)["pixel_values"]
    ours = sam3_pixel_values([read_image(image, transparent="white") for image in same_size], preprocessing, device)
    report.check(f"{label} pixel_values, a batch of {len(same_size)} same-size images", (theirs - ours).abs().max().item())


def union_from_processor(processor, outputs, threshold: float, mask_threshold: float, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    results = processor.post_process_instance_segmentation(
        outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=sizes
    )
    unions = []
    for result, size in zip(results, sizes):
        masks = result["masks"]
        unions.append(masks.bool().any(0).numpy() if len(masks) else np.zeros(size, bool))
    return unions


def union_ours(outputs, threshold: float, mask_threshold: float, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    scores = sam3_instance_scores(outputs.pred_logits, outputs.presence_logits)
    return [
        sam3_union_mask(outputs.pred_masks[row], scores[row], size, threshold, mask_threshold).numpy()
        for row, size in enumerate(sizes)
    ]


def compare_unions(report: Report, label: str, processor, outputs, sizes, thresholds, mask_threshold=0.5) -> None:
    for threshold in thresholds:
        theirs = union_from_processor(processor, outputs, threshold, mask_threshold, sizes)
        ours = union_ours(outputs, threshold, mask_threshold, sizes)
        differing = sum(int((a != b).sum()) for a, b in zip(theirs, ours))
        kept = int((sam3_instance_scores(outputs.pred_logits, outputs.presence_logits) > threshold).sum())
        foreground = sum(int(a.sum()) for a in theirs)
        report.check(
            f"{label} union masks, threshold {threshold:.3f} ({kept} instances kept, {foreground} foreground pixels): pixels differing",
            differing,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where both preprocess images (also: cuda); the rest runs on the CPU")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor
    from transformers.models.sam3.modeling_sam3 import Sam3ImageSegmentationOutput

    torch.manual_seed(args.seed)
    report = Report()
    images = test_images(args.seed)
    with tempfile.TemporaryDirectory() as directory:
        path = tiny_sam3_checkpoint(Path(directory) / "tiny-sam3", seed=args.seed)
        processor = Sam3Processor.from_pretrained(path)
        segmenter = load_segmenter("sam3", path, device="cpu", dtype="float32")

        # 1. preprocessing: the tiny checkpoint's settings and the real defaults (1008 pixels)
        compare_pixels(report, processor.image_processor, segmenter.preprocessing, images, "tiny", device)
        compare_pixels(report, Sam3ImageProcessor(), Sam3Preprocessing(), images, "1008", device)

        # 2. tokens
        # (the processor does not truncate: a prompt over 32 tokens fails there, is cut here)
        texts = ["dog", "a red sports car", "The SKS backpack, on a table!"]
        theirs = processor(text=texts, return_tensors="pt")
        ours = segmenter._tokenize(texts)
        report.check("token ids", (theirs["input_ids"] - ours["input_ids"]).abs().max().item())
        report.check("attention masks", (theirs["attention_mask"] - ours["attention_mask"]).abs().max().item())

        # 3. post-processing on the tiny model's outputs
        model = Sam3Model.from_pretrained(path).eval()
        chosen = list(images.items())[:4]
        inputs = processor(images=[image for _, image in chosen], text=["dog", "cat", "dog", "a red car"], return_tensors="pt")
        with torch.inference_mode():
            outputs = model(**inputs)
        sizes = [(image.height, image.width) for _, image in chosen]
        scores = sam3_instance_scores(outputs.pred_logits, outputs.presence_logits).flatten().sort().values
        quantiles = [float(scores[int(q * (len(scores) - 1))]) for q in (0.1, 0.5, 0.9)]
        compare_unions(report, "tiny model", processor, outputs, sizes, [0.0, *quantiles, 1.0])

        # 4. post-processing on crafted outputs of the real shapes (200 queries, 288x288 masks)
        generator = torch.Generator().manual_seed(args.seed)
        crafted = Sam3ImageSegmentationOutput(
            # smooth blobs with sharp fine detail: each instance covers a few percent of the image
            pred_masks=torch.nn.functional.interpolate(
                torch.randn(2, 200, 9, 9, generator=generator), size=(288, 288), mode="bicubic"
            ) * 6 - 9 + torch.randn(2, 200, 288, 288, generator=generator),
            pred_boxes=torch.rand(2, 200, 4, generator=generator),
            pred_logits=torch.randn(2, 200, generator=generator) * 2 - 3,
            presence_logits=torch.randn(2, 1, generator=generator) + 2,
        )
        compare_unions(report, "crafted 288x288", processor, crafted, [(480, 640), (1000, 750)], [0.1, 0.3, 0.5])

        # 5. end to end: Segmenter.segment_many against processor + model + post-processing
        pair_texts = ["dog", "cat", "a red car"]
        for threshold in quantiles:
            end_to_end = load_segmenter("sam3", path, device="cpu", dtype="float32", threshold=threshold, batch_size=3)
            pairs = [(image, text) for _, image in chosen for text in pair_texts]
            ours = end_to_end.segment_many([image for image, _ in pairs], [text for _, text in pairs])
            differing = 0
            for (image, text), mask in zip(pairs, ours):
                inputs = processor(images=image, text=text, return_tensors="pt")
                with torch.inference_mode():
                    outputs = model(**inputs)
                (theirs,) = union_from_processor(processor, outputs, threshold, 0.5, [(image.height, image.width)])
                differing += int((theirs != mask).sum())
            report.check(f"segment_many vs processor pipeline, threshold {threshold:.3f}, {len(pairs)} pairs: pixels differing", differing)

    if report.failures:
        print(f"{len(report.failures)} mismatch(es)")
        return 1
    print("all equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
