"""The metric's mask rules checked on their own, without the reference implementation (issue #20):
CP keeps reference patches whose weight is strictly above the threshold, PF hides output
patches at or above it, so a weight of exactly 0.5 is background for CP and hidden for PF."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import Siglip2VisionConfig
from transformers.models.siglip2.modeling_siglip2 import Siglip2MultiheadAttentionPoolingHead

from pytest_masc.metric import functional

HALF = 0.5
#: float32 weights on both sides of the threshold (its float32 neighbours) and exactly on it
EDGE_WEIGHTS = [0.0, 0.25, float(np.nextafter(np.float32(HALF), np.float32(0))), HALF,
                float(np.nextafter(np.float32(HALF), np.float32(1))), 0.75, 1.0]
WIDTH = 16


@pytest.fixture(scope="module")
def head() -> Siglip2MultiheadAttentionPoolingHead:
    """A seeded random SigLIP2 attention-pooling head of width 16 with 4 heads (float32)."""
    torch.manual_seed(0)
    config = Siglip2VisionConfig(hidden_size=WIDTH, intermediate_size=32, num_attention_heads=4)
    return Siglip2MultiheadAttentionPoolingHead(config).eval()


weights_lists = st.lists(st.sampled_from(EDGE_WEIGHTS), min_size=1, max_size=24)


@given(weights_lists)
def test_cp_keeps_weights_strictly_above_the_threshold_and_pf_hides_weights_at_or_above(weights):
    grid = torch.tensor(weights, dtype=torch.float32)
    kept = functional.foreground(grid)
    hidden = functional.background_hidden(grid)
    assert kept.tolist() == [w > HALF for w in grid.tolist()]
    assert hidden.tolist() == [w >= HALF for w in grid.tolist()]
    on_the_threshold = grid == HALF
    assert not kept[on_the_threshold].any() and hidden[on_the_threshold].all()


@given(weights_lists, st.floats(-1.0, 1.0, width=32), st.integers(0, 2**31 - 1))
def test_concept_score_is_the_mean_best_match_over_weights_above_the_threshold(weights, fill, seed):
    grid = torch.tensor(weights, dtype=torch.float32)
    best = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, len(weights)).astype(np.float32))
    expected = [b for b, w in zip(best.tolist(), weights) if w > HALF]
    got = functional.concept_score(best, grid)
    if expected:
        assert got == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    else:
        assert math.isnan(got)
    # a constant threshold of fill: the rule is "strictly above" whatever the threshold
    strict = [b for b, w in zip(best.tolist(), weights) if w > fill]
    at_fill = functional.concept_score(best, grid, threshold=fill)
    assert math.isnan(at_fill) if not strict else at_fill == pytest.approx(sum(strict) / len(strict), abs=1e-6)


def test_a_mask_of_exactly_one_half_is_empty_for_cp_and_hides_everything_from_pf():
    grid = functional.mask_to_grid(torch.full((32, 48), HALF), (4, 6))
    assert grid.shape == (24,) and bool((grid == HALF).all())
    assert math.isnan(functional.concept_score(torch.ones(24), grid))
    assert bool(functional.background_hidden(grid).all()) and not bool(functional.foreground(grid).any())


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9),
       st.floats(0.0, 1.0, width=32), st.integers(0, 2**31 - 1))
def test_mask_to_grid_keeps_a_constant_and_stays_in_the_unit_range(h, w, hp, wp, value, seed):
    constant = functional.mask_to_grid(torch.full((h, w), value), (hp, wp))
    assert constant.shape == (hp * wp,) and constant.dtype == torch.float32
    assert torch.allclose(constant, torch.full((hp * wp,), value), atol=1e-6)
    noisy = torch.from_numpy(np.random.default_rng(seed).uniform(-2.0, 3.0, (h, w)))
    grid = functional.mask_to_grid(noisy, (hp, wp))
    assert bool((grid >= 0).all()) and bool((grid <= 1).all())
    same = functional.mask_to_grid(noisy.clamp(0, 1), (h, w))
    assert torch.equal(same, noisy.clamp(0, 1).to(torch.float32).flatten())  # one patch per pixel: identity


def test_mask_to_grid_clamps_weights_outside_the_unit_range_and_refuses_other_shapes():
    assert functional.mask_to_grid(torch.full((2, 2), 3.0), (1, 1)).tolist() == [1.0]
    assert functional.mask_to_grid(torch.full((2, 2), -3.0), (1, 1)).tolist() == [0.0]
    with pytest.raises(ValueError, match=r"mask weights must be 2-D \(H, W\), got shape \(1, 2, 2\)"):
        functional.mask_to_grid(torch.zeros(1, 2, 2), (1, 1))


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_best_match_cosine_is_the_highest_cosine_to_any_output_token(n_ref, n_out, seed):
    rng = np.random.default_rng(seed)
    ref, out = rng.normal(size=(n_ref, 8)), rng.normal(size=(n_out, 8))
    cosines = (ref / np.linalg.norm(ref, axis=1, keepdims=True)) @ (out / np.linalg.norm(out, axis=1, keepdims=True)).T
    got = functional.best_match_cosine(torch.from_numpy(ref), torch.from_numpy(out))
    np.testing.assert_allclose(got.numpy(), cosines.max(axis=1), atol=1e-6)
    units = functional.unit_tokens(torch.from_numpy(ref)), functional.unit_tokens(torch.from_numpy(out))
    np.testing.assert_allclose(functional.best_match_cosine(*units, normalized=True).numpy(), cosines.max(axis=1), atol=1e-6)


def test_pad_rows_pads_with_zeros_and_marks_each_tensors_own_rows():
    padded, own = functional.pad_rows([torch.ones(2, 3), torch.full((1, 3), 2.0)], 4)
    assert padded.shape == (2, 4, 3)
    assert own.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert padded[0, :2].eq(1).all() and padded[1, 0].eq(2).all() and padded[0, 2:].eq(0).all() and padded[1, 1:].eq(0).all()
    exact, own_exact = functional.pad_rows([torch.ones(3), torch.ones(1)], 3)
    assert exact.shape == (2, 3) and own_exact.sum().item() == 4
    with pytest.raises(ValueError, match="3 rows do not fit 2 slots"):
        functional.pad_rows([torch.ones(3, 1)], 2)


def test_cp_never_matches_a_padding_slot_even_when_it_would_score_higher():
    ref = torch.tensor([[[1.0, 0.0]]])  # one foreground row
    out = torch.tensor([[[-1.0, 0.0], [0.0, 0.0]]])  # an opposite token, then a zero padding slot (cosine 0)
    concept, best = functional.concept_preservation(ref, torch.tensor([[True]]), out, torch.tensor([[True, False]]))
    assert best.tolist() == [[-1.0]] and concept.tolist() == [-1.0]
    two_rows = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    concept, _ = functional.concept_preservation(two_rows, torch.tensor([[True, False]]),
                                                 torch.tensor([[[0.0, 1.0]]]), torch.tensor([[True]]))
    assert concept.tolist() == [0.0]  # the second (padding) row's cosine of 1 is not averaged in


def group_of_one(head, tokens: torch.Tensor, weights: torch.Tensor, prompt: torch.Tensor,
                 distractors: torch.Tensor) -> functional.GroupInputs:
    """One sample: ``(L, D)`` output tokens (also its reference), ``(L,)`` output weights,
    ``(D,)`` prompt and ``(K, D)`` distractor embeddings (none: one empty slot, as the scorer pads)."""
    own_distractors = torch.ones(1, max(len(distractors), 1), dtype=torch.bool)
    if not len(distractors):
        distractors, own_distractors = torch.zeros(1, tokens.shape[1]), ~own_distractors
    unit = functional.unit_tokens(tokens)
    with torch.no_grad():
        keys_values = functional.pool_keys_values(head, tokens[None])
        pooled = head(tokens[None])
    own = torch.ones(1, len(tokens), dtype=torch.bool)
    return functional.GroupInputs(
        ref_rows=unit[None], ref_rows_own=own.clone(), out_unit=unit[None], out_own=own, out_keys_values=keys_values,
        out_weights=weights[None], prompt=prompt[None], distractors=distractors[None],
        distractors_own=own_distractors, ref_pooled=pooled, out_pooled=pooled,
        full_prompt=prompt[None],
    )


def numpy_cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@settings(deadline=None, max_examples=40)
@given(st.lists(st.sampled_from(EDGE_WEIGHTS), min_size=2, max_size=12), st.integers(0, 2**31 - 1),
       st.integers(0, 3))
def test_pf_pools_the_tokens_below_the_threshold_as_the_head_pools_them_alone(head, weights, seed, k):
    """PF and the margin against an independent computation: the head's own forward over only
    the output tokens whose weight is below 0.5 (weights of exactly 0.5 are hidden)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(weights), WIDTH, generator=generator)
    prompt, distractors = torch.randn(WIDTH, generator=generator), torch.randn(k, WIDTH, generator=generator)
    grid = torch.tensor(weights, dtype=torch.float32)
    with torch.no_grad():
        scores = functional.masc_scores(head, group_of_one(head, tokens, grid, prompt, distractors)).to_host()
        visible = tokens[grid < HALF]
        pooled = head(visible[None])[0] if len(visible) else None
    if pooled is None:
        assert math.isnan(scores.prompt.item()) and math.isnan(scores.prompt_margin.item())
        return
    pf = numpy_cosine(pooled, prompt)
    assert scores.prompt.item() == pytest.approx(pf, abs=1e-5)
    distractor_pfs = [numpy_cosine(pooled, d) for d in distractors]
    np.testing.assert_allclose(scores.distractors[0].numpy(), distractor_pfs or [math.nan], atol=1e-5)
    if k:
        assert scores.prompt_margin.item() == pytest.approx(pf - max(distractor_pfs), abs=2e-5)
    else:
        assert math.isnan(scores.prompt_margin.item())
    assert scores.concept.item() == pytest.approx(1.0, abs=1e-5)  # the output is its own reference


def test_the_global_scores_are_cosines_of_the_whole_pools(head):
    generator = torch.Generator().manual_seed(3)
    tokens, prompt = torch.randn(5, WIDTH, generator=generator), torch.randn(WIDTH, generator=generator)
    with torch.no_grad():
        group = group_of_one(head, tokens, torch.zeros(5), prompt, torch.randn(1, WIDTH, generator=generator))
        group.ref_pooled = head(torch.randn(1, 5, WIDTH, generator=generator))
        scores = functional.masc_scores(head, group).to_host()
    assert scores.global_concept.item() == pytest.approx(numpy_cosine(group.ref_pooled[0], group.out_pooled[0]), abs=1e-5)
    assert scores.global_prompt.item() == pytest.approx(numpy_cosine(group.out_pooled[0], prompt), abs=1e-5)
    assert functional.cosine(torch.tensor([[math.nan, 1.0]]), torch.tensor([[1.0, 0.0]])).isnan().all()


def test_attention_pool_refuses_mismatched_shapes(head):
    with pytest.raises(ValueError, match=r"tokens \(B, L, D\) and hidden \(B, L\) disagree"):
        functional.attention_pool(head, torch.zeros(1, 3, WIDTH), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"keys_values \(B, L, 2D\) and hidden \(B, L\) disagree"):
        functional.attention_pool_projected(head, torch.zeros(1, 3, 2 * WIDTH), torch.zeros(1, 2, dtype=torch.bool))


def test_pooling_no_rows_gives_an_empty_batch(head):
    pooled = functional.attention_pool(head, torch.zeros(0, 3, WIDTH), torch.zeros(0, 3, dtype=torch.bool))
    assert pooled.shape == (0, WIDTH)
