"""The one-image vision forward (``pytest_masc.metric.vision``) against Transformers' own forward,
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

from pytest_masc import MaSC
from pytest_masc.metric import functional
from pytest_masc.testing import tiny_config
from pytest_masc.metric.vision import OneImageVisionForward, tanh_gelu_, unsupported_reason

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


def test_positions_are_cached_per_grid_and_bounded():
    vision = vision_tower()
    forward = OneImageVisionForward(vision, position_cache=2)
    with torch.inference_mode():
        first = forward.positions((4, 6))
        assert forward.positions((4, 6)) is first
        forward.positions((6, 4))
        forward.positions((3, 3))
    assert [key[0] for key in forward._positions] == [(6, 4), (3, 3)]
    # new weights in place (as a reload does) are not served from the cache
    with torch.no_grad():
        vision.embeddings.position_embedding.weight.mul_(2.0)
    with torch.inference_mode():
        doubled = forward.positions((3, 3))
    assert [key[0] for key in forward._positions] == [(3, 3), (3, 3)]
    forward.clear()
    assert not forward._positions
    expected = vision.embeddings.resize_positional_embeddings(
        vision.embeddings.position_embedding.weight.reshape(16, 16, -1), torch.tensor([[3, 3]]), 9)[0]
    torch.testing.assert_close(doubled, expected)


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


def test_unsupported_towers_are_refused_with_the_reason():
    vision = vision_tower()
    assert unsupported_reason(vision) is None
    vision.train()
    assert unsupported_reason(vision) == "the model is in training mode"
    with pytest.raises(ValueError, match="training mode"):
        OneImageVisionForward(vision)
    assert "not a SigLIP2 vision tower" in unsupported_reason(torch.nn.Linear(2, 2))


class QuantisedLinear(torch.nn.Linear):
    """Stands for a quantised layer (bitsandbytes and the like subclass ``nn.Linear``)."""


def test_layers_it_cannot_read_directly_are_refused():
    vision = vision_tower()
    fc1 = vision.encoder.layers[0].mlp.fc1
    vision.encoder.layers[0].mlp.fc1 = QuantisedLinear(fc1.in_features, fc1.out_features)
    assert unsupported_reason(vision) == "a QuantisedLinear layer (only plain Linear, LayerNorm and Embedding layers)"

    vision = vision_tower()
    handle = vision.encoder.layers[1].register_forward_hook(lambda *args: None)
    assert "has hooks or a replaced forward" in unsupported_reason(vision)
    handle.remove()
    assert unsupported_reason(vision) is None
    vision.post_layernorm.forward = lambda x: x
    assert "has hooks or a replaced forward" in unsupported_reason(vision)

    from transformers import Siglip2Model

    with torch.device("meta"):
        on_meta = Siglip2Model(tiny_config()).eval().vision_model
    assert "meta device" in unsupported_reason(on_meta)


def test_scorer_falls_back_to_transformers_when_refused(tiny_masc):
    vision = vision_tower()
    vision.encoder.layers[0].register_forward_pre_hook(lambda *args: None)
    model = type("Model", (), {"vision_model": vision, "config": tiny_masc.model.config})()
    masc = MaSC(model, tiny_masc.image_processor, tiny_masc.tokenizer, device=torch.device("cpu"), dtype=torch.float32)
    assert masc.one_image_forward is None and not masc.describe()["one_image_forward"]
    with pytest.raises(ValueError, match="has hooks"):
        MaSC(model, tiny_masc.image_processor, tiny_masc.tokenizer, device=torch.device("cpu"),
             dtype=torch.float32, one_image_forward=True)


def test_keys_values_are_kept_for_outputs_and_only_during_a_run(tiny_masc, tmp_path):
    """An image scored as a reference is cached without keys/values; scored later as an
    output, its background pool projects them for that run alone."""
    from PIL import Image

    from pytest_masc import Sample

    rng = np.random.default_rng(1)
    paths = {}
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 20:50] = 255
        Image.fromarray(mask).save(tmp_path / f"{name}_mask.png")
        paths[name] = (str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}_mask.png"))
    masc = MaSC(tiny_masc.model, tiny_masc.image_processor, tiny_masc.tokenizer,
                device=tiny_masc.device, dtype=tiny_masc.dtype)
    first = masc.score_many([Sample(*paths["a"], *paths["b"], "a dog", "dog")])
    assert len(masc.cache) == 1
    assert all(encoding.keys_values is None for encoding in masc.cache.encodings())
    second = masc.score_many([Sample(*paths["c"], *paths["a"], "a dog", "dog")])  # "a" as the output now
    assert masc.stats.images_cached == 1
    assert all(encoding.keys_values is None for encoding in masc.cache.encodings())
    fresh = MaSC(tiny_masc.model, tiny_masc.image_processor, tiny_masc.tokenizer,
                 device=tiny_masc.device, dtype=tiny_masc.dtype).score_many([Sample(*paths["c"], *paths["a"], "a dog", "dog")])
    assert second[0].prompt == fresh[0].prompt  # projected from the same tokens the same way
    assert not math.isnan(first[0].prompt)


def test_bfloat16_pooling_stays_close_to_float64():
    vision = vision_tower()
    head = vision.head
    generator = torch.Generator().manual_seed(4)
    tokens = torch.randn(3, 50, head.probe.shape[-1], generator=generator)
    hidden = torch.rand(3, 50, generator=generator) < 0.5
    with torch.inference_mode():
        exact = functional.attention_pool(head.double(), tokens.double(), hidden)
        rounded = functional.attention_pool(head.to(torch.bfloat16), tokens.to(torch.bfloat16), hidden)
    assert rounded.dtype == torch.bfloat16
    cosines = F.cosine_similarity(rounded.double(), exact, dim=-1)
    assert float(cosines.min()) > 0.999


def test_pooled_and_keys_values_match_the_trained_head(tiny_masc):
    """The scorer's one-image encoding: tokens and global pool as Transformers gives them,
    and keys/values that pool the background like the tokens do."""
    masc = tiny_masc
    assert masc.one_image_forward is not None and masc.describe()["one_image_forward"]
    vision = masc.model.vision_model
    grid = (9, 14)
    patches = random_patches(vision, grid, seed=11)
    from pytest_masc.metric.encoders import Pixels

    with torch.inference_mode():
        encoding = masc.image_encoder.forward([Pixels(patches.numpy(), grid, (144, 224))])[0]
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
