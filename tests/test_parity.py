"""Parity with the authors' reference implementation (``masc-metric==0.3.0``) on a tiny checkpoint.

Both implementations score the same seeded samples: square, portrait, landscape and extreme
(33x500, 500x33) images; rectangle, ellipse, multi-blob, thin-strip, soft, empty and full
masks given as uint8 0/255, float 0..1 (hard and soft), bool arrays and PIL images; inputs
as PIL images, arrays and files; references, outputs and prompts shared between samples;
patch budgets of 1024, 256 and 64. CP and PF must agree to 1e-4, NaN exactly where the
reference gives NaN, and the diagnostics that mean the same thing must be equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from pytest_masc import MaSC, Sample
from pytest_masc.metric import functional

from oracle import require_oracle

masc_reference = require_oracle("masc")

TOLERANCE = 1e-4
PATCH_BUDGETS = (1024, 256, 64)

# (height, width): square, portrait, landscape, extreme wide, extreme tall, small
SHAPES = [(128, 128), (160, 96), (96, 160), (33, 500), (500, 33), (40, 56)]


# ----------------------------------------------------------------------------- sample set


def _picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` uint8: coarse coloured blocks plus a gradient and noise (not pure noise)."""
    coarse = rng.integers(0, 256, (max(1, height // 12), max(1, width // 12), 3))
    rows = np.minimum(np.arange(height) * coarse.shape[0] // height, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(width) * coarse.shape[1] // width, coarse.shape[1] - 1)
    blocks = coarse[rows][:, cols].astype(np.float64)
    gradient = np.linspace(0, 60, width)[None, :, None]
    noise = rng.normal(0, 20, (height, width, 3))
    return np.clip(blocks * 0.7 + gradient + noise, 0, 255).astype(np.uint8)


def _mask_weights(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    """``(H, W)`` float weights in [0, 1]; every kind but ``soft`` is exactly 0/1."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "empty":
        return np.zeros(shape)
    if kind == "full":
        return np.ones(shape)
    if kind == "rectangle":
        top, left = int(rng.integers(0, height // 2 + 1)), int(rng.integers(0, width // 2 + 1))
        bottom = int(rng.integers(top + max(1, height // 4), height + 1))
        right = int(rng.integers(left + max(1, width // 4), width + 1))
        out = np.zeros(shape)
        out[top:bottom, left:right] = 1
        return out
    if kind == "strip":  # thin: 2 pixels across the long side
        out = np.zeros(shape)
        if height >= width:
            start = int(rng.integers(0, width - 1))
            out[:, start:start + 2] = 1
        else:
            start = int(rng.integers(0, height - 1))
            out[start:start + 2, :] = 1
        return out
    blobs = 1 if kind in ("ellipse", "soft") else 3
    field = np.zeros(shape)
    for _ in range(blobs):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.15, 0.45) * height, rng.uniform(0.15, 0.45) * width
        field = np.maximum(field, np.exp(-(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2)))
    if kind == "soft":
        return field
    return (field > math.exp(-1)).astype(np.float64)


def _encode_mask(weights: np.ndarray, encoding: str) -> Any:
    if encoding == "uint8":
        return np.round(weights * 255).astype(np.uint8)
    if encoding == "float":
        return weights.astype(np.float32)
    if encoding == "bool":
        return weights > 0.5
    if encoding == "pil":
        return Image.fromarray(np.round(weights * 255).astype(np.uint8))
    raise AssertionError(encoding)


def _as_reference_mask(mask: Any) -> np.ndarray:
    return np.asarray(mask)


@dataclass
class Case:
    """One sample, in the form each implementation takes."""

    ours: Sample
    ref_image: Image.Image
    ref_mask: np.ndarray
    out_image: Image.Image
    out_mask: np.ndarray
    prompt: str
    subject: Optional[str]
    label: str


PROMPTS = [
    # (prompt, subject)
    ("a photo of a sks dog on the beach", "sks dog"),
    ("The Sks Dog  sleeping in the snow", "sks dog"),
    ("an image of a teddy bear on a wooden table", "teddy bear"),
    ("a watercolor painting of a garden", "teddy bear"),  # subject absent
    ("a photo of   a red car at night", None),  # no subject: the prompt as given
    ("a vase  in   the kitchen", ""),  # blank subject: the prompt as given
]

# kinds of (reference mask, output mask) and their encodings, cycled over the samples
MASK_PLAN = [
    ("rectangle", "uint8", "ellipse", "uint8"),
    ("ellipse", "float", "rectangle", "bool"),
    ("blobs", "bool", "strip", "uint8"),
    ("soft", "float", "soft", "uint8"),
    ("empty", "uint8", "rectangle", "float"),  # CP is NaN
    ("rectangle", "pil", "full", "uint8"),  # PF is NaN
    ("strip", "uint8", "blobs", "float"),
    ("full", "float", "empty", "bool"),
    ("soft", "uint8", "ellipse", "pil"),
    ("ellipse", "bool", "full", "bool"),  # PF is NaN
    ("empty", "bool", "empty", "uint8"),  # CP is NaN
    ("blobs", "uint8", "soft", "float"),
]


def build_cases(directory) -> list[Case]:
    """26 seeded samples over 6 shared references, 6 shared prompts and 2 shared outputs."""
    rng = np.random.default_rng(20240531)
    refs = []
    for index, (height, width) in enumerate(SHAPES):
        pixels = _picture(rng, height, width)
        image = Image.fromarray(pixels)
        path = directory / f"ref{index}.png"
        image.save(path)
        # our side reads the reference three ways: a file, an array, a PIL image
        ours = (str(path), pixels, image)[index % 3]
        refs.append((image, ours))

    cases = []
    shared_out = {}
    for index in range(26):
        ref_index = index % len(SHAPES)
        ref_image, ref_ours = refs[ref_index]
        if index in (20, 21) or index in (24, 25):
            # two outputs are used twice, with different masks (and prompts)
            key = 0 if index in (20, 24) else 1
            if key not in shared_out:
                height, width = SHAPES[(index + 3) % len(SHAPES)]
                shared_out[key] = Image.fromarray(_picture(rng, height, width))
            out_image = shared_out[key]
        else:
            if index % 4 == 0:
                # an output close to its reference: CP near 1, not only noise-level scores
                noisy = np.asarray(ref_image).astype(np.int16) + rng.integers(-8, 9, np.asarray(ref_image).shape)
                out_image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
            else:
                height, width = SHAPES[(index * 5 + 1) % len(SHAPES)]
                out_image = Image.fromarray(_picture(rng, height, width))
        out_ours: Any = out_image if index % 2 else np.asarray(out_image)

        ref_kind, ref_encoding, out_kind, out_encoding = MASK_PLAN[index % len(MASK_PLAN)]
        ref_mask = _encode_mask(_mask_weights(rng, (ref_image.height, ref_image.width), ref_kind), ref_encoding)
        out_mask = _encode_mask(_mask_weights(rng, (out_image.height, out_image.width), out_kind), out_encoding)
        prompt, subject = PROMPTS[index % len(PROMPTS)]
        sample = Sample(ref_ours, ref_mask, out_ours, out_mask, prompt, subject)
        label = (
            f"#{index} ref{ref_index} {ref_image.width}x{ref_image.height} {ref_kind}/{ref_encoding} "
            f"out {out_image.width}x{out_image.height} {out_kind}/{out_encoding} subject={subject!r}"
        )
        cases.append(Case(sample, ref_image, _as_reference_mask(ref_mask), out_image,
                          _as_reference_mask(out_mask), prompt, subject, label))
    return cases


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[Case]:
    return build_cases(tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module")
def scorers(tiny_model_dir, tiny_masc, reference_masc):
    """Ours and the reference per patch budget, built once."""
    built = {1024: (tiny_masc, reference_masc)}
    for budget in PATCH_BUDGETS:
        if budget not in built:
            built[budget] = (
                MaSC.from_pretrained(tiny_model_dir, device="cpu", local_files_only=True, max_num_patches=budget),
                masc_reference.MaSC(model_id=str(tiny_model_dir), device="cpu", naflex_max_patches=budget),
            )
    return built


@pytest.fixture(scope="module")
def reference_results(cases, scorers):
    """The reference's result for every case and patch budget (computed once)."""
    results = {}
    for budget in PATCH_BUDGETS:
        reference = scorers[budget][1]
        results[budget] = [
            reference.score(c.ref_image, c.ref_mask, c.out_image, c.out_mask, c.prompt, object_name=c.subject)
            for c in cases
        ]
    return results


# ----------------------------------------------------------------------------- checks


def _close(ours: float, theirs: float) -> bool:
    if math.isnan(theirs) or math.isnan(ours):
        return math.isnan(theirs) and math.isnan(ours)
    return abs(ours - theirs) <= TOLERANCE


def assert_agrees(score, expected, label: str) -> None:
    assert _close(score.concept, expected.cp), f"{label}: CP {score.concept!r} vs reference {expected.cp!r}"
    assert _close(score.prompt, expected.pf), f"{label}: PF {score.prompt!r} vs reference {expected.pf!r}"
    extras, theirs = score.extras, expected.extras
    assert extras["prompt_text"] == theirs["prompt_text"], label
    assert extras["prompt_stripped"] == theirs["prompt_stripped"], label
    assert extras["ref_foreground_patches"] == theirs["cp_n_ref_fg"], label
    assert extras["ref_patches"] == theirs["cp_n_ref_total"], label
    assert extras["ref_foreground_fraction"] == pytest.approx(theirs["cp_fg_frac_ref"], abs=1e-6), label
    assert extras["background_patches"] == theirs["pf_n_bg_pooled"], label
    assert extras["out_foreground_patches"] == theirs["pf_n_fg"], label
    assert extras["out_patches"] == theirs["pf_n_total"], label


@pytest.mark.parametrize("budget", PATCH_BUDGETS)
def test_score_one_at_a_time_matches_reference(budget, cases, scorers, reference_results):
    ours = scorers[budget][0]
    for case, expected in zip(cases, reference_results[budget]):
        score = ours.score(
            case.ours.ref_image, case.ours.ref_mask, case.ours.out_image, case.ours.out_mask,
            case.prompt, case.subject,
        )
        assert_agrees(score, expected, f"budget {budget} {case.label}")
        grid = score.extras["ref_grid"]
        assert grid[0] * grid[1] <= budget


@pytest.mark.parametrize("budget", PATCH_BUDGETS)
def test_score_many_matches_reference(budget, cases, scorers, reference_results):
    ours = scorers[budget][0]
    ours.clear_cache()
    scores = ours.score_many([c.ours for c in cases])
    assert len(scores) == len(cases)
    for case, score, expected in zip(cases, scores, reference_results[budget]):
        assert_agrees(score, expected, f"budget {budget} {case.label}")


def test_sample_set_covers_the_edge_cases(cases, reference_results):
    """The set is only a parity test if it has NaN and finite scores, and every layout."""
    for budget in PATCH_BUDGETS:
        results = reference_results[budget]
        assert any(math.isnan(r.cp) for r in results) and any(not math.isnan(r.cp) for r in results)
        assert any(math.isnan(r.pf) for r in results) and any(not math.isnan(r.pf) for r in results)
        assert any(r.extras["prompt_stripped"] for r in results)
        assert any(not r.extras["prompt_stripped"] for r in results)
        assert any(not math.isnan(r.cp) and r.cp > 0.99 for r in results)  # near-copies
    sizes = {(c.ref_image.height, c.ref_image.width) for c in cases} | {
        (c.out_image.height, c.out_image.width) for c in cases
    }
    assert {(33, 500), (500, 33), (128, 128), (160, 96), (96, 160)} <= sizes
    dtypes = {np.asarray(c.ours.ref_mask).dtype for c in cases} | {np.asarray(c.ours.out_mask).dtype for c in cases}
    assert {np.dtype(np.uint8), np.dtype(np.float32), np.dtype(bool)} <= dtypes
    assert any(isinstance(c.ours.ref_mask, Image.Image) for c in cases)


def test_attention_pool_matches_reference_pooler(tiny_masc):
    """The functional pooler equals the reference's ``_pool_with_kpm`` on a real head."""
    head = tiny_masc.model.vision_model.head
    generator = torch.Generator().manual_seed(7)
    width = tiny_masc.model.config.vision_config.hidden_size
    for length in (1, 5, 37):
        tokens = torch.randn(1, length, width, generator=generator)
        hidden = torch.rand(1, length, generator=generator) < 0.6
        hidden[0, 0] = False  # at least one key left (the reference returns NaN-free only then)
        with torch.inference_mode():
            ours = functional.attention_pool(head, tokens, hidden)
            theirs = masc_reference.MaSC._pool_with_kpm(head, tokens, hidden[0])
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- fixed resolution


@pytest.fixture(scope="module", params=["bilinear", "bicubic"])
def fixed_scorers(request, tmp_path_factory):
    """Ours and the reference on a tiny fixed-resolution checkpoint (64x64, 4x4 patches). Its
    directory name has no ``naflex``: the reference decides the kind from the model id. With
    a bicubic processor (SigLIP v1's), ours lets the processor resize instead of doing it."""
    from pytest_masc.testing import tiny_fixed_checkpoint

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[request.param]
    directory = tiny_fixed_checkpoint(tmp_path_factory.mktemp("models") / f"tiny-siglip2-{request.param}-64", resample=resample)
    ours = MaSC.from_pretrained(directory, device="cpu", local_files_only=True)
    assert (ours.image_encoder.preprocess_settings is None) == (request.param == "bicubic")
    return ours, masc_reference.MaSC(model_id=str(directory), device="cpu")


def test_fixed_resolution_backbone_matches_reference(cases, fixed_scorers):
    ours, reference = fixed_scorers
    assert ours.image_encoder.fixed_size == (64, 64) and ours.one_image_forward is None
    expected = [
        reference.score(c.ref_image, c.ref_mask, c.out_image, c.out_mask, c.prompt, object_name=c.subject)
        for c in cases
    ]
    assert any(math.isnan(r.pf) for r in expected) and any(not math.isnan(r.cp) for r in expected)
    for case, expected_one in zip(cases[:6], expected):
        score = ours.score(case.ours.ref_image, case.ours.ref_mask, case.ours.out_image, case.ours.out_mask,
                           case.prompt, case.subject)
        assert_agrees(score, expected_one, f"fixed one at a time {case.label}")
        assert score.extras["ref_grid"] == score.extras["out_grid"] == [4, 4]
    ours.clear_cache()
    for case, score, expected_one in zip(cases, ours.score_many([c.ours for c in cases]), expected):
        assert_agrees(score, expected_one, f"fixed score_many {case.label}")


def test_fixed_resolution_batches_agree_with_single_images(cases, fixed_scorers):
    """Padded-free batches of 4 fixed-resolution images score as one image at a time does."""
    single, _ = fixed_scorers
    batched = MaSC(single.model, single.image_processor, single.tokenizer, device=single.device,
                   dtype=single.dtype, batch_size=4)
    samples = [c.ours for c in cases[:8]]
    single.clear_cache()
    for one, many in zip(single.score_many(samples), batched.score_many(samples)):
        for name in ("concept", "prompt", "global_concept", "global_prompt"):
            x, y = getattr(one, name), getattr(many, name)
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-5, (name, x, y)
