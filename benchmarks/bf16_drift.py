#!/usr/bin/env python
"""How far bfloat16 scores drift from float32: ``MaSC`` in bfloat16 against ``MaSC`` in
float32 (and, when ``masc-metric`` is installed, the reference in float32) on the same
samples, on a tiny random-weight SigLIP2 NaFlex checkpoint on the CPU.

Random images with rectangular masks, prompts with and without a distractor; prints the
largest absolute CP, PF and prompt-margin difference over the samples.

    python benchmarks/bf16_drift.py --samples 60
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np


def _samples(count: int, seed: int):
    from pytest_masc import Sample

    rng = np.random.default_rng(seed)
    prompts = ["a photo of a dog on the beach", "a dog in the snow", "a dog in a kitchen", "the dog on a red sofa"]
    samples = []
    for index in range(count):
        images, masks = [], []
        for _ in range(2):
            height, width = (int(v) for v in rng.integers(48, 160, 2))
            images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            mask = np.zeros((height, width), bool)
            top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
            mask[top: top + height // 2, left: left + width // 2] = True
            masks.append(mask)
        prompt = prompts[index % len(prompts)]
        distractor = prompts[(index + 1) % len(prompts)]
        samples.append(Sample(images[0], masks[0], images[1], masks[1], prompt, subject="dog", distractors=[distractor]))
    return samples


def _max_difference(left, right, attribute: str) -> float:
    differences = [abs(getattr(a, attribute) - getattr(b, attribute)) for a, b in zip(left, right)]
    return max((d for d in differences if not math.isnan(d)), default=math.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pytest_masc import MaSC
    from pytest_masc.testing import tiny_checkpoint

    with tempfile.TemporaryDirectory() as workdir:
        model_dir = tiny_checkpoint(Path(workdir) / "tiny-siglip2-naflex", seed=args.seed)
        samples = _samples(args.samples, args.seed)
        float32 = MaSC.from_pretrained(model_dir, device="cpu", dtype="float32", local_files_only=True).score_many(samples)
        bfloat16 = MaSC.from_pretrained(model_dir, device="cpu", dtype="bfloat16", local_files_only=True).score_many(samples)
        print(f"{args.samples} samples, tiny SigLIP2 NaFlex (random weights, seed {args.seed}), CPU")
        for attribute, label in (("concept", "CP"), ("prompt", "PF"), ("prompt_margin", "margin")):
            print(f"  ours bf16 vs ours fp32: max |d{label}| {_max_difference(bfloat16, float32, attribute):.2e}")
        try:
            import masc
        except ImportError:
            return
        reference = masc.MaSC(model_id=str(model_dir), device="cpu")
        from PIL import Image

        scored = [reference.score(Image.fromarray(s.ref_image), s.ref_mask, Image.fromarray(s.out_image), s.out_mask,
                                  s.prompt, object_name=s.subject) for s in samples]
        for attribute, key, label in (("concept", "cp", "CP"), ("prompt", "pf", "PF")):
            for name, ours in (("fp32", float32), ("bf16", bfloat16)):
                worst = max(abs(getattr(mine, attribute) - float(getattr(ref, key))) for mine, ref in zip(ours, scored))
                print(f"  ours {name} vs reference fp32: max |d{label}| {worst:.2e}")


if __name__ == "__main__":
    main()
