"""Builders shared by the plugin tests: the images and the suite file of the ``suite_dir``
fixture (tests/conftest.py), and :func:`run`, ``pytest --masc`` on a model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_images(root: Path, seed: int = 0) -> None:
    """refs/dog.png (+mask), out/*.png (+masks): random pixels, rectangular masks."""
    rng = np.random.default_rng(seed)
    write_png(root / "refs/dog.png", rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    ref_mask = np.zeros((64, 96), np.uint8)
    ref_mask[10:50, 20:70] = 255
    write_png(root / "refs/dog_mask.png", ref_mask)
    write_png(root / "refs/dog2.png", rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))
    ref2_mask = np.zeros((80, 60), np.uint8)
    ref2_mask[20:70, 10:50] = 255
    write_png(root / "refs/dog2_mask.png", ref2_mask)
    for name, (h, w) in {"beach": (80, 80), "snow": (96, 64), "city": (48, 112)}.items():
        write_png(root / f"out/{name}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
        write_png(root / f"out/{name}_mask.png", mask)
    write_png(root / "out/empty_mask.png", np.zeros((64, 96), np.uint8))
    write_png(root / "out/full_mask.png", np.full((80, 80), 255, np.uint8))


SUITE = """
[suite]
name = "dog-release"
min_concept = 0.0

[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"

[[cases]]
id = "dog-beach"
concept = "dog"
prompt = "a dog on the beach"
image = "out/beach.png"
mask = "out/beach_mask.png"

[[cases]]
concept = "dog"
prompt = "a dog in the snow"
image = "out/snow.png"
mask = "out/snow_mask.png"

[[cases]]
id = "dog-self"
concept = "dog"
prompt = "a dog in the city"
image = "refs/dog.png"
mask = "refs/dog_mask.png"
min_concept = 0.999
"""


def run(pytester: pytest.Pytester, model: Path, *args: str, subprocess: bool = False):
    # One token: pytest would take a separate existing path argument into its rootdir search.
    arguments = ["--masc", f"--masc-model={model}", "-p", "no:cacheprovider", *args]
    if subprocess:
        return pytester.runpytest_subprocess(*arguments)
    return pytester.runpytest(*arguments)


def make_seed_images(root: Path, name: str = "beach", seeds: int = 3, rng_seed: int = 7) -> list[Path]:
    """out/<name>_<seed>.png (+ _mask.png) for seeds 0..seeds-1: one prompt's images, each its
    own random pixels with a centred rectangular mask; returns the image paths."""
    rng = np.random.default_rng(rng_seed)
    paths = []
    for seed in range(seeds):
        path = root / f"out/{name}_{seed}.png"
        write_png(path, rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
        mask = np.zeros((80, 80), np.uint8)
        mask[20:60, 20:60] = 255
        write_png(root / f"out/{name}_{seed}_mask.png", mask)
        paths.append(path)
    return paths


#: the dog concept of :data:`SUITE`, for suite files that add their own cases
DOG_CONCEPT = """
[concepts.dog]
subject = "dog"
reference = "refs/dog.png"
reference_mask = "refs/dog_mask.png"
"""
