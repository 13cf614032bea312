"""The one-image vision forward (``pytest_masc.vision``) against Transformers' own forward,
and the scorer's choice between the two."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_masc import MaSC, functional
from pytest_masc.testing import tiny_config
from pytest_masc.vision import OneImageVisionForward, tanh_gelu_, unsupported_reason

GRIDS = [(1, 1), (1, 7), (7, 1), (4, 6), (16, 16), (23, 11)]


def transformers_forward(vision_model, patches: torch.Tensor, grid: tuple[int, int]):
    """``(last_hidden_state[0], pooler_output[0])`` of Transformers' forward, batch of one."""
    output = vision_model(
        pixel_values=patches[None],
        pixel_attention_mask=torch.ones(1, len(patches), dtype=torch.long),
        spatial_shapes=torch.tensor([grid]),
    )
    return output.last_hidden_state[0], output.pooler_output[0]


def random_patches(vision_model, grid, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    config = vision_model.config
    generator = torch.Generator().manual_seed(seed)
    width = config.num_channels * config.patch_size ** 2
    return torch.rand(grid[0] * grid[1], width, generator=generator).mul_(2).sub_(1).to(dtype)


def vision_tower(**overrides):
    from transformers import Siglip2Model

    torch.manual_seed(3)
    config = tiny_config(**overrides)
    config.vision_config._attn_implementation = "sdpa"
    return Siglip2Model(config).eval().vision_model


@pytest.mark.parametrize("grid", GRIDS)
def test_one_image_forward_equals_transformers(tiny_masc, grid):
    vision = tiny_masc.model.vision_model
    patches = random_patches(vision, grid, seed=grid[0] * 31 + grid[1])
    with torch.inference_mode():
        expected, _ = transformers_forward(vision, patches, grid)
        ours = OneImageVisionForward(vision)(patches, grid)
    assert ours.shape == expected.shape == (grid[0] * grid[1], vision.config.hidden_size)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-5)


def test_one_image_forward_at_the_benchmark_width():
    """Four 256-wide layers (the CPU benchmark's model): rounding stays far below 1e-4."""
    vision = vision_tower(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    grid = (24, 40)
    patches = random_patches(vision, grid, seed=5)
    with torch.inference_mode():
        expected, _ = transformers_forward(vision, patches, grid)
        ours = OneImageVisionForward(vision)(patches, grid)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-5)
    cosines = F.cosine_similarity(ours, expected, dim=-1)
    assert float(cosines.min()) > 1 - 1e-6


def test_other_activations_run_through_the_module():
    vision = vision_tower(num_hidden_layers=1)
    vision.config.hidden_act = "gelu"
    from transformers.activations import ACT2FN

    for layer in vision.encoder.layers:
        layer.mlp.activation_fn = ACT2FN["gelu"]
    grid = (5, 3)
    patches = random_patches(vision, grid)
    with torch.inference_mode():
        expected, _ = transformers_forward(vision, patches, grid)
        ours = OneImageVisionForward(vision)(patches, grid)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-5)


def test_bfloat16_stays_within_bfloat16_rounding():
    vision = vision_tower().to(torch.bfloat16)
    grid = (8, 12)
    patches = random_patches(vision, grid, dtype=torch.bfloat16)
    with torch.inference_mode():
        expected, _ = transformers_forward(vision, patches, grid)
        ours = OneImageVisionForward(vision)(patches, grid)
    assert ours.dtype == torch.bfloat16
    cosines = F.cosine_similarity(ours.float(), expected.float(), dim=-1)
    assert float(cosines.min()) > 0.999


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-60, 60, allow_nan=False, width=32), min_size=1, max_size=64))
def test_tanh_gelu_in_place_is_tanh_gelu(values):
    x = torch.tensor(values, dtype=torch.float32)
    expected = F.gelu(x, approximate="tanh")
    result = x.clone()
    returned = tanh_gelu_(result, torch.empty_like(result))
    assert returned.data_ptr() == result.data_ptr()
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-5)


def test_positions_are_cached_per_grid_and_bounded(tiny_masc):
    forward = OneImageVisionForward(tiny_masc.model.vision_model, position_cache=2)
    with torch.inference_mode():
        first = forward.positions((4, 6))
        assert forward.positions((4, 6)) is first
        forward.positions((6, 4))
        forward.positions((3, 3))
    assert list(forward._positions) == [(6, 4), (3, 3)]


def test_forwards_side_by_side_match_one_at_a_time(tiny_masc):
    vision = tiny_masc.model.vision_model
    forward = OneImageVisionForward(vision)
    jobs = [(random_patches(vision, grid, seed=i), grid) for i, grid in enumerate(GRIDS * 3)]
    with torch.inference_mode():
        alone = [forward(patches, grid) for patches, grid in jobs]
    together = [None] * len(jobs)

    def run(start: int) -> None:
        with torch.inference_mode():
            for index in range(start, len(jobs), 3):
                together[index] = forward(*jobs[index])

    threads = [threading.Thread(target=run, args=(start,)) for start in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Threads may split the GEMMs differently (rounding); sharing a buffer would not be close.
    for a, b in zip(alone, together):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_patches_must_fill_the_grid(tiny_masc):
    vision = tiny_masc.model.vision_model
    with pytest.raises(ValueError, match="12 patches do not fill a 3x5 grid"):
        OneImageVisionForward(vision)(random_patches(vision, (3, 4)), (3, 5))


def test_unsupported_towers_are_refused_with_the_reason(tiny_masc):
    vision = vision_tower()
    assert unsupported_reason(vision) is None
    vision.train()
    assert unsupported_reason(vision) == "the model is in training mode"
    with pytest.raises(ValueError, match="training mode"):
        OneImageVisionForward(vision)
    assert "not a SigLIP2 vision tower" in unsupported_reason(torch.nn.Linear(2, 2))


def test_pooled_and_keys_values_match_the_trained_head(tiny_masc):
    """The scorer's one-image encoding: tokens and global pool as Transformers gives them,
    and keys/values that pool the background like the tokens do."""
    masc = tiny_masc
    assert masc.one_image_forward is not None and masc.describe()["one_image_forward"]
    vision = masc.model.vision_model
    grid = (9, 14)
    patches = random_patches(vision, grid, seed=11)
    from pytest_masc.scorer import _Pixels

    with torch.inference_mode():
        encoding = masc._forward([_Pixels(patches.numpy(), grid, (144, 224))])[0]
        tokens, pooled = transformers_forward(vision, patches, grid)
        torch.testing.assert_close(encoding.tokens, tokens, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(encoding.pooled, pooled, atol=2e-5, rtol=1e-5)
        hidden = torch.rand(1, len(tokens), generator=torch.Generator().manual_seed(2)) < 0.5
        from_keys = functional.attention_pool_projected(vision.head, encoding.keys_values[None], hidden)
        from_tokens = functional.attention_pool(vision.head, tokens[None], hidden)
    torch.testing.assert_close(from_keys, from_tokens, atol=2e-5, rtol=1e-5)


def test_batches_use_transformers_forward_and_agree(tiny_masc, tmp_path):
    """The same samples scored one image per forward and in padded batches of 3."""
    from PIL import Image

    from pytest_masc import Sample

    rng = np.random.default_rng(0)
    samples = []
    for index, (height, width) in enumerate([(48, 64), (64, 48), (40, 40), (96, 32), (32, 80)]):
        paths = []
        for role in ("ref", "out"):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), np.uint8)
            mask[height // 4: 3 * height // 4, width // 5: 4 * width // 5] = 255
            Image.fromarray(image).save(tmp_path / f"{role}{index}.png")
            Image.fromarray(mask).save(tmp_path / f"{role}{index}_mask.png")
            paths += [str(tmp_path / f"{role}{index}.png"), str(tmp_path / f"{role}{index}_mask.png")]
        samples.append(Sample(*paths, prompt="a photo of a dog on the grass", subject="dog"))
    shared = dict(device=tiny_masc.device, dtype=tiny_masc.dtype, num_workers=2)
    lean = MaSC(tiny_masc.model, tiny_masc.image_processor, tiny_masc.tokenizer, batch_size=1, **shared)
    batched = MaSC(tiny_masc.model, tiny_masc.image_processor, tiny_masc.tokenizer, batch_size=3,
                   one_image_forward=False, **shared)
    assert lean.one_image_forward is not None and batched.one_image_forward is None
    calls = []
    original = batched.model.vision_model.forward
    batched.model.vision_model.forward = lambda *a, **k: calls.append(k["pixel_values"].shape[0]) or original(*a, **k)
    try:
        batched_scores = batched.score_many(samples)
    finally:
        del batched.model.vision_model.forward
    assert sorted(calls) == [1, 3, 3, 3]  # 10 images in padded batches
    for a, b in zip(lean.score_many(samples), batched_scores):
        for name in ("concept", "prompt", "global_concept", "global_prompt"):
            x, y = getattr(a, name), getattr(b, name)
            assert not math.isnan(x) and abs(x - y) <= 1e-5, (name, x, y)
