"""How masks are read, against the reference implementation (``masc-metric==0.3.0``) as oracle.

Wherever ours reads a mask by the reference's rule (``same_as_reference``), the weights on
the patch grid, hence the foreground and the scores, equal the reference's. Where ours
departs (two-valued masks, label maps, palettes, 16-bit images), the reading says so, and
the foreground contains every patch the reference sees (16-bit images aside).
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_masc.metric import functional
from pytest_masc.metric.inputs import MASK_RULES, MaskReadingWarning, read_mask, reference_weights

from oracle import require_oracle

masc_reference = require_oracle("masc")

TOLERANCE = 1e-4
COMMON = dict(deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHAPES = [(24, 32), (33, 50), (64, 40), (17, 17), (8, 120)]
GRIDS = [(4, 4), (7, 5), (16, 16), (3, 11), (32, 32)]
DTYPES = ["bool", "uint8", "uint16", "int32", "float32", "float64"]
# peak values: below and at the 0..1 scale, float rounding above 1, small whole numbers,
# the 8-bit scale, above it, the 16-bit scale
PEAKS = [0.3, 0.7, 1.0, 1.0000001, 2, 7, 30, 100, 128, 200, 255, 1000, 40000, 65535]
PATTERNS = ["soft", "rectangle", "labels", "ramp", "constant", "strip", "empty"]


# ----------------------------------------------------------------------------- encodings


def pattern(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """``(H, W)`` float64 in ``[0, 1]`` (``labels``: whole numbers 0..3)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "empty":
        return np.zeros(shape)
    if kind == "constant":
        return np.ones(shape)
    if kind == "ramp":
        return np.tile(np.linspace(0, 1, width), (height, 1))
    if kind == "strip":
        out = np.zeros(shape)
        start = int(rng.integers(0, width))
        out[:, start:start + int(rng.integers(1, 4))] = 1
        return out
    if kind == "rectangle":
        out = np.zeros(shape)
        top, left = int(rng.integers(0, height // 2 + 1)), int(rng.integers(0, width // 2 + 1))
        out[top:top + max(1, height // 3), left:left + max(1, width // 3)] = 1
        return out
    if kind == "labels":  # separate blobs labelled 1, 2, 3 on background 0
        out = np.zeros(shape)
        for label in (1, 2, 3):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            out[(ys - cy) ** 2 + (xs - cx) ** 2 <= (min(height, width) / 5) ** 2] = label
        return out
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.2, 0.5) * height, rng.uniform(0.2, 0.5) * width
    return np.exp(-(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2))


def encode(values: np.ndarray, kind: str, peak: float, dtype: str) -> np.ndarray:
    """``values`` scaled to ``peak`` (labels stay labels) in ``dtype``."""
    if dtype == "bool":
        return values > 0.5
    scaled = values if kind == "labels" else values * peak
    if np.dtype(dtype).kind in "ui":
        scaled = np.round(scaled)
    return scaled.astype(dtype)


@st.composite
def masks(draw):
    shape = draw(st.sampled_from(SHAPES))
    kind = draw(st.sampled_from(PATTERNS))
    dtype = draw(st.sampled_from(DTYPES))
    peak = draw(st.sampled_from(PEAKS))
    if dtype == "uint8":
        peak = min(peak, 255)
    array = encode(pattern(kind, shape, draw(st.integers(0, 2**16))), kind, peak, dtype)
    return array, f"{kind} {dtype} peak {peak} {shape}", kind, peak


def reference_grid(reference, array: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """The reference's patch-grid weights of ``array`` (its own resize of its own reading)."""
    return reference._downsample_mask(array, *grid).flatten().cpu()


def our_grid(weights: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    return functional.mask_to_grid(torch.from_numpy(weights), grid)


def read_quietly(source, what="mask"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskReadingWarning)
        return read_mask(source, what)


# ----------------------------------------------------------------------------- properties


@settings(max_examples=300, **COMMON)
@given(case=masks(), grid=st.sampled_from(GRIDS))
def test_readings_equal_the_reference_or_keep_its_foreground(reference_masc, case, grid):
    """Same reading: the same grid weights. A departure (arrays: two-valued or label map):
    every patch the reference calls foreground stays foreground, and the mask is not empty.
    Soft masks (a blob, a ramp) of 8 or more levels are never binarised."""
    array, label, kind, peak = case
    weights, reading = read_quietly(array)
    assert reading.rule in MASK_RULES, label
    if kind in ("soft", "ramp") and array.dtype != bool and peak >= 7:
        assert reading.rule == "reference", label
    theirs = reference_grid(reference_masc, array, grid)
    ours = our_grid(weights, grid)
    if reading.same_as_reference:
        np.testing.assert_array_equal(weights, reference_weights(array), err_msg=label)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0, msg=label)
        return
    assert reading.rule in ("two-valued", "label map"), label
    assert weights.max() == 1.0 and set(np.unique(weights)) <= {0.0, 1.0}, label
    assert bool(((theirs > 0.5) <= (ours > 0.5)).all()), f"{label}: CP foreground lost"
    assert bool(((theirs >= 0.5) <= (ours >= 0.5)).all()), f"{label}: PF foreground lost"
    # departures only where a binary mask is meant, and never for a soft ramp
    assert len(np.unique(array)) == 2 or reading.rule == "label map", label


def _pictures(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (*shape, 3), dtype=np.uint8), rng.integers(0, 256, (*shape, 3), dtype=np.uint8))


def assert_scores_agree(score, expected, label: str) -> None:
    for ours, theirs, name in ((score.concept, expected.cp, "CP"), (score.prompt, expected.pf, "PF")):
        if math.isnan(theirs):
            assert math.isnan(ours), f"{label}: {name} {ours} vs reference NaN"
        else:
            assert abs(ours - theirs) <= TOLERANCE, f"{label}: {name} {ours} vs reference {theirs}"
    assert score.extras["ref_foreground_patches"] == expected.extras["cp_n_ref_fg"], label
    assert score.extras["background_patches"] == expected.extras["pf_n_bg_pooled"], label


@settings(max_examples=12, **COMMON)
@given(case=masks(), seed=st.integers(0, 100))
def test_scores_equal_the_reference_where_the_reading_is_the_reference(tiny_masc, reference_masc, case, seed):
    """Through the whole scorer: the mask as reference mask and as output mask."""
    array, label, _, _ = case
    _, reading = read_quietly(array)
    if not reading.same_as_reference:
        return  # departures: checked on the grid above
    ref_pixels, out_pixels = _pictures(array.shape, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskReadingWarning)
        score = tiny_masc.score(ref_pixels, array, out_pixels, array, "a photo of a dog", "dog")
    expected = reference_masc.score(Image.fromarray(ref_pixels), array, Image.fromarray(out_pixels), array,
                                    "a photo of a dog", object_name="dog")
    assert_scores_agree(score, expected, label)
    assert score.extras["ref_mask_reading"]["rule"] == "reference"


# ----------------------------------------------------------------------------- the misfires of issue 11


def blob(shape=(64, 64), seed=3) -> np.ndarray:
    """A soft blob peaking at exactly 1, background 0 at the edges."""
    values = pattern("soft", shape, seed)
    values = np.where(values > 0.05, values, 0.0)
    return values / values.max()


MISFIRES = {
    # float rounding: a soft mask whose top is 1.0000001 is still on the 0..1 scale
    "float-max-1.0000001": ((blob() * 1.0000001).astype(np.float32), False),
    # 8-bit soft values in a uint16 array: divided by 255, not 65535
    "uint16-holding-0..255": (np.round(blob() * 255).astype(np.uint16), False),
    # a float soft mask peaking above 255: divided by 255 as the reference does (warned)
    "float-0..1000": ((blob() * 1000).astype(np.float32), True),
    # constant non-zero: weight 100/255 everywhere, below 0.5: empty, as the reference reads it
    "uint8-constant-100": (np.full((64, 64), 100, np.uint8), True),
    # a faint soft mask peaking at 30: not a label map; empty, as the reference reads it
    "uint8-faint-peak-30": (np.round(blob() * 30).astype(np.uint8), True),
}


@pytest.mark.parametrize("name", list(MISFIRES))
def test_issue_11_masks_score_like_the_reference(tiny_masc, reference_masc, name):
    mask, warns = MISFIRES[name]
    ref_pixels, out_pixels = _pictures(mask.shape, 11)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MaskReadingWarning)
        as_reference = tiny_masc.score(ref_pixels, mask, out_pixels, np.zeros(mask.shape, np.uint8), "a dog")
        as_output = tiny_masc.score(ref_pixels, np.full(mask.shape, 255, np.uint8), out_pixels, mask, "a dog")
    for score, (ref_mask, out_mask) in ((as_reference, (mask, np.zeros(mask.shape, np.uint8))),
                                        (as_output, (np.full(mask.shape, 255, np.uint8), mask))):
        expected = reference_masc.score(Image.fromarray(ref_pixels), ref_mask, Image.fromarray(out_pixels),
                                        out_mask, "a dog")
        assert_scores_agree(score, expected, name)
    assert as_reference.extras["ref_mask_reading"]["same_as_reference"] is True
    assert as_output.extras["out_mask_reading"]["same_as_reference"] is True
    named = [w for w in caught if issubclass(w.category, MaskReadingWarning)]
    assert bool(named) == warns, [str(w.message) for w in named]
    assert all(str(w.message).startswith(f"<array {mask.dtype} (64, 64)> (") for w in named)


def test_the_float_rounding_case_keeps_its_foreground(tiny_masc):
    """The case that vanished: now PF pools fewer than all 1024 patches and CP is finite."""
    mask, _ = MISFIRES["float-max-1.0000001"]
    ref_pixels, out_pixels = _pictures(mask.shape, 11)
    score = tiny_masc.score(ref_pixels, mask, out_pixels, mask, "a dog")
    assert 0 < score.extras["background_patches"] < 1024 and not math.isnan(score.concept)


# ----------------------------------------------------------------------------- deliberate departures


def labels() -> np.ndarray:
    out = np.zeros((24, 32), np.uint8)
    out[2:10, 3:12] = 1
    out[12:22, 15:30] = 2
    out[12:16, 3:8] = 3
    return out


def test_label_maps_are_foreground_where_the_reference_sees_none(reference_masc):
    weights, reading = read_mask(labels())
    np.testing.assert_array_equal(weights, labels() > 0)
    assert reading.rule == "label map" and not reading.same_as_reference
    assert "0..3" in reading.note
    assert not bool((reference_grid(reference_masc, labels(), (6, 8)) > 0.5).any())
    assert bool((our_grid(weights, (6, 8)) > 0.5).any())


def test_touching_labels_are_still_a_label_map():
    touching = labels()
    touching[2:10, 12:20] = 2  # label 2 meets label 1 along a column
    assert read_mask(touching)[1].rule == "label map"


@pytest.mark.parametrize("peak, effect", [(100, "no foreground above 0.5"), (200, "narrows")])
def test_two_valued_masks_are_binary_and_say_what_the_reference_does(peak, effect):
    mask = (labels() > 0).astype(np.uint8) * peak
    weights, reading = read_mask(mask)
    np.testing.assert_array_equal(weights, labels() > 0)
    assert reading.rule == "two-valued" and not reading.same_as_reference
    assert f"{{0, {peak}}}" in reading.note and effect in reading.note


def test_palette_masks_read_indices_as_labels():
    image = Image.frombytes("P", (32, 24), labels().tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    weights, reading = read_mask(image)
    np.testing.assert_array_equal(weights, labels() > 0)
    assert (reading.rule, reading.channel, reading.same_as_reference) == ("palette", "palette index", False)
    binary = Image.frombytes("P", (32, 24), (labels() > 0).astype(np.uint8).tobytes())
    assert read_mask(binary)[1].same_as_reference  # indices 0/1: the reference reads the same


def test_16_bit_files_use_the_16_bit_scale(tmp_path):
    ramp = np.round(np.tile(np.linspace(0, 1, 32), (24, 1)) * 65535).astype(np.uint16)
    path = tmp_path / "soft16.png"
    Image.fromarray(ramp).save(path)
    weights, reading = read_mask(path)
    assert Image.open(path).mode == "I;16"
    np.testing.assert_allclose(weights, ramp / 65535, atol=1e-6)
    assert reading.rule == "16-bit" and not reading.same_as_reference and "widens" in reading.note
    binary = tmp_path / "binary16.png"
    Image.fromarray((labels() > 0).astype(np.uint16) * 65535).save(binary)
    weights, reading = read_mask(binary)
    np.testing.assert_array_equal(weights, labels() > 0)
    assert reading.rule == "two-valued"


def test_faint_16_bit_files_fall_back_to_the_reference_with_a_warning(tmp_path):
    """20000 of 65535 is under 0.5: the 16-bit scale would leave no foreground, where the
    reference sees one, so the reference's reading is kept."""
    faint = np.round(np.tile(np.linspace(0, 1, 32), (24, 1)) * 20000).astype(np.uint16)
    path = tmp_path / "faint16.png"
    Image.fromarray(faint).save(path)
    with pytest.warns(MaskReadingWarning, match=rf"{path}.*peaks at 20000, at most 0.5 x 65535"):
        weights, reading = read_mask(path)
    np.testing.assert_array_equal(weights, reference_weights(faint))
    assert reading.rule == "reference" and reading.same_as_reference


def test_16_bit_files_holding_8_bit_values_warn_and_read_as_8_bit(tmp_path):
    soft8 = np.round(blob((24, 32)) * 255).astype(np.uint16)
    path = tmp_path / "eight_in_sixteen.png"
    Image.fromarray(soft8).save(path)
    with pytest.warns(MaskReadingWarning, match=rf"{path}.*values only up to 255: read as 8-bit"):
        weights, reading = read_mask(path)
    np.testing.assert_array_equal(weights, soft8.astype(np.float32) / np.float32(255))
    assert reading.same_as_reference


def test_alpha_and_luminance_readings_name_their_channel():
    rgba = np.dstack([np.full((24, 32, 3), 90, np.uint8), (labels() > 0).astype(np.uint8) * 255])
    _, reading = read_mask(Image.fromarray(rgba))
    assert (reading.channel, reading.rule, reading.same_as_reference) == ("alpha", "reference", False)
    gray = (labels() > 0).astype(np.uint8) * 255
    _, reading = read_mask(Image.fromarray(np.dstack([gray] * 3)))
    assert reading.channel == "luminance" and not reading.same_as_reference


def test_unambiguous_masks_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskReadingWarning)
        for mask in (labels(), labels() > 0, (labels() > 0).astype(np.uint8) * 255, blob(), np.round(blob() * 255).astype(np.uint8),
                     np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)):
            read_mask(mask)


# ----------------------------------------------------------------------------- reaching Score.extras


def test_readings_reach_the_score_extras(tiny_masc):
    ref_pixels, out_pixels = _pictures((24, 32), 5)
    out_mask = (labels() > 0).astype(np.float32) * 0.3
    score = tiny_masc.score(ref_pixels, labels(), out_pixels, out_mask, "a dog")
    assert score.extras["ref_mask_reading"]["rule"] == "label map"
    assert score.extras["out_mask_reading"] == {
        "rule": "two-valued", "same_as_reference": False, "channel": "",
        "note": "two values {0, 0.3}: foreground wherever non-zero (the reference reads it at weight 0.3: "
                "no foreground above 0.5)",
    }
    json.dumps(score.as_dict() if hasattr(score, "as_dict") else score.extras)
    assert score.extras["ref_foreground_patches"] > 0 and score.extras["out_foreground_patches"] > 0


def test_readings_follow_the_scorers_foreground_threshold(tmp_path, tiny_model_dir):
    """The rules that ask "is anything foreground?" ask it at the threshold the scores use:
    20000 / 65535 (0.31) is foreground at 0.3, so a 16-bit file keeps its 16-bit scale, and
    soft weights up to 0.4 are no warning; at the default 0.5 both fall back with a warning."""
    from pytest_masc import MaSC, Sample

    faint = np.round(np.tile(np.linspace(0, 1, 32), (24, 1)) * 20000).astype(np.uint16)
    path = tmp_path / "faint16.png"
    Image.fromarray(faint).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights, reading = read_mask(path, threshold=0.3)
    assert reading.rule == "16-bit" and "no foreground above" not in reading.note
    np.testing.assert_array_equal(weights, faint.astype(np.float32) / np.float32(65535.0))

    soft = np.full((32, 32), 0.4, np.float32)
    with pytest.warns(MaskReadingWarning, match="above the foreground threshold 0.5"):
        read_mask(soft)
    image = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lower = MaSC.from_pretrained(tiny_model_dir, device="cpu", local_files_only=True, fg_threshold=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (score,) = lower.score_many([Sample(image, soft, image, np.zeros((32, 32), bool), "a dog")])
    assert score.diagnostics.ref_foreground_patches == score.diagnostics.ref_patches
    assert score.diagnostics.ref_mask_reading["note"] == "values up to 0.4 kept as weights"
