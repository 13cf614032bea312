"""Reading images and masks: clear ``InputError`` messages for bad inputs, and every mask
encoding (PIL modes, array dtypes, label and soft masks) mapped to the right weights."""
from __future__ import annotations

import gc
import struct
import threading
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from pytest_masc import InputError, Sample
from pytest_masc.metric import inputs
from pytest_masc.metric.inputs import load_image, load_mask, mask_weights, source_key


def noise(height: int = 20, width: int = 30, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def blank_png(path, width: int, height: int) -> None:
    """A valid all-black 1-bit PNG of any size, written without allocating its pixels in PIL:
    a decompression bomb is a few kilobytes on disk."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- bad files


@pytest.fixture(params=["image", "mask"])
def loader(request):
    """Both readers must fail the same way on bad files."""
    return load_image if request.param == "image" else load_mask


def test_missing_file(tmp_path, loader):
    path = tmp_path / "missing.png"
    with pytest.raises(InputError, match="not found") as raised:
        loader(path)
    assert str(path) in str(raised.value)


def test_directory(tmp_path, loader):
    with pytest.raises(InputError, match="directory") as raised:
        loader(tmp_path)
    assert str(tmp_path) in str(raised.value)


def test_truncated_png(tmp_path, loader):
    path = tmp_path / "cut.png"
    Image.fromarray(noise(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="truncated or corrupt") as raised:
            loader(path)
        assert str(path) in str(raised.value)
        del raised
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], "the file was left open"


def test_text_file_named_png(tmp_path, loader):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not an image") as raised:
        loader(path)
    assert str(path) in str(raised.value)


def test_decompression_bomb_over_our_limit(tmp_path, loader):
    """9000x9000 = 81 MP: over pytest-masc's 64 MP limit, under PIL's own (89 MP)."""
    path = tmp_path / "bomb.png"
    blank_png(path, 9000, 9000)
    assert path.stat().st_size < 100_000
    assert 9000 * 9000 > inputs.MAX_IMAGE_PIXELS
    with pytest.raises(InputError, match="too large to decode safely") as raised:
        loader(path)
    assert str(path) in str(raised.value)


def test_decompression_bomb_over_pils_limit(tmp_path):
    """20000x20000 = 400 MP: PIL itself refuses it, and that becomes an InputError too."""
    path = tmp_path / "huge.png"
    blank_png(path, 20000, 20000)
    with pytest.raises(InputError, match="too large") as raised:
        load_image(path)
    assert str(path) in str(raised.value)


def test_pixel_limit_is_read_at_call_time(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(noise(100, 100)).save(path)
    assert load_image(path).size == (100, 100)
    monkeypatch.setattr(inputs, "MAX_IMAGE_PIXELS", 5_000)
    with pytest.raises(InputError, match="over 5,000 pixels"):
        load_image(path)


def test_reading_leaves_pils_global_state_alone(tmp_path):
    """Worker threads read files at once; the limit check must not touch process globals."""
    paths = []
    for index in range(24):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(noise(32, 32, seed=index)).save(paths[-1])
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    barrier = threading.Barrier(4)

    def read(path):
        if path in paths[:4]:
            barrier.wait(timeout=10)  # start together
        return load_image(path).size

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(read, paths)) == {(32, 32)}
    assert Image.MAX_IMAGE_PIXELS == limit
    assert list(warnings.filters) == filters


def test_bad_file_through_the_scorer_names_it(tmp_path, tiny_masc):
    path = tmp_path / "mask.png"
    path.write_bytes(b"\x89PNG not really")
    sample = Sample(noise(), noise(20, 30, 0), noise(seed=1), path, "a photo")
    [result] = tiny_masc.score_many([sample], errors="return")
    assert isinstance(result, InputError)
    assert str(path) in str(result) and "output mask" in str(result)


# ----------------------------------------------------------------------------- bad arrays


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((20, 30, 3), np.float32),
        np.zeros((20, 30, 3), np.uint16),
        np.zeros((20, 30, 2), np.uint8),
        np.zeros((20, 30, 3, 1), np.uint8),
    ],
    ids=["float", "uint16", "two-channel", "4d"],
)
def test_image_array_of_wrong_shape_or_dtype(array):
    with pytest.raises(InputError, match="HxW, HxWx3 or HxWx4 uint8") as raised:
        load_image(array, "reference image")
    message = str(raised.value)
    assert f"<array {array.dtype} {tuple(array.shape)}>" in message and "reference image" in message


def test_image_of_unsupported_type():
    with pytest.raises(InputError, match="must be a path, a PIL image"):
        load_image([[1, 2, 3]])
    with pytest.raises(InputError, match="expected a path, a PIL image"):
        source_key(42)


def test_empty_image():
    with pytest.raises(InputError, match="empty"):
        load_image(Image.new("RGB", (0, 0)))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN or infinite"),
        (np.array([[0.0, np.inf], [1.0, 0.0]]), "NaN or infinite"),
        (np.array([[0, -1], [1, 0]], np.int16), "negative values"),
        (np.array([[0.0, -0.25], [1.0, 0.5]]), "negative values"),
        (np.zeros((4, 5, 3), np.uint8), "2-D HxW"),
        (np.zeros((4,), np.uint8), "2-D HxW"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.array([["a", "b"]]), "not numeric"),
    ],
    ids=["nan", "inf", "negative-int", "negative-float", "rgb", "1d", "empty", "strings"],
)
def test_bad_mask_array(array, message):
    with pytest.raises(InputError, match=message) as raised:
        load_mask(array, "reference mask")
    assert f"<array {array.dtype} {tuple(array.shape)}> (reference mask)" in str(raised.value)


def test_mask_of_unsupported_type():
    with pytest.raises(InputError, match="must be a path, a PIL image or an HxW array"):
        load_mask([[0, 1]])


def test_mask_size_differs_from_its_image(tiny_masc):
    image, mask = noise(20, 30), np.zeros((24, 30), np.uint8)
    with pytest.raises(InputError) as raised:
        tiny_masc.score(image, mask, noise(seed=1), np.zeros((20, 30), np.uint8), "a photo")
    message = str(raised.value)
    assert "30x24" in message and "30x20" in message and "reference mask" in message


# ----------------------------------------------------------------------------- mask encodings


def labels(height: int = 24, width: int = 32) -> np.ndarray:
    """0 background, 1 and 2 two objects: a label map."""
    out = np.zeros((height, width), np.uint8)
    out[2:10, 3:12] = 1
    out[12:22, 15:30] = 2
    return out


def soft(height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth float ramp 0..1 (many distinct values)."""
    return np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))


def test_mode_l_binary_and_soft():
    binary = (labels() > 0).astype(np.uint8) * 255
    np.testing.assert_array_equal(load_mask(Image.fromarray(binary)), binary / 255)
    ramp = np.round(soft() * 255).astype(np.uint8)
    np.testing.assert_allclose(load_mask(Image.fromarray(ramp)), ramp / 255, atol=1e-7)


def test_mode_1():
    image = Image.fromarray(labels() > 0)
    assert image.mode == "1"
    np.testing.assert_array_equal(load_mask(image), labels() > 0)


def test_mode_p_palette_indices_are_labels():
    """Index 0 is background; every other index (object label) is foreground."""
    image = Image.frombytes("P", (32, 24), labels().tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    weights = load_mask(image)
    np.testing.assert_array_equal(weights, labels() > 0)
    assert weights.dtype == np.float32


def test_mode_i16_two_valued_and_soft():
    two_valued = Image.fromarray((labels() > 0).astype(np.uint16) * 1000)
    assert two_valued.mode == "I;16"
    np.testing.assert_array_equal(load_mask(two_valued), labels() > 0)
    ramp = np.round(soft() * 65535).astype(np.uint16)
    np.testing.assert_allclose(load_mask(Image.fromarray(ramp)), ramp / 65535, atol=1e-6)


def test_mode_rgba_uses_alpha_when_it_varies():
    rgba = np.dstack([noise(24, 32), (labels() > 0).astype(np.uint8) * 255])
    np.testing.assert_array_equal(load_mask(Image.fromarray(rgba)), labels() > 0)


def test_mode_rgba_with_constant_alpha_uses_luminance():
    gray = (labels() > 0).astype(np.uint8) * 255
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    np.testing.assert_array_equal(load_mask(Image.fromarray(rgba)), labels() > 0)


def test_mode_la():
    la = Image.merge("LA", [Image.fromarray(noise(24, 32, 0)), Image.fromarray(((labels() > 0) * 255).astype(np.uint8))])
    np.testing.assert_array_equal(load_mask(la), labels() > 0)


def test_mode_rgb_uses_luminance():
    gray = (labels() > 0).astype(np.uint8) * 255
    np.testing.assert_array_equal(load_mask(Image.fromarray(np.dstack([gray] * 3))), labels() > 0)


@pytest.mark.parametrize("mode", ["L", "1", "P", "I;16", "RGBA", "LA"])
def test_mask_files_read_like_their_images(tmp_path, mode):
    """A mask saved as PNG reads back to the same weights as the PIL image."""
    binary = labels() > 0
    if mode == "P":
        image = Image.frombytes("P", (32, 24), labels().tobytes())
        image.putpalette(list(range(256)) * 3)
    elif mode == "I;16":
        image = Image.fromarray(binary.astype(np.uint16) * 40000)
    elif mode == "RGBA":
        image = Image.fromarray(np.dstack([noise(24, 32), binary.astype(np.uint8) * 255]))
    elif mode == "LA":
        image = Image.merge("LA", [Image.fromarray(noise(24, 32, 0)), Image.fromarray(binary.astype(np.uint8) * 255)])
    else:
        image = Image.fromarray(binary.astype(np.uint8) * 255).convert(mode)
    assert image.mode == mode
    path = tmp_path / f"mask-{mode.replace(';', '')}.png"
    image.save(path)
    np.testing.assert_array_equal(load_mask(path), load_mask(image))
    np.testing.assert_array_equal(load_mask(path), binary)


@pytest.mark.parametrize(
    "array",
    [
        labels() > 0,
        (labels() > 0).astype(np.uint8),
        (labels() > 0).astype(np.uint8) * 255,
        (labels() > 0).astype(np.uint8) * 7,
        (labels() > 0).astype(np.int64) * 3,
        (labels() > 0).astype(np.float32),
        (labels() > 0).astype(np.float64) * 0.3,
        (labels() > 0).astype(np.uint16) * 200,
        ((labels() > 0).astype(np.uint8) * 255)[..., None],
    ],
    ids=["bool", "uint8-0-1", "uint8-0-255", "uint8-0-7", "int64-0-3", "float-0-1", "float-0-0.3",
         "uint16-0-200", "HxWx1"],
)
def test_two_valued_masks_are_binary(array):
    """Foreground is non-zero: any {0, v} mask becomes exactly 0 and 1."""
    weights = load_mask(array)
    assert weights.dtype == np.float32 and weights.shape == (24, 32)
    np.testing.assert_array_equal(weights, labels() > 0)


def test_soft_masks_are_weights():
    np.testing.assert_array_equal(load_mask(soft()), soft())
    ramp8 = np.round(soft() * 255).astype(np.uint8)
    np.testing.assert_allclose(load_mask(ramp8), ramp8.astype(np.float32) / 255, atol=1e-7)
    # a float mask on a 0..255 scale is divided by 255
    np.testing.assert_allclose(load_mask(soft() * 255), soft(), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_arrays_above_255_are_divided_by_255_like_the_reference_with_a_warning(dtype):
    """Only a 16-bit *image* says its scale; an array above 255 is read as the reference
    reads it (weights above 1, clamped after resizing), and the widening is named."""
    ramp = np.round(soft() * 65535).astype(dtype)
    with pytest.warns(inputs.MaskReadingWarning, match=r"<array .*> \(mask\): values up to 65535 .*widens"):
        weights, reading = inputs.read_mask(ramp)
    np.testing.assert_array_equal(weights, ramp.astype(np.float32) / np.float32(255))
    assert reading.rule == "reference" and reading.same_as_reference


def test_all_background_and_all_foreground():
    np.testing.assert_array_equal(load_mask(np.zeros((4, 5), np.uint8)), np.zeros((4, 5)))
    np.testing.assert_array_equal(load_mask(np.full((4, 5), 255, np.uint8)), np.ones((4, 5)))
    np.testing.assert_array_equal(mask_weights(np.ones((4, 5), bool)), np.ones((4, 5)))


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16", "1", "LA"])
def test_images_of_any_mode_become_rgb(mode):
    base = Image.fromarray(noise(20, 30))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(noise(20, 30, 0).astype(np.uint16))
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.size == (30, 20)


def test_image_array_and_file_read_the_same(tmp_path):
    pixels = noise(20, 30)
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(np.asarray(load_image(path)), pixels)
    np.testing.assert_array_equal(np.asarray(load_image(pixels)), pixels)
    np.testing.assert_array_equal(np.asarray(load_image(Image.fromarray(pixels))), pixels)


def test_palette_images_with_other_palettes_are_other_inputs(tiny_masc):
    """The same indices under another palette are other pixels: never one shared encoding."""
    indices = (noise(24, 32, 0) % 4).tobytes()
    first = Image.frombytes("P", (32, 24), indices)
    first.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    second = Image.frombytes("P", (32, 24), indices)
    second.putpalette([255, 255, 255, 10, 200, 30, 90, 0, 90, 250, 250, 0])
    assert not np.array_equal(np.asarray(load_image(first)), np.asarray(load_image(second)))
    assert source_key(first) != source_key(second)
    assert source_key(first) == source_key(first.copy())
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 4:28] = 255
    reference = noise(24, 32)
    together = tiny_masc.score_many(
        [Sample(reference, mask, first, mask, "a photo"), Sample(reference, mask, second, mask, "a photo")]
    )
    alone = tiny_masc.score_many([Sample(reference, mask, second, mask, "a photo")])
    assert together[1].global_concept == alone[0].global_concept  # batch-independent (test_determinism)
    assert together[0].global_concept != pytest.approx(together[1].global_concept, abs=1e-6)


def test_source_keys_identify_content():
    pixels = noise()
    assert source_key(pixels) == source_key(pixels.copy())
    changed = pixels.copy()
    changed[0, 0, 0] ^= 1
    assert source_key(changed) != source_key(pixels)
    assert source_key(pixels.astype(np.int16)) != source_key(pixels)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint16, np.float32])
def test_label_maps_are_foreground_wherever_non_zero(dtype):
    labels = np.zeros((8, 8), dtype)
    labels[1:3, 1:3] = 1
    labels[4:6, 4:6] = 2
    labels[6, 6] = 3
    weights = load_mask(labels)
    np.testing.assert_array_equal(weights, (labels > 0).astype(np.float32))


def test_soft_masks_above_the_label_range_stay_weights():
    soft = np.array([[0, 64, 128], [192, 255, 100]], np.uint8)
    np.testing.assert_allclose(load_mask(soft), soft / 255.0, rtol=0, atol=1e-7)


def test_unconvertible_mask_mode_is_an_input_error():
    odd = Image.new("La", (4, 4))
    with pytest.raises(InputError, match=r"cannot read a mask from a 'La' image"):
        load_mask(odd)
