"""Properties of MaSC that hold for ANY weights, checked with Hypothesis on the tiny checkpoint
(and on its real pooling head for the functional layer)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pytest_masc import MaSC, Sample
from pytest_masc.metric import functional
from pytest_masc.testing import strategies as ms
from pytest_masc.metric.inputs import load_mask
from pytest_masc.metric.text import strip_subject

# Deterministic runs (CI), no example database on disk, no per-example deadline (the first
# examples pay for warm-up).
COMMON = dict(deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=150, **COMMON)  # pure tensor math
MODEL = settings(max_examples=25, **COMMON)  # through the vision tower

ALL_KINDS = ms.MASK_KINDS


@pytest.fixture(scope="module")
def masc(tiny_masc) -> MaSC:
    """The tiny model with a 64-patch budget and batches of 2 (so samples share batches)."""
    return MaSC(tiny_masc.model, tiny_masc.image_processor, tiny_masc.tokenizer, device=tiny_masc.device,
                dtype=tiny_masc.dtype, max_num_patches=64, batch_size=2, num_workers=2)


@pytest.fixture(scope="module")
def head(tiny_masc):
    return tiny_masc.model.vision_model.head


def bilinear_reference(weights: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (``align_corners=False``), no antialiasing,
    written out in numpy: output pixel ``i`` samples the input at ``(i + 0.5) * in / out - 0.5``,
    clamped below at 0, between its two neighbours (the last one repeated at the edge)."""
    def axis(size_in: int, size_out: int):
        source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
        source = np.maximum(source, 0.0)
        low = np.minimum(np.floor(source).astype(int), size_in - 1)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, source - low

    y0, y1, fy = axis(weights.shape[0], grid[0])
    x0, x1, fx = axis(weights.shape[1], grid[1])
    w = weights.astype(np.float64)
    top = w[y0][:, x0] * (1 - fx) + w[y0][:, x1] * fx
    bottom = w[y1][:, x0] * (1 - fx) + w[y1][:, x1] * fx
    return np.clip(top * (1 - fy)[:, None] + bottom * fy[:, None], 0, 1).ravel()


def decided(weights: np.ndarray, threshold: float) -> bool:
    """No grid weight within float error of the threshold without being exactly on it
    (float32 and float64 rounding could put it on either side)."""
    return not np.any((np.abs(weights - threshold) < 1e-5) & (weights != threshold))


def is_cosine(value: float) -> bool:
    return -1 - 1e-5 <= value <= 1 + 1e-5


# ----------------------------------------------------------------------------- scores


@st.composite
def image_with_mask(draw, kinds=ALL_KINDS):
    image = draw(ms.images(8, 48))
    mask = draw(ms.masks((image.height, image.width), kinds))
    return image, mask


@MODEL
@given(pair=image_with_mask(kinds=("blob", "rectangle", "strip", "soft", "full", "empty")), as_copy=st.booleans())
def test_concept_of_an_image_against_itself_is_one(masc, pair, as_copy):
    image, mask = pair
    # the same object (one encoding), or a pixel-equal copy (encoded separately)
    out = np.array(image.convert("RGB")) if as_copy else image
    score = masc.score_many([Sample(image, mask, out, mask, "a photo")])[0]
    if score.extras["ref_foreground_patches"] == 0:
        assert math.isnan(score.concept)
    else:
        assert abs(score.concept - 1.0) <= 1e-5
        np.testing.assert_allclose(score.concept_map[~np.isnan(score.concept_map)], 1.0, atol=1e-5)
    assert abs(score.global_concept - 1.0) <= 1e-5


@MODEL
@given(batch=st.lists(ms.samples(8, 56, mask_kinds=ALL_KINDS, max_distractors=2), min_size=1, max_size=4))
def test_scores_are_cosines_and_nan_exactly_when_the_mask_leaves_nothing(masc, batch):
    scores = masc.score_many(batch)
    for sample, score in zip(batch, scores):
        ref_grid, out_grid = tuple(score.extras["ref_grid"]), tuple(score.extras["out_grid"])
        ref_weights = bilinear_reference(load_mask(sample.ref_mask), ref_grid)
        out_weights = bilinear_reference(load_mask(sample.out_mask), out_grid)
        threshold = masc.fg_threshold
        if decided(ref_weights, threshold):
            assert math.isnan(score.concept) == (not (ref_weights > threshold).any())
        if decided(out_weights, threshold):
            assert math.isnan(score.prompt) == bool((out_weights >= threshold).all())
        event(f"CP {'NaN' if math.isnan(score.concept) else 'finite'}")
        event(f"PF {'NaN' if math.isnan(score.prompt) else 'finite'}")
        assert math.isnan(score.concept) == (score.extras["ref_foreground_patches"] == 0)
        assert math.isnan(score.prompt) == (score.extras["background_patches"] == 0)
        for value in (score.concept, score.prompt, *score.distractor_prompts.values()):
            assert math.isnan(value) or is_cosine(value)
        for value in (score.global_concept, score.global_prompt):
            assert is_cosine(value)  # whole-image scores are never NaN
        if not math.isnan(score.prompt_margin):
            assert -2 - 1e-5 <= score.prompt_margin <= 2 + 1e-5


@MODEL
@given(batch=st.lists(ms.samples(8, 48), min_size=2, max_size=5), data=st.data())
def test_scores_do_not_depend_on_batch_neighbours(masc, batch, data):
    order = data.draw(st.permutations(range(len(batch))))
    masc.clear_cache()
    first = masc.score_many(batch)
    masc.clear_cache()
    second = masc.score_many([batch[i] for i in order])
    for position, index in enumerate(order):
        a, b = first[index], second[position]
        for name in ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin"):
            x, y = getattr(a, name), getattr(b, name)
            assert float(x).hex() == float(y).hex(), (name, x, y)  # the same float, NaN included
        assert a.distractor_prompts.keys() == b.distractor_prompts.keys()
        assert all(float(a.distractor_prompts[k]).hex() == float(b.distractor_prompts[k]).hex() for k in a.distractor_prompts)
        np.testing.assert_array_equal(a.concept_map, b.concept_map)


@MODEL
@given(pair=image_with_mask(kinds=("blob", "rectangle", "soft", "empty")), subject=ms.subjects(), data=st.data())
def test_margins_are_antisymmetric(masc, pair, subject, data):
    image, mask = pair
    first = data.draw(ms.prompts(subject))
    second = data.draw(ms.prompts(subject).filter(lambda p: p != first))
    a = Sample(image, mask, image, mask, first, subject, (second,))
    b = Sample(image, mask, image, mask, second, subject, (first,))
    score_a, score_b = masc.score_many([a, b])
    if math.isnan(score_a.prompt):
        assert math.isnan(score_a.prompt_margin) and math.isnan(score_b.prompt_margin)
    else:
        assert score_a.prompt_margin == -score_b.prompt_margin
        assert score_a.prompt == score_b.distractor_prompts[first]


# ----------------------------------------------------------------------------- functional layer


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 3),
    length=st.integers(1, 24),
    hidden_fraction=st.floats(0.0, 1.0),
    replacement=st.sampled_from(["random", "huge", "zero", "inf", "nan", "copy-visible"]),
)
def test_attention_pool_ignores_hidden_tokens(head, seed, batch, length, hidden_fraction, replacement):
    generator = torch.Generator().manual_seed(seed)
    width = head.probe.shape[-1]
    tokens = torch.randn(batch, length, width, generator=generator)
    hidden = torch.rand(batch, length, generator=generator) < hidden_fraction
    changed = tokens.clone()
    count = int(hidden.sum())
    values = {
        "random": torch.randn(count, width, generator=generator) * 50,
        "huge": torch.full((count, width), 3e38),
        "zero": torch.zeros(count, width),
        "inf": torch.full((count, width), -math.inf),
        "nan": torch.full((count, width), math.nan),
        "copy-visible": tokens[~hidden][:1].expand(count, width) if (~hidden).any() else torch.zeros(count, width),
    }[replacement]
    changed[hidden] = values
    with torch.inference_mode():
        pooled = functional.attention_pool(head, tokens, hidden)
        pooled_changed = functional.attention_pool(head, changed, hidden)
    torch.testing.assert_close(pooled, pooled_changed, rtol=0, atol=0, equal_nan=True)
    # rows with every key hidden are NaN, the others finite
    empty = hidden.all(dim=-1)
    assert bool(torch.isnan(pooled[empty]).all())
    assert bool(torch.isfinite(pooled[~empty]).all())
    # and a row's pool is the pool of its visible tokens alone
    with torch.inference_mode():
        for row in range(batch):
            visible = tokens[row][~hidden[row]]
            if len(visible):
                alone = functional.attention_pool(head, visible[None], torch.zeros(1, len(visible), dtype=torch.bool))
                torch.testing.assert_close(pooled[row], alone[0], atol=1e-5, rtol=1e-5)


@FAST
@given(
    height=st.integers(1, 40), width=st.integers(1, 40),
    grid=st.tuples(st.integers(1, 24), st.integers(1, 24)), data=st.data(),
)
def test_mask_to_grid_is_bilinear_with_half_pixel_centres(height, width, grid, data):
    weights = data.draw(ms.masks((height, width), ALL_KINDS, dtypes=("float32",)))
    ours = functional.mask_to_grid(torch.from_numpy(weights), grid)
    assert ours.shape == (grid[0] * grid[1],) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), bilinear_reference(weights, grid), atol=1e-5)
    torch_bilinear = F.interpolate(torch.from_numpy(weights)[None, None], size=grid, mode="bilinear",
                                   align_corners=False, antialias=False)
    np.testing.assert_array_equal(ours.numpy(), torch_bilinear.clamp(0, 1).flatten().numpy())


@FAST
@given(
    size=st.integers(1, 64), seed=st.integers(0, 2**31 - 1),
    threshold=st.floats(0.0625, 1.0, width=32), fraction=st.floats(0.0, 1.0),
)
def test_concept_score_is_the_foreground_mean_or_nan(size, seed, threshold, fraction):
    rng = np.random.default_rng(seed)
    best_match = torch.from_numpy(rng.uniform(-1, 1, size).astype(np.float32))
    assert math.isnan(functional.concept_score(best_match, torch.zeros(size), threshold))
    # weights at the threshold are not foreground either
    assert math.isnan(functional.concept_score(best_match, torch.full((size,), threshold), threshold))
    weights = torch.from_numpy((rng.uniform(0, 1, size) < fraction).astype(np.float32))
    foreground = weights.numpy() > threshold
    value = functional.concept_score(best_match, weights, threshold)
    if foreground.any():
        assert value == pytest.approx(float(best_match.numpy()[foreground].mean()), abs=1e-6)
    else:
        assert math.isnan(value)


@FAST
@given(seed=st.integers(0, 2**31 - 1), n_ref=st.integers(1, 20), n_out=st.integers(1, 20), scale=st.floats(1e-3, 1e3))
def test_best_match_cosine_bounds(seed, n_ref, n_out, scale):
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(n_ref, 8, generator=generator) * scale
    out = torch.randn(n_out, 8, generator=generator)
    best = functional.best_match_cosine(ref, out)
    assert best.shape == (n_ref,) and bool(((best >= -1 - 1e-6) & (best <= 1 + 1e-6)).all())
    # a set that contains every reference token (scaled) matches each of them perfectly
    with_copies = torch.cat([out, ref * 2.5])
    torch.testing.assert_close(functional.best_match_cosine(ref, with_copies), torch.ones(n_ref), atol=1e-5, rtol=0)


def random_sample_tensors(head, seed: int, slots: int, n_distractors: int) -> dict:
    """One sample's unpadded tensors: tokens of two images, mask weights, text embeddings."""
    generator = torch.Generator().manual_seed(seed)
    width = head.probe.shape[-1]
    n_ref, n_out = (int(torch.randint(1, slots + 1, (1,), generator=generator)) for _ in range(2))
    return {
        "ref": torch.randn(n_ref, width, generator=generator), "out": torch.randn(n_out, width, generator=generator),
        "ref_weights": torch.rand(n_ref, generator=generator), "out_weights": torch.rand(n_out, generator=generator),
        "texts": torch.randn(2 + n_distractors, width, generator=generator),
    }


def group_inputs(head, samples: list[dict], slots: int, block: int) -> functional.GroupInputs:
    """The samples laid out as the scorer does: foreground rows first in ``block`` rows,
    images in ``slots`` rows with keys and values projected per image, distractors in as
    many slots as the longest list."""

    def keys_values(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return functional.pad_rows([functional.pool_keys_values(head, image[None])[0] for image in images], slots)

    with torch.inference_mode():
        (ref_keys_values, ref_own), (out_keys_values, out_own) = (
            keys_values([s[role] for s in samples]) for role in ("ref", "out"))
        ref_pooled = functional.attention_pool_projected(head, ref_keys_values, ~ref_own)
        out_pooled = functional.attention_pool_projected(head, out_keys_values, ~out_own)
    ref_rows, ref_rows_own = functional.pad_rows(
        [functional.unit_tokens(s["ref"])[functional.foreground(s["ref_weights"])] for s in samples], block)
    width = max(1, *(len(s["texts"]) - 2 for s in samples))
    distractors, distractors_own = functional.pad_rows([s["texts"][2:] for s in samples], width)
    return functional.GroupInputs(
        ref_rows=ref_rows, ref_rows_own=ref_rows_own,
        out_unit=functional.pad_rows([functional.unit_tokens(s["out"]) for s in samples], slots)[0], out_own=out_own,
        out_keys_values=out_keys_values, out_weights=functional.pad_rows([s["out_weights"] for s in samples], slots)[0],
        prompt=torch.stack([s["texts"][0] for s in samples]), distractors=distractors, distractors_own=distractors_own,
        ref_pooled=ref_pooled, out_pooled=out_pooled, full_prompt=torch.stack([s["texts"][1] for s in samples]),
    )


@settings(max_examples=40, **COMMON)
@given(seeds=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5, unique=True),
       distractors=st.lists(st.integers(0, 3), min_size=5, max_size=5), data=st.data())
def test_masc_scores_are_the_single_sample_formulas_and_ignore_the_group(head, seeds, distractors, data):
    """Each row of the batched scores is the paper's formula for that sample alone (computed
    apart from ``functional``: :func:`formulas_apart_from_functional`, to float rounding), and
    the same floats in any group."""
    slots, block = 24, 32
    samples = [random_sample_tensors(head, seed, slots, n) for seed, n in zip(seeds, distractors)]
    with torch.inference_mode():
        group = functional.masc_scores(head, group_inputs(head, samples, slots, block)).to_host()
        order = data.draw(st.permutations(range(len(samples))))
        subset = order[:data.draw(st.integers(1, len(samples)))]
        other = functional.masc_scores(head, group_inputs(head, [samples[i] for i in subset], slots, block)).to_host()
    for row, index in enumerate(subset):
        count = len(samples[index]["texts"]) - 2  # the group has as many distractor slots as its longest list
        for name in ("concept", "prompt", "prompt_margin", "global_concept", "global_prompt", "best_match"):
            torch.testing.assert_close(getattr(other, name)[row], getattr(group, name)[index], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(other.distractors[row, :count], group.distractors[index, :count], rtol=0, atol=0,
                                   equal_nan=True)
    for row, sample in enumerate(samples):
        expected = formulas_apart_from_functional(head, sample)
        count = len(sample["texts"]) - 2
        for name in ("concept", "prompt", "prompt_margin", "global_concept", "global_prompt"):
            got, want = float(getattr(group, name)[row]), expected[name]
            assert (math.isnan(got) and math.isnan(want)) or abs(got - want) <= 1e-5, (name, got, want)
        np.testing.assert_allclose(group.distractors[row, :count].numpy(), expected["distractors"], atol=1e-5, rtol=0)
        assert bool(torch.isnan(group.distractors[row, count:]).all())


def formulas_apart_from_functional(head, sample: dict, threshold: float = 0.5) -> dict:
    """The paper's scores of one sample computed without ``functional``: CP by float64 loops over
    the patches, the pools by transformers' own pooling head (``head.forward``, torch's
    ``MultiheadAttention``) run on the background tokens alone, cosines in float64."""
    ref, out = sample["ref"].double().numpy(), sample["out"].double().numpy()
    texts = sample["texts"].double().numpy()

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    def pool(tokens: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return head(tokens[None].float())[0].double().numpy()

    best = [max(cos(r, o) for o in out) for r in ref]
    chosen = [b for b, weight in zip(best, sample["ref_weights"].tolist()) if weight > threshold]
    background = sample["out"][sample["out_weights"] < threshold]
    pooled = pool(background) if len(background) else None
    prompt = cos(pooled, texts[0]) if pooled is not None else math.nan
    distractors = [cos(pooled, t) if pooled is not None else math.nan for t in texts[2:]]
    whole_ref, whole_out = pool(sample["ref"]), pool(sample["out"])
    return {
        "concept": sum(chosen) / len(chosen) if chosen else math.nan,
        "prompt": prompt,
        "distractors": np.asarray(distractors),
        "prompt_margin": prompt - max(distractors) if distractors else math.nan,
        "global_concept": cos(whole_ref, whole_out),
        "global_prompt": cos(whole_out, texts[1]),
    }


def test_best_match_and_concept_worked_by_hand():
    """CP on two 2-d tokens worked out on paper: reference tokens (1, 0) and (0, 1) against
    output tokens (2, 0) and (1, 1): best matches 1 and cos 45 deg = 0.70711."""
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    best = functional.best_match_cosine(ref, out)
    torch.testing.assert_close(best, torch.tensor([1.0, 0.70710678]), atol=1e-6, rtol=0)
    assert functional.concept_score(best, torch.tensor([1.0, 1.0])) == pytest.approx(0.85355339, abs=1e-6)
    assert functional.concept_score(best, torch.tensor([0.9, 0.5])) == pytest.approx(1.0, abs=1e-6)  # 0.5 is not > 0.5
    assert math.isnan(functional.concept_score(best, torch.tensor([0.5, 0.1])))


# ----------------------------------------------------------------------------- text

FILLER = st.lists(st.sampled_from(["on", "the", "beach", "a", "photo", "of", "red", "in", "snow", ","]), max_size=6)


@FAST
@given(subject=ms.subjects(), data=st.data())
def test_strip_subject_is_idempotent(subject, data):
    prompt = data.draw(ms.prompts(subject))
    # optionally surrounded by filler words that never name the subject
    prompt = " ".join([*data.draw(FILLER), prompt, *data.draw(FILLER)])
    once = strip_subject(prompt, subject)
    twice = strip_subject(once.text, subject)
    assert twice.text == once.text
    assert not twice.subject_found
    assert not re.search(rf"\b{re.escape(subject)}\b", once.text, re.IGNORECASE)


# ----------------------------------------------------------------------------- the strategies themselves


@settings(max_examples=50, **COMMON)
@given(data=st.data(), bounds=st.tuples(st.integers(1, 40), st.integers(0, 40)), modes=st.sampled_from(
    [("RGB",), ("L", "P"), ms.IMAGE_MODES]))
def test_strategies_produce_what_they_promise(data, bounds, modes):
    low, extra = bounds
    image = data.draw(ms.images(low, low + extra, modes))
    assert image.mode in modes and low <= image.width <= low + extra and low <= image.height <= low + extra
    kinds = data.draw(st.lists(st.sampled_from(ms.MASK_KINDS), min_size=1, unique=True))
    mask = data.draw(ms.masks((image.height, image.width), kinds))
    assert mask.shape == (image.height, image.width)
    assert mask.dtype in (np.uint8, np.bool_, np.float32)
    weights = load_mask(mask)
    assert ((weights >= 0) & (weights <= 1)).all()
    if kinds == ["empty"]:
        assert not weights.any()
    if kinds == ["full"]:
        assert weights.all()
    if kinds == ["rectangle"] or kinds == ["strip"]:
        assert weights.any() and set(np.unique(weights)) <= {0.0, 1.0}
    subject = data.draw(ms.subjects())
    named = data.draw(ms.prompts(subject, with_subject=True))
    unnamed = data.draw(ms.prompts(subject, with_subject=False))
    assert len(re.findall(rf"\b{re.escape(subject)}\b", named, re.IGNORECASE)) == 1
    assert not re.search(rf"\b{re.escape(subject)}\b", unnamed, re.IGNORECASE)
    sample = data.draw(ms.samples(low, low + extra, modes, max_distractors=2))
    assert np.asarray(sample.ref_mask).shape == (sample.ref_image.height, sample.ref_image.width)
    assert np.asarray(sample.out_mask).shape == (sample.out_image.height, sample.out_image.width)
    assert len(sample.distractors) <= 2 and sample.subject


def test_strategies_reject_bad_arguments():
    with pytest.raises(ValueError, match="min_side"):
        ms.images(10, 5)
    with pytest.raises(ValueError, match="mode"):
        ms.images(modes=("CMYK",))
    with pytest.raises(ValueError, match="kind"):
        ms.masks((4, 4), kinds=("star",))
    with pytest.raises(ValueError, match="dtype"):
        ms.masks((4, 4), dtypes=("int8",))
    with pytest.raises(ValueError, match="blank"):
        ms.prompts(" ")
