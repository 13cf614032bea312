"""Our NaFlex preprocessing gives exactly the pixels of transformers' SigLIP2 PIL processor."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_masc.metric.preprocess import naflex_patches

from oracle import require_oracle


@pytest.fixture(scope="module")
def processor():
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    return Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    height=st.integers(1, 700),
    width=st.integers(1, 700),
    budget=st.sampled_from([16, 64, 256, 1024]),
    seed=st.integers(0, 2**16),
)
def test_patches_equal_the_transformers_processor(processor, height, width, budget, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    features = processor(images=[image], max_num_patches=budget, return_tensors="np")
    count = int(features["pixel_attention_mask"][0].sum())
    patches, grid = naflex_patches(image, patch_size=16, max_num_patches=budget)
    assert grid == tuple(int(x) for x in features["spatial_shapes"][0])
    assert patches.shape == (count, 16 * 16 * 3) and patches.dtype == np.float32
    np.testing.assert_allclose(patches, features["pixel_values"][0, :count], rtol=0, atol=1e-6)


def test_other_normalisation_and_modes(processor):
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (90, 130, 4), dtype=np.uint8), mode="RGBA")
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    features = processor(images=[image.convert("RGB")], max_num_patches=256, return_tensors="np",
                         image_mean=list(mean), image_std=list(std))
    count = int(features["pixel_attention_mask"][0].sum())
    patches, _ = naflex_patches(image, 16, 256, mean=mean, std=std)
    np.testing.assert_allclose(patches, features["pixel_values"][0, :count], rtol=0, atol=1e-5)


def test_scorer_falls_back_to_the_processor_when_configured_differently(tiny_model_dir, tiny_masc):
    """A processor that resizes bicubically is not what ``naflex_patches`` does: the scorer
    preprocesses through the processor itself and scores as the reference does with the
    same processor, not as with the default bilinear one."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    from pytest_masc import MaSC
    from pytest_masc.metric.preprocess import fast_preprocess_settings

    masc_reference = require_oracle("masc")
    assert tiny_masc.image_encoder.preprocess_settings == {"patch_size": 16, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    bicubic = Siglip2ImageProcessorPil.from_pretrained(tiny_model_dir)
    bicubic.resample = Image.BICUBIC
    assert fast_preprocess_settings(bicubic) is None
    masc = MaSC(tiny_masc.model, bicubic, tiny_masc.tokenizer, device=tiny_masc.device, dtype=tiny_masc.dtype)
    assert masc.image_encoder.preprocess_settings is None

    rng = np.random.default_rng(5)
    ref, out = (rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(2))  # resized: not multiples of 16
    mask = np.zeros((50, 70), np.uint8)
    mask[10:40, 15:55] = 255
    score = masc.score(ref, mask, out, mask, "a photo of a dog on the beach", "dog")

    reference = masc_reference.MaSC(model_id=str(tiny_model_dir), device="cpu")
    reference.processor.image_processor.resample = Image.BICUBIC
    expected = reference.score(Image.fromarray(ref), mask, Image.fromarray(out), mask,
                               "a photo of a dog on the beach", object_name="dog")
    assert score.concept == pytest.approx(expected.cp, abs=1e-4)
    assert score.prompt == pytest.approx(expected.pf, abs=1e-4)
    bilinear = tiny_masc.score(ref, mask, out, mask, "a photo of a dog on the beach", "dog")
    assert abs(bilinear.concept - score.concept) > 1e-3 or abs(bilinear.prompt - score.prompt) > 1e-3
