"""Text-prompted segmenters (SAM3, CLIPSeg) on tiny random checkpoints: masks equal direct
transformers computations, empty masks, caching counts, batching, inputs and load errors."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pytest_masc.errors import DeviceError, InputError, ModelLoadError
from pytest_masc.metric.segmentation import (
    DEFAULT_SEGMENTER_MODELS,
    Segmenter,
    TextTruncatedWarning,
    foreground_fraction,
    image_key,
    load_segmenter,
    read_image,
    resize_uint8_like_torchvision,
    sam3_instance_scores,
    sam3_union_mask,
)
from pytest_masc.testing.segmenters import (
    CLIP_TEXT_LENGTH,
    SAM3_TEXT_LENGTH,
    TINY_SAM3_IMAGE_SIZE,
    tiny_clipseg_checkpoint,
)

TEXTS = ["dog", "a red car", "the sks backpack"]


def picture(seed: int, height: int, width: int, block: int = 8) -> np.ndarray:
    """An ``HxWx3`` uint8 image of random ``block``-pixel squares (not resized to a multiple)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (-(-height // block), -(-width // block), 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]


IMAGES = [picture(1, 48, 64), picture(2, 100, 37), picture(3, 112, 112), picture(4, 150, 210, block=3)]


@pytest.fixture(scope="module")
def sam3_direct(sam3_dir):
    """The tiny ``Sam3Model`` and its tokenizer, loaded with plain transformers."""
    from transformers import AutoTokenizer, Sam3Model

    return Sam3Model.from_pretrained(sam3_dir).eval(), AutoTokenizer.from_pretrained(sam3_dir)


@pytest.fixture(scope="module")
def clipseg_direct(clipseg_dir):
    """The tiny CLIPSeg model and its processor (PIL image processor + tokenizer)."""
    from transformers import AutoTokenizer, CLIPSegForImageSegmentation, CLIPSegProcessor
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessorPil.from_pretrained(clipseg_dir),
        tokenizer=AutoTokenizer.from_pretrained(clipseg_dir),
    )
    return CLIPSegForImageSegmentation.from_pretrained(clipseg_dir).eval(), processor


def sam3_outputs(sam3_direct, image: np.ndarray, text: str):
    """A full ``Sam3Model`` forward on one image and prompt, preprocessed as the SAM3
    processor does: antialiased bilinear resize of the uint8 image (in uint8 on x86 and ARM
    CPUs), then ``(x - 127.5) / 127.5``."""
    model, tokenizer = sam3_direct
    size = TINY_SAM3_IMAGE_SIZE
    pixels = torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()[None]
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=[size, size], mode="bilinear", align_corners=False, antialias=True)
    pixels = (pixels.float() - 127.5) / 127.5
    tokens = tokenizer([text], padding="max_length", max_length=SAM3_TEXT_LENGTH, return_tensors="pt")
    with torch.inference_mode():
        return model(pixel_values=pixels, input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])


def sam3_union_direct(outputs, size: tuple[int, int], threshold: float, mask_threshold: float = 0.5) -> np.ndarray:
    """The union rule written out: keep instances with sigmoid(logit) * sigmoid(presence) >
    threshold, resize each sigmoid mask bilinearly to the image, cut, OR them together."""
    scores = outputs.pred_logits[0].sigmoid() * outputs.presence_logits[0].sigmoid()
    union = np.zeros(size, bool)
    for query in torch.nonzero(scores > threshold).flatten().tolist():
        probability = outputs.pred_masks[0, query].sigmoid()[None, None]
        resized = F.interpolate(probability, size=list(size), mode="bilinear", align_corners=False)[0, 0]
        union |= (resized > mask_threshold).numpy()
    return union


def sam3_scores(outputs) -> torch.Tensor:
    return (outputs.pred_logits[0].sigmoid() * outputs.presence_logits[0].sigmoid()).flatten()


def clipseg_direct_mask(clipseg_direct, image: np.ndarray, text: str, threshold: float) -> np.ndarray:
    """CLIPSeg's rule written out: processor + full forward, sigmoid, bilinear resize to the
    image (align_corners=False), foreground above ``threshold``."""
    model, processor = clipseg_direct
    inputs = processor(text=[text], images=[image], padding="max_length", max_length=CLIP_TEXT_LENGTH, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits
    probability = logits.reshape(1, 1, *logits.shape[-2:]).sigmoid()
    return (F.interpolate(probability, size=list(image.shape[:2]), mode="bilinear", align_corners=False)[0, 0] > threshold).numpy()


@pytest.fixture(scope="module")
def sam3_median_threshold(sam3_direct) -> float:
    """The median instance score over the test pairs: about half the instances pass it."""
    scores = torch.cat([sam3_scores(sam3_outputs(sam3_direct, image, text)) for image in IMAGES for text in TEXTS[:2]])
    return float(scores.median())


# ---------------------------------------------------------------------- equal to transformers


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_clipseg_masks_equal_a_direct_transformers_computation(clipseg_dir, clipseg_direct, threshold):
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu", threshold=threshold, batch_size=3)
    pairs = [(image, text) for image in IMAGES for text in TEXTS]
    masks = segmenter.segment_many([image for image, _ in pairs], [text for _, text in pairs])
    fractions = []
    for (image, text), mask in zip(pairs, masks):
        expected = clipseg_direct_mask(clipseg_direct, image, text, threshold)
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask, expected)
        fractions.append(foreground_fraction(mask))
    assert 0.0 < min(fractions) and max(fractions) < 1.0  # neither trivially empty nor full


def test_sam3_masks_equal_the_union_rule_on_model_outputs(sam3_dir, sam3_direct, sam3_median_threshold):
    threshold = sam3_median_threshold
    segmenter = load_segmenter("sam3", sam3_dir, device="cpu", threshold=threshold, batch_size=3)
    pairs = [(image, text) for image in IMAGES for text in TEXTS[:2]]
    masks = segmenter.segment_many([image for image, _ in pairs], [text for _, text in pairs])
    kept_counts = []
    for (image, text), mask in zip(pairs, masks):
        outputs = sam3_outputs(sam3_direct, image, text)
        kept_counts.append(int((sam3_scores(outputs) > threshold).sum()))
        np.testing.assert_array_equal(mask, sam3_union_direct(outputs, image.shape[:2], threshold))
        assert mask.shape == image.shape[:2]
    queries = sam3_direct[0].config.detr_decoder_config.num_queries
    # the rule was exercised: some instances dropped, some kept, several instances in a union
    assert sum(kept_counts) > 0 and max(kept_counts) > 1 and min(kept_counts) < queries
    assert any(0.0 < foreground_fraction(mask) < 1.0 for mask in masks)


def test_sam3_mask_threshold_is_applied_after_resizing(sam3_dir, sam3_direct):
    image, text = IMAGES[3], TEXTS[0]
    outputs = sam3_outputs(sam3_direct, image, text)
    for mask_threshold in (0.3, 0.7):
        segmenter = load_segmenter("sam3", sam3_dir, device="cpu", threshold=0.0, mask_threshold=mask_threshold)
        expected = sam3_union_direct(outputs, image.shape[:2], 0.0, mask_threshold)
        np.testing.assert_array_equal(segmenter.segment(image, text), expected)


# ---------------------------------------------------------------------- empty masks


@pytest.mark.parametrize("kind", ["sam3", "clipseg"])
def test_threshold_one_gives_empty_masks_not_errors(kind, sam3_dir, clipseg_dir):
    directory = sam3_dir if kind == "sam3" else clipseg_dir
    segmenter = load_segmenter(kind, directory, device="cpu", threshold=1.0)
    masks = segmenter.segment_many(IMAGES, TEXTS[0])
    for image, mask in zip(IMAGES, masks):
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        assert not mask.any()
        assert foreground_fraction(mask) == 0.0


def test_sam3_batch_with_found_and_not_found_images(sam3_dir, sam3_direct):
    """A threshold between two images' best instance scores: one image gets its union, the
    other, in the same batch, an empty mask."""
    best = [float(sam3_scores(sam3_outputs(sam3_direct, image, "dog")).max()) for image in IMAGES]
    low, high = min(best), max(best)
    assert high - low > 1e-3, best
    threshold = (low + high) / 2
    segmenter = load_segmenter("sam3", sam3_dir, device="cpu", threshold=threshold, batch_size=len(IMAGES))
    masks = segmenter.segment_many(IMAGES, "dog")
    for image, mask, score in zip(IMAGES, masks, best):
        expected = sam3_union_direct(sam3_outputs(sam3_direct, image, "dog"), image.shape[:2], threshold)
        np.testing.assert_array_equal(mask, expected)
        if score <= threshold:
            assert not mask.any()
    assert any(not mask.any() for mask in masks) and any(mask.any() for mask in masks)


def test_sam3_union_of_no_instances_is_empty_and_of_one_is_its_mask():
    logits = torch.randn(5, 12, 12, generator=torch.Generator().manual_seed(0)) * 3
    scores = torch.tensor([0.1, 0.2, 0.9, 0.3, 0.05])
    empty = sam3_union_mask(logits, scores, (30, 20), threshold=0.95, mask_threshold=0.5)
    assert empty.shape == (30, 20) and empty.dtype == torch.bool and not empty.any()
    one = sam3_union_mask(logits, scores, (30, 20), threshold=0.5, mask_threshold=0.5)
    alone = F.interpolate(logits[2].sigmoid()[None, None], size=[30, 20], mode="bilinear", align_corners=False)[0, 0] > 0.5
    assert torch.equal(one, alone) and alone.any() and not alone.all()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    queries=st.integers(1, 9),
    chunk=st.integers(1, 4),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    threshold=st.floats(0.0, 1.0),
)
def test_sam3_union_does_not_depend_on_the_resize_chunk(seed, queries, chunk, height, width, threshold):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(queries, 9, 9, generator=generator) * 4
    scores = torch.rand(queries, generator=generator)
    chunked = sam3_union_mask(logits, scores, (height, width), threshold, 0.5, chunk=chunk)
    whole = sam3_union_mask(logits, scores, (height, width), threshold, 0.5, chunk=queries)
    per_instance = torch.zeros(height, width, dtype=torch.bool)
    for query in range(queries):
        if scores[query] > threshold:
            per_instance |= sam3_union_mask(logits[query:query + 1], scores[query:query + 1], (height, width), threshold, 0.5)
    assert torch.equal(chunked, whole) and torch.equal(whole, per_instance)


def test_sam3_resize_float_path_of_gpus(monkeypatch):
    """Where torchvision does not resize in uint8 (GPUs), it resizes in float32 and rounds:
    within one grey level of the uint8 path; an image already at size is passed through."""
    import pytest_masc.metric.segmentation.sam3 as sam3

    image = torch.from_numpy(picture(5, 50, 70, block=2)).permute(2, 0, 1).contiguous()[None]
    native = resize_uint8_like_torchvision(image, (112, 112))
    monkeypatch.setattr(sam3, "_native_uint8_bilinear_on_cpu", lambda: False)
    float_path = resize_uint8_like_torchvision(image, (112, 112))
    expected = F.interpolate(image.float(), size=[112, 112], mode="bilinear", align_corners=False, antialias=True)
    assert float_path.dtype == torch.uint8 and torch.equal(float_path, expected.round().to(torch.uint8))
    assert (native.int() - float_path.int()).abs().max() <= 1
    assert resize_uint8_like_torchvision(image, (50, 70)) is image


def test_instance_scores_multiply_presence():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    presence = torch.tensor([[1.0]])
    expected = torch.sigmoid(logits) * torch.sigmoid(torch.tensor(1.0))
    assert torch.allclose(sam3_instance_scores(logits, presence), expected)
    assert torch.allclose(sam3_instance_scores(logits, None), torch.sigmoid(logits))


# ---------------------------------------------------------------------- caching and batching


def test_each_distinct_image_and_text_is_segmented_once(clipseg_dir):
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    a, b = IMAGES[0], IMAGES[1]
    masks = segmenter.segment_many([a, b, a.copy(), b, a], ["dog", "dog", "dog", "cat", "cat"])
    stats = segmenter.stats
    assert (stats.segmented, stats.cached, stats.images_encoded, stats.texts_encoded) == (4, 1, 2, 2)
    assert masks[0] is masks[2]  # the same pixels in another array: the same mask
    again = segmenter.segment_many([b, a], ["cat", "dog"])
    assert (stats.segmented, stats.cached, stats.images_encoded, stats.texts_encoded) == (4, 3, 2, 2)
    assert again[0] is masks[3] and again[1] is masks[0]
    segmenter.clear_cache()
    segmenter.segment(a, "dog")
    assert (stats.segmented, stats.texts_encoded) == (5, 3)


def test_cache_is_lru_and_can_be_turned_off(clipseg_dir):
    bounded = load_segmenter("clipseg", clipseg_dir, device="cpu", cache_size=1)
    for image in (IMAGES[0], IMAGES[1], IMAGES[0]):
        bounded.segment(image, "dog")
    assert bounded.stats.segmented == 3
    off = load_segmenter("clipseg", clipseg_dir, device="cpu", cache_size=0)
    off.segment_many([IMAGES[0], IMAGES[0]], ["dog", "dog"])  # repeats within a call: once
    off.segment(IMAGES[0], "dog")
    assert (off.stats.segmented, off.stats.cached) == (2, 1)


def test_files_are_keyed_by_path_and_modification(clipseg_dir, tmp_path):
    path = tmp_path / "picture.png"
    Image.fromarray(IMAGES[1]).save(path)
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    first = segmenter.segment(path, "dog")
    assert first.shape == IMAGES[1].shape[:2]
    np.testing.assert_array_equal(first, segmenter.segment(IMAGES[1], "dog"))  # same pixels, other key
    assert segmenter.segment(str(path), "dog") is first
    assert segmenter.stats.segmented == 2
    Image.fromarray(IMAGES[0]).save(path)  # a new file under the same name is segmented anew
    assert segmenter.segment(path, "dog").shape == IMAGES[0].shape[:2]
    assert image_key(path) != image_key(IMAGES[0]) and segmenter.stats.segmented == 3


def test_a_higher_clipseg_threshold_gives_a_smaller_mask_inside_the_other(clipseg_dir):
    strict = load_segmenter("clipseg", clipseg_dir, device="cpu", threshold=0.9)
    loose = load_segmenter("clipseg", clipseg_dir, device="cpu", threshold=0.1)
    strict_mask, loose_mask = strict.segment(IMAGES[3], "dog"), loose.segment(IMAGES[3], "dog")
    assert strict_mask.sum() < loose_mask.sum() and not (strict_mask & ~loose_mask).any()
    assert strict.settings != loose.settings


@settings(max_examples=15, deadline=None)
@given(calls=st.lists(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=6), min_size=1, max_size=4))
def test_segmentation_count_is_the_number_of_distinct_pairs(clipseg_dir, clipseg_reference_masks, calls):
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu", batch_size=2)
    seen: set[tuple[int, int]] = set()
    images_with_new_pairs = 0  # per call, an image is encoded once if any of its pairs is new
    for call in calls:
        masks = segmenter.segment_many([IMAGES[i] for i, _ in call], [TEXTS[t] for _, t in call])
        for pair, mask in zip(call, masks):
            np.testing.assert_array_equal(mask, clipseg_reference_masks[pair])
        images_with_new_pairs += len({i for i, t in call if (i, t) not in seen})
        seen.update(call)
    total = sum(len(call) for call in calls)
    assert segmenter.stats.segmented == len(seen)
    assert segmenter.stats.cached == total - len(seen)
    assert segmenter.stats.images_encoded == images_with_new_pairs
    assert segmenter.stats.texts_encoded == len({t for _, t in seen})


@pytest.fixture(scope="module")
def clipseg_reference_masks(clipseg_dir) -> dict[tuple[int, int], np.ndarray]:
    """Every (image, text) pair segmented one at a time."""
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu", batch_size=1)
    return {(i, t): segmenter.segment(image, text) for i, image in enumerate(IMAGES) for t, text in enumerate(TEXTS)}


@pytest.mark.parametrize("kind", ["sam3", "clipseg"])
def test_batches_give_the_masks_of_one_at_a_time(kind, sam3_dir, clipseg_dir, sam3_median_threshold):
    directory = sam3_dir if kind == "sam3" else clipseg_dir
    threshold = sam3_median_threshold if kind == "sam3" else 0.5
    pairs = [(i, t) for i in range(len(IMAGES)) for t in range(len(TEXTS))][::-1]
    batched = load_segmenter(kind, directory, device="cpu", threshold=threshold, batch_size=5)
    masks = batched.segment_many([IMAGES[i] for i, _ in pairs], [TEXTS[t] for _, t in pairs])
    assert batched.stats.images_encoded == len(IMAGES) and batched.stats.texts_encoded == len(TEXTS)
    single = load_segmenter(kind, directory, device="cpu", threshold=threshold, batch_size=1)
    for (i, t), mask in zip(pairs, masks):
        np.testing.assert_array_equal(mask, single.segment(IMAGES[i], TEXTS[t]))
    assert any(mask.any() for mask in masks)


def test_masks_are_read_only_bool_arrays_at_image_size(sam3_dir):
    segmenter = load_segmenter("sam3", sam3_dir, device="cpu", threshold=0.0)
    for image in IMAGES:
        mask = segmenter.segment(image, "dog")
        assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == image.shape[:2]
        with pytest.raises(ValueError):
            mask[0, 0] = True


# ---------------------------------------------------------------------- inputs


def test_image_inputs_paths_pil_grey_rgba(clipseg_dir, tmp_path):
    rgb = IMAGES[0]
    grey = rgb[:, :, 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    transparent = rgba.copy()
    transparent[:, :, 3] = 0
    assert np.array_equal(read_image(Image.fromarray(rgb)), rgb)
    assert np.array_equal(read_image(grey), np.dstack([grey] * 3))
    assert np.array_equal(read_image(rgba), rgb)
    assert np.array_equal(read_image(transparent), rgb)  # alpha dropped, as the scorer reads images
    assert (read_image(transparent, transparent="white") == 255).all()  # as transformers' processors
    assert np.array_equal(read_image(Image.fromarray(grey, "L")), np.dstack([grey] * 3))
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    masks = segmenter.segment_many([rgb, Image.fromarray(rgb), rgba], "dog")
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 2), np.uint8), "HxW, HxWx3 or HxWx4"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        ("/no/such/image.png", "not found"),
        (42, "<int>: expected a path, a PIL image or a numpy array"),
    ],
)
def test_bad_images_are_input_errors_naming_them(clipseg_dir, bad, message):
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    with pytest.raises(InputError, match=message):
        segmenter.segment(bad, "dog")


def test_unreadable_file_is_an_input_error(clipseg_dir, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    with pytest.raises(InputError, match="broken.png"):
        segmenter.segment(path, "dog")
    with pytest.raises(InputError, match="directory"):
        segmenter.segment(tmp_path, "dog")


def image_files_with_two_readings(directory: Path) -> dict[str, Path]:
    """Files whose pixels depend on how transparency and bit depth are read."""
    rgb = picture(7, 40, 56)
    rgba = np.dstack([rgb, np.where(np.arange(56) < 28, 0, 255).astype(np.uint8)[None].repeat(40, 0)])
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0  # palette entry 0 is transparent
    sixteen = Image.fromarray((picture(8, 40, 56)[:, :, 0].astype(np.uint16) * 257))
    files = {"rgba": Image.fromarray(rgba, "RGBA"), "palette": palette, "16-bit": sixteen,
             "grey+alpha": Image.fromarray(rgba[:, :, [0, 3]], "LA")}
    paths = {}
    for name, image in files.items():
        paths[name] = directory / f"{name}.png"
        image.save(paths[name], **({"transparency": 0} if name == "palette" else {}))
    return paths


def test_segmenter_sees_the_pixels_the_scorer_scores(clipseg_dir, tmp_path):
    """One reader: a file with transparency, a palette or 16 bits is read by the segmenter
    as the scorer reads it (alpha dropped, as the reference does), so the mask is made from
    the pixels that are scored; a decompression bomb fails the same way in both."""
    from test_inputs import blank_png

    from pytest_masc.metric.inputs import load_image

    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu", threshold=0.5)
    for name, path in image_files_with_two_readings(tmp_path).items():
        scored = np.asarray(load_image(path))
        assert np.array_equal(read_image(path), scored), name
        np.testing.assert_array_equal(segmenter.segment(path, "dog"), segmenter.segment(scored.copy(), "dog"), err_msg=name)
    bomb = tmp_path / "bomb.png"
    blank_png(bomb, 9000, 9000)
    with pytest.raises(InputError) as scorer_error:
        load_image(bomb)
    with pytest.raises(InputError) as segmenter_error:
        segmenter.segment(bomb, "dog")
    assert str(segmenter_error.value) == str(scorer_error.value)
    assert str(bomb) in str(segmenter_error.value) and "cannot read the image: too large" in str(segmenter_error.value)


def test_bad_texts_and_lengths_are_input_errors(clipseg_dir):
    segmenter = load_segmenter("clipseg", clipseg_dir, device="cpu")
    with pytest.raises(InputError, match="empty"):
        segmenter.segment(IMAGES[0], "  ")
    with pytest.raises(InputError, match="strings"):
        segmenter.segment(IMAGES[0], None)
    with pytest.raises(InputError, match="2 images but 1 texts"):
        segmenter.segment_many(IMAGES[:2], ["dog"])
    assert segmenter.stats.segmented == 0


@pytest.mark.parametrize("kind", ["sam3", "clipseg"])
def test_long_prompts_are_truncated_with_a_warning(kind, sam3_dir, clipseg_dir):
    directory = sam3_dir if kind == "sam3" else clipseg_dir
    segmenter = load_segmenter(kind, directory, device="cpu")
    long_text = "a very small dog " * 40
    with pytest.warns(TextTruncatedWarning, match="truncated"):
        mask = segmenter.segment(IMAGES[0], long_text)
    assert mask.shape == IMAGES[0].shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTruncatedWarning)
        segmenter.segment(IMAGES[0], "dog")


# ---------------------------------------------------------------------- settings and loading


def test_settings_say_which_segmenter_made_a_mask(sam3_dir, clipseg_dir):
    sam3 = load_segmenter("sam3", sam3_dir, device="cpu", threshold=0.4, mask_threshold=0.6)
    assert (sam3.kind, sam3.model, sam3.threshold, sam3.mask_threshold) == ("sam3", str(sam3_dir), 0.4, 0.6)
    assert sam3.settings == {
        "kind": "sam3", "model": str(sam3_dir), "revision": None, "threshold": 0.4,
        "mask_threshold": 0.6, "dtype": "float32",
    }
    json.dumps(sam3.settings)
    clipseg = Segmenter.from_pretrained("clipseg", clipseg_dir, device="cpu")
    assert clipseg.settings["kind"] == "clipseg" and clipseg.threshold == 0.5 and "mask_threshold" not in clipseg.settings
    assert "clipseg" in repr(clipseg)
    assert DEFAULT_SEGMENTER_MODELS == {"sam3": "facebook/sam3", "clipseg": "CIDAS/clipseg-rd64-refined"}


def test_foreground_fraction():
    mask = np.zeros((4, 5), bool)
    mask[:2, :2] = True
    assert foreground_fraction(mask) == pytest.approx(4 / 20)
    assert foreground_fraction(np.ones((3, 3), np.uint8)) == 1.0


@pytest.mark.parametrize("kind", ["sam3", "clipseg"])
def test_missing_directory_says_it_does_not_exist(kind, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ModelLoadError, match="does not exist") as raised:
        load_segmenter(kind, missing, device="cpu", local_files_only=True)
    assert str(missing) in str(raised.value)


@pytest.mark.parametrize("kind, model_id", [("sam3", "facebook/sam3"), ("clipseg", "CIDAS/clipseg-rd64-refined")])
def test_hub_id_missing_offline_says_how_to_download(kind, model_id, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as raised:
        load_segmenter(kind, device="cpu", local_files_only=True, cache_dir=tmp_path / "hf-cache")
    message = str(raised.value)
    assert repr(model_id) in message and f"`hf download {model_id}`" in message
    assert "local directory" in message
    if kind == "sam3":
        assert "SAM License" in message and "hf auth login" in message


def test_wrong_model_type_is_named(sam3_dir, clipseg_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="is a 'clipseg' checkpoint, not SAM3"):
        load_segmenter("sam3", clipseg_dir, device="cpu")
    with pytest.raises(ModelLoadError, match="is a 'sam3' checkpoint, not CLIPSeg"):
        load_segmenter("clipseg", sam3_dir, device="cpu")
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="'bert' checkpoint.*facebook/sam3"):
        load_segmenter("sam3", tmp_path / "bert", device="cpu")


@pytest.mark.parametrize(
    "kind, removed, named",
    [
        ("sam3", "model.safetensors", "model.safetensors"),
        ("sam3", "preprocessor_config.json", "preprocessor_config.json"),
        ("clipseg", "preprocessor_config.json", "preprocessor_config.json"),
        ("clipseg", "tokenizer.json", "tokenizer"),
    ],
)
def test_directory_missing_files_is_a_clear_load_error(kind, removed, named, sam3_dir, clipseg_dir, tmp_path):
    source = sam3_dir if kind == "sam3" else clipseg_dir
    copy = shutil.copytree(source, tmp_path / "partial")
    for path in copy.iterdir():
        if path.name == removed or (removed == "tokenizer.json" and path.name.startswith(("tokenizer", "vocab", "merges", "special"))):
            path.unlink()
    with pytest.raises(ModelLoadError) as raised:
        load_segmenter(kind, copy, device="cpu", local_files_only=True)
    message = str(raised.value)
    assert str(copy) in message and named in message


def test_sam3_video_layout_checkpoint_loads_its_detector(sam3_dir, tmp_path):
    """A checkpoint in the SAM3 video layout (``model_type`` ``sam3_video``, the detector's
    weights under ``detector_model.``) gives the detector's masks."""
    from safetensors.torch import load_file, save_file
    from transformers import Sam3Config, Sam3VideoConfig

    video = shutil.copytree(sam3_dir, tmp_path / "sam3-video")
    Sam3VideoConfig(detector_config=Sam3Config.from_pretrained(sam3_dir).to_dict()).save_pretrained(video)
    weights = load_file(sam3_dir / "model.safetensors")
    save_file({f"detector_model.{name}": value for name, value in weights.items()}, video / "model.safetensors", metadata={"format": "pt"})
    assert json.loads((video / "config.json").read_text())["model_type"] == "sam3_video"
    from_video = load_segmenter("sam3", video, device="cpu", threshold=0.0).segment_many(IMAGES[:2], "dog")
    from_detector = load_segmenter("sam3", sam3_dir, device="cpu", threshold=0.0).segment_many(IMAGES[:2], "dog")
    for a, b in zip(from_video, from_detector):
        np.testing.assert_array_equal(a, b)


def test_unsupported_sam3_preprocessing_is_refused(sam3_dir, tmp_path):
    copy = shutil.copytree(sam3_dir, tmp_path / "bicubic")
    settings_path = copy / "preprocessor_config.json"
    processor_settings = json.loads(settings_path.read_text())
    processor_settings["resample"] = 3
    settings_path.write_text(json.dumps(processor_settings))
    with pytest.raises(ModelLoadError, match="resample=3"):
        load_segmenter("sam3", copy, device="cpu")


def test_bad_arguments_are_value_errors(clipseg_dir):
    with pytest.raises(ValueError, match="not one of"):
        load_segmenter("sam2", clipseg_dir)
    with pytest.raises(ValueError, match="threshold must be in"):
        load_segmenter("clipseg", clipseg_dir, device="cpu", threshold=1.5)
    with pytest.raises(ValueError, match="SAM3 setting"):
        load_segmenter("clipseg", clipseg_dir, device="cpu", mask_threshold=0.5)
    with pytest.raises(ValueError, match="dtype"):
        load_segmenter("clipseg", clipseg_dir, device="cpu", dtype="int8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_device_error(clipseg_dir):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        load_segmenter("clipseg", clipseg_dir, device="cuda")


def test_default_device_and_dtype_follow_the_scorers_policy(clipseg_dir, monkeypatch):
    """The segmenter resolves devices with the scorer's function (CUDA, else MPS, else CPU)."""
    import pytest_masc.metric.loading as loading
    import pytest_masc.metric.segmentation as segmentation

    assert not hasattr(segmentation, "resolve_device") and not hasattr(segmentation, "resolve_dtype")
    asked = []

    def resolve_device(device):
        asked.append(device)
        return torch.device("cpu")

    monkeypatch.setattr(loading, "resolve_device", resolve_device)
    segmenter = load_segmenter("clipseg", clipseg_dir)
    assert asked == [None]
    assert segmenter.device == torch.device("cpu") and segmenter.dtype == torch.float32


def test_tiny_checkpoints_are_seeded(tmp_path, clipseg_dir):
    from safetensors.torch import load_file

    same = tiny_clipseg_checkpoint(tmp_path / "same", seed=0)
    other = tiny_clipseg_checkpoint(tmp_path / "other", seed=1)
    reference = load_file(clipseg_dir / "model.safetensors")
    assert all(torch.equal(reference[k], v) for k, v in load_file(same / "model.safetensors").items())
    assert any(not torch.equal(reference[k], v) for k, v in load_file(other / "model.safetensors").items())
