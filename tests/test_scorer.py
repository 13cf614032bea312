"""The stateful scorer: encode counts, caching, determinism, OOM recovery, loading errors,
per-sample errors, distractor margins and prompt truncation, on the tiny checkpoint."""
from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytest_masc import DeviceError, InputError, MaSC, ModelLoadError, Sample
from pytest_masc.errors import PromptTruncatedWarning
from pytest_masc.metric.encoders import ImageEncoder

SCORE_FIELDS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")


def fresh(masc: MaSC, **overrides) -> MaSC:
    """A new scorer on the shared tiny model (no caches, no stats), settings overridable."""
    settings = dict(
        device=masc.device, dtype=masc.dtype, max_num_patches=256, fg_threshold=masc.fg_threshold,
        batch_size=4, num_workers=2, model_id=masc.model_id,
    )
    settings.update(overrides)
    return MaSC(masc.model, masc.image_processor, masc.tokenizer, **settings)


def picture(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)


def box_mask(height: int = 48, width: int = 64, top: int = 8, left: int = 16) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[top:top + height // 2, left:left + width // 2] = 255
    return mask


class CountingForward:
    """A one-image forward that counts its calls on a :class:`Counter` (other attributes are
    the wrapped forward's)."""

    def __init__(self, forward, counter: "Counter"):
        self.forward = forward
        self.counter = counter

    def __call__(self, patches, grid):
        self.counter.images += 1
        self.counter.image_calls += 1
        return self.forward(patches, grid)

    def __getattr__(self, name):
        return getattr(self.forward, name)


class Counter:
    """Counts the rows through the vision and text towers of one scorer: Transformers'
    ``forward`` of each tower is wrapped with an instance attribute, and the one-image
    forward (``masc.one_image_forward``) with a counting stand-in; :meth:`remove` undoes both."""

    def __init__(self, masc: MaSC):
        self.images = 0
        self.texts = 0
        self.image_calls = 0
        self.masc = masc
        self.towers = (masc.model.vision_model, masc.model.text_model)
        vision_forward, text_forward = (tower.forward for tower in self.towers)

        def count_vision(*args, **kwargs):
            self.images += kwargs["pixel_values"].shape[0]
            self.image_calls += 1
            return vision_forward(*args, **kwargs)

        def count_text(*args, **kwargs):
            self.texts += kwargs["input_ids"].shape[0]
            return text_forward(*args, **kwargs)

        self.towers[0].forward = count_vision
        self.towers[1].forward = count_text
        self.one_image_forward = masc.one_image_forward
        if self.one_image_forward is not None:
            masc.image_encoder.one_image_forward = CountingForward(self.one_image_forward, self)

    def remove(self) -> None:
        for tower in self.towers:
            if "forward" in tower.__dict__:
                del tower.forward  # back to the class's forward
        self.masc.image_encoder.one_image_forward = self.one_image_forward


@pytest.fixture
def counter():
    """``counter(masc)`` starts counting that scorer's tower rows until the test ends."""
    made = []

    def start(masc: MaSC) -> Counter:
        made.append(Counter(masc))
        return made[-1]

    yield start
    for count in made:
        count.remove()


def assert_scores_close(first, second, tolerance: float, label: str = "") -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for name in SCORE_FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            if math.isnan(x) or math.isnan(y):
                assert math.isnan(x) and math.isnan(y), f"{label} {name}: {x} vs {y}"
            else:
                assert abs(x - y) <= tolerance, f"{label} {name}: {x} vs {y}"
        assert a.distractor_prompts.keys() == b.distractor_prompts.keys()


# ----------------------------------------------------------------------------- (a) encode counts


@pytest.fixture
def shared_samples(tmp_path):
    """9 samples over R=3 references (a file, an array, a PIL image), 7 distinct outputs
    (two of them used twice) and P=4 prompts, no subject."""
    refs = [picture(1), picture(2), picture(3)]
    path = tmp_path / "ref0.png"
    Image.fromarray(refs[0]).save(path)
    ref_inputs = [str(path), refs[1], Image.fromarray(refs[2])]
    outputs = [picture(10 + i, 40, 56) for i in range(7)]
    prompts = ["a photo on the beach", "a dog in the snow", "a red car", "a garden at dawn"]
    plan = [  # (reference, output, prompt)
        (0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 3, 3), (1, 4, 0), (1, 0, 1), (2, 5, 2), (2, 6, 3), (2, 1, 0),
    ]
    samples = [
        Sample(ref_inputs[r], box_mask(), outputs[o], box_mask(40, 56, 4, 4), prompts[p]) for r, o, p in plan
    ]
    return samples, len(refs), len({o for _, o, _ in plan}), len(prompts)


def test_each_distinct_image_and_prompt_is_encoded_once(counter, tiny_masc, shared_samples):
    samples, n_refs, n_outputs, n_prompts = shared_samples
    masc = fresh(tiny_masc, batch_size=3)
    count = counter(masc)
    scores = masc.score_many(samples)
    assert len(scores) == len(samples)
    assert count.images == n_refs + n_outputs == 10
    assert count.texts == n_prompts
    assert masc.stats.images_encoded == count.images
    assert masc.stats.texts_encoded == count.texts
    assert count.image_calls == math.ceil(count.images / 3)  # full batches, not one call per image


def test_subject_stripped_and_full_prompts_each_encoded_once(counter, tiny_masc):
    """PF encodes the stripped prompt, the global score the full one: distinct texts, once each."""
    masc = fresh(tiny_masc)
    count = counter(masc)
    mask = box_mask()
    prompts = ["a photo of a sks dog on the beach", "the sks dog in the snow", "a red car"]
    samples = [Sample(picture(i), mask, picture(100 + i), mask, prompts[i % 3], "sks dog") for i in range(6)]
    masc.score_many(samples)
    expected_texts = {"a photo of a sks dog on the beach", "a photo of on the beach",
                      "the sks dog in the snow", "in the snow", "a red car"}
    assert count.texts == len(expected_texts)
    assert count.images == 12


def test_a_reference_shared_by_many_samples_is_encoded_once(counter, tiny_masc):
    masc = fresh(tiny_masc, batch_size=2)
    count = counter(masc)
    reference = picture(5)
    ref_masks = [np.zeros((48, 64), np.uint8) for _ in range(6)]
    for i, mask in enumerate(ref_masks):
        mask[: 6 * (i + 1)] = 255  # a taller foreground for each sample
    samples = [
        Sample(reference.copy(), ref_masks[i], picture(50 + i, 40, 56), box_mask(40, 56), "a photo")
        for i in range(6)
    ]
    scores = masc.score_many(samples)
    assert count.images == 1 + 6
    # one encoding serves all six, each with its own mask
    assert len({s.extras["ref_foreground_patches"] for s in scores}) > 1


def test_the_same_file_given_twice_is_encoded_once(counter, monkeypatch, tmp_path, tiny_masc):
    masc = fresh(tiny_masc)
    count = counter(masc)
    Image.fromarray(picture(7)).save(tmp_path / "ref.png")
    Image.fromarray(picture(8, 40, 56)).save(tmp_path / "out.png")
    monkeypatch.chdir(tmp_path)
    mask, out_mask = box_mask(), box_mask(40, 56)
    same_files = [  # one path as str, Path, relative and absolute
        Sample(str(tmp_path / "ref.png"), mask, str(tmp_path / "out.png"), out_mask, "a"),
        Sample(tmp_path / "ref.png", mask, Path("out.png"), out_mask, "a"),
        Sample("ref.png", mask, tmp_path / "out.png", out_mask, "a"),
    ]
    scores = masc.score_many(same_files)
    assert count.images == 2
    assert scores[0].concept == scores[1].concept == scores[2].concept


def test_references_are_cached_across_calls_until_cleared(counter, tiny_masc, shared_samples):
    samples, n_refs, n_outputs, n_prompts = shared_samples
    masc = fresh(tiny_masc)
    count = counter(masc)
    first = masc.score_many(samples)
    count.images = count.texts = 0
    second = masc.score_many(samples)
    assert count.images == n_outputs  # references come from the cache
    assert count.texts == 0
    assert masc.stats.images_cached == n_refs
    assert_scores_close(first, second, 0.0)  # outputs are batched differently without the references: same floats
    masc.clear_cache()
    count.images = count.texts = 0
    masc.score_many(samples)
    assert count.images == n_refs + n_outputs
    assert count.texts == n_prompts


# ----------------------------------------------------------------------------- (b) determinism


@pytest.fixture(scope="module")
def mixed_samples():
    """12 samples of varied sizes (so batches pad), 3 references, distractors, a NaN case."""
    rng = np.random.default_rng(3)
    sizes = [(48, 64), (64, 40), (24, 96), (56, 56)]
    refs = [picture(200 + i, *sizes[i]) for i in range(3)]
    samples = []
    for index in range(12):
        ref = refs[index % 3]
        out_size = sizes[index % 4]
        out = picture(300 + index, *out_size)
        ref_mask = rng.random(ref.shape[:2]) < 0.4
        out_mask = (rng.random(out_size) < 0.5).astype(np.float32)
        if index == 5:
            ref_mask[:] = False  # CP NaN
        samples.append(Sample(ref, ref_mask, out, out_mask, f"a sks dog, scene {index % 5}", "sks dog",
                              distractors=("a sks dog in the snow", "a cat")))
    return samples


def test_same_batches_give_bit_identical_scores(tiny_masc, mixed_samples):
    masc = fresh(tiny_masc, batch_size=3)
    first = masc.score_many(mixed_samples)
    masc.clear_cache()
    second = masc.score_many(mixed_samples)
    assert_scores_close(first, second, 0.0)
    for a, b in zip(first, second):
        assert a.distractor_prompts == b.distractor_prompts
        assert a.extras == b.extras
        np.testing.assert_array_equal(a.concept_map, b.concept_map)


@pytest.mark.parametrize("batch_size, tolerance", [(1, 1e-5), (3, 0.0), (8, 0.0)])
def test_batch_size_and_order_do_not_change_scores(tiny_masc, mixed_samples, batch_size, tolerance):
    """Padded batches of any size give the same floats (every image padded to the budget);
    batches of one run the one-image forward, equal up to float rounding."""
    baseline = fresh(tiny_masc, batch_size=5).score_many(mixed_samples)
    order = list(range(len(mixed_samples)))
    random.Random(batch_size).shuffle(order)
    shuffled = fresh(tiny_masc, batch_size=batch_size).score_many([mixed_samples[i] for i in order])
    assert_scores_close([baseline[i] for i in order], shuffled, tolerance, f"batch_size={batch_size}")
    assert any(math.isnan(s.concept) for s in shuffled)


# ----------------------------------------------------------------------------- (c) OOM recovery


def test_out_of_memory_halves_the_batch_and_scores_the_same(monkeypatch, tiny_masc, mixed_samples):
    expected = fresh(tiny_masc, batch_size=8).score_many(mixed_samples)
    masc = fresh(tiny_masc, batch_size=8)
    original = ImageEncoder.forward
    sizes = []

    def forward_that_fits_two(self, batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, batch)

    monkeypatch.setattr(ImageEncoder, "forward", forward_that_fits_two)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        scores = masc.score_many(mixed_samples)
    assert_scores_close(expected, scores, 0.0)  # halved batches: the same floats
    assert max(sizes) == 8 and 4 in sizes  # tried 8, then 4, then 2
    assert masc.batch_size <= 2  # later batches start small


def test_out_of_memory_on_a_single_image_is_a_device_error(monkeypatch, tiny_masc, mixed_samples):
    def always_out_of_memory(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(ImageEncoder, "forward", always_out_of_memory)
    masc = fresh(tiny_masc, batch_size=1)
    with pytest.raises(DeviceError, match="out of memory encoding a single image") as raised:
        masc.score_many(mixed_samples[:2])
    assert "max_num_patches" in str(raised.value)  # says what to do


# ----------------------------------------------------------------------------- (d) loading errors


def test_missing_directory_is_a_model_load_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ModelLoadError) as raised:
        MaSC.from_pretrained(missing, device="cpu", local_files_only=True)
    assert str(missing) in str(raised.value)


def test_hub_id_missing_offline_says_how_to_pre_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id = "google/siglip2-base-patch16-naflex"
    with pytest.raises(ModelLoadError) as raised:
        MaSC.from_pretrained(model_id, device="cpu", local_files_only=True, cache_dir=tmp_path / "hf-cache")
    message = str(raised.value)
    assert model_id in message
    assert f"hf download {model_id}" in message
    assert "local directory" in message and "from_pretrained('/path/to/checkpoint')" in message


def test_bert_checkpoint_is_not_siglip2(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
    BertModel(config).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="not SigLIP2") as raised:
        MaSC.from_pretrained(tmp_path / "bert", device="cpu", local_files_only=True)
    assert "'bert'" in str(raised.value)


def test_siglip_fixed_resolution_checkpoint_without_weights_is_a_load_error(tmp_path):
    """SigLIP (fixed resolution) checkpoints are accepted now, like the reference's; one
    without weights fails to load, naming the directory, not as "not SigLIP2"."""
    from transformers import SiglipConfig

    SiglipConfig().save_pretrained(tmp_path / "siglip-v1")
    with pytest.raises(ModelLoadError, match="cannot load the SigLIP2 checkpoint") as raised:
        MaSC.from_pretrained(tmp_path / "siglip-v1", device="cpu", local_files_only=True)
    assert "siglip-v1" in str(raised.value) and "not SigLIP2" not in str(raised.value)


def test_fixed_resolution_processor_must_fit_the_tower(tmp_path):
    import json

    from pytest_masc.testing import tiny_fixed_checkpoint

    directory = tiny_fixed_checkpoint(tmp_path / "tiny-siglip-64")
    config_file = directory / "processor_config.json"
    config = json.loads(config_file.read_text())
    config["image_processor"]["size"] = {"height": 48, "width": 48}
    config_file.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="resizes to .*48.* reads 64x64"):
        MaSC.from_pretrained(directory, device="cpu", local_files_only=True)


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_default_device_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from pytest_masc.metric.loading import resolve_device, resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    device = resolve_device(None)
    assert device.type == expected
    assert resolve_dtype(None, device) is (torch.bfloat16 if expected == "cuda" else torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_device_error(tiny_model_dir):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        MaSC.from_pretrained(tiny_model_dir, device="cuda", local_files_only=True)


def test_unknown_device_name_is_a_device_error(tiny_model_dir):
    with pytest.raises(DeviceError, match="not a torch device"):
        MaSC.from_pretrained(tiny_model_dir, device="gpu0", local_files_only=True)


def test_dtype_names_resolve_and_unknown_ones_are_refused(tiny_model_dir):
    from pytest_masc.metric.loading import resolve_dtype

    cpu = torch.device("cpu")
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    assert resolve_dtype("torch.float16", cpu) is torch.float16
    assert resolve_dtype(None, cpu) is torch.float32
    with pytest.raises(ValueError, match=r"dtype 'float64' is not one of \['bf16', 'bfloat16', 'float'"):
        MaSC.from_pretrained(tiny_model_dir, device="cpu", dtype="float64", local_files_only=True)


def test_loaded_scorer_describes_itself(tiny_model_dir):
    masc = MaSC.from_pretrained(tiny_model_dir, device="cpu", local_files_only=True, max_num_patches=64)
    assert masc.describe()["max_num_patches"] == 64
    assert masc.describe()["device"] == "cpu" and masc.describe()["dtype"] == "float32"


# ----------------------------------------------------------------------------- (e) errors="return"


def test_errors_return_puts_the_input_error_in_place(tmp_path, tiny_masc):
    masc = fresh(tiny_masc)
    mask = box_mask()
    missing = tmp_path / "gone.png"
    samples = [Sample(picture(i), mask, picture(40 + i), mask, "a photo") for i in range(4)]
    samples[1] = Sample(picture(1), mask, str(missing), mask, "a photo")
    results = masc.score_many(samples, errors="return")
    assert isinstance(results[1], InputError)
    assert str(missing) in str(results[1]) and "not found" in str(results[1])
    alone = fresh(tiny_masc).score_many([samples[0], samples[2], samples[3]])
    assert_scores_close([results[0], results[2], results[3]], alone, 1e-5)
    with pytest.raises(InputError, match="gone.png"):
        fresh(tiny_masc).score_many(samples)


def test_a_bad_mask_fails_only_the_samples_that_use_it(tiny_masc):
    """A shared reference with one wrong-size mask: its other samples still score."""
    masc = fresh(tiny_masc)
    reference, good = picture(1), box_mask()
    wrong_size = np.zeros((30, 64), np.uint8)
    samples = [
        Sample(reference, good, picture(2), good, "a photo"),
        Sample(reference, wrong_size, picture(3), good, "a photo"),
        Sample(reference, good, picture(4), good, "a photo"),
    ]
    results = masc.score_many(samples, errors="return")
    assert isinstance(results[1], InputError) and "64x30" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert_scores_close([results[0], results[2]], fresh(tiny_masc).score_many([samples[0], samples[2]]), 1e-5)
    with pytest.raises(InputError, match="64x30"):
        fresh(tiny_masc).score_many(samples)


# ----------------------------------------------------------------------------- (f) distractor margins


def test_margin_is_prompt_minus_best_distractor(tiny_masc):
    masc = fresh(tiny_masc)
    ref, out, mask = picture(1), picture(2), box_mask()
    distractors = ("a sks dog in the snow", "a sks dog on the moon", "a city street")
    sample = Sample(ref, mask, out, mask, "a sks dog on the beach", "sks dog", distractors)
    score = masc.score_many([sample])[0]
    assert set(score.distractor_prompts) == set(distractors)
    assert score.prompt_margin == score.prompt - max(score.distractor_prompts.values())
    # each distractor's PF is what scoring it as the prompt gives (stripped the same way)
    as_prompts = masc.score_many([Sample(ref, mask, out, mask, d, "sks dog") for d in distractors])
    for distractor, alone in zip(distractors, as_prompts):
        assert score.distractor_prompts[distractor] == pytest.approx(alone.prompt, abs=1e-6)


def test_a_distractor_equal_to_the_prompt_gives_margin_zero(tiny_masc):
    masc = fresh(tiny_masc)
    prompt = "a sks dog on the beach"
    # the same prompt, and one that only strips to the same text
    for distractor in (prompt, "The SKS dog   on the beach"):
        score = masc.score(picture(1), box_mask(), picture(2), box_mask(), prompt, "sks dog", [distractor])
        assert score.prompt_margin == 0.0


def test_margin_is_nan_without_distractors_or_background(tiny_masc):
    masc = fresh(tiny_masc)
    no_distractors = masc.score(picture(1), box_mask(), picture(2), box_mask(), "a photo")
    assert math.isnan(no_distractors.prompt_margin)
    full = np.full((48, 64), 255, np.uint8)
    no_background = masc.score(picture(1), box_mask(), picture(2), full, "a photo", None, ["a cat"])
    assert math.isnan(no_background.prompt) and math.isnan(no_background.prompt_margin)
    assert math.isnan(no_background.distractor_prompts["a cat"])


# ----------------------------------------------------------------------------- (g) prompt truncation


def test_long_prompt_warns_and_is_flagged(tiny_masc):
    masc = fresh(tiny_masc)
    long_prompt = "a very long prompt about a quiet lake with mountains and pine trees at golden hour"
    assert len(masc.tokenizer(long_prompt)["input_ids"]) > masc.text_length
    with pytest.warns(PromptTruncatedWarning, match="quiet lake with mountains") as caught:
        score = masc.score(picture(1), box_mask(), picture(2), box_mask(), long_prompt)
    assert any(f"{masc.text_length}" in str(w.message) for w in caught)
    assert score.extras["prompt_truncated"] is True
    assert masc.truncated(long_prompt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        short = masc.score(picture(1), box_mask(), picture(2), box_mask(), "a lake")
    assert short.extras["prompt_truncated"] is False


@pytest.fixture
def two_torch_threads():
    """Two intra-op threads for one test (conftest pins one, which a run that forgot to
    restore the count would leave as it found it), then back."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(previous)


@pytest.mark.parametrize("streams", [2, 3])
def test_parallel_encode_streams_give_the_same_scores(tiny_model_dir, mixed_samples, streams, two_torch_threads):
    """Side-by-side CPU forwards (one thread each) score like one stream, encode each image once,
    and leave torch's thread count as it was: after a run and after a run that raised."""
    single = MaSC.from_pretrained(tiny_model_dir, device="cpu", batch_size=2, encode_streams=1)
    parallel = MaSC.from_pretrained(tiny_model_dir, device="cpu", batch_size=2, encode_streams=streams)
    assert parallel.concurrency.stream_threads == 1  # the run does change the count: 2 threads / 2 or 3 streams
    expected = single.score_many(mixed_samples)
    got = parallel.score_many(mixed_samples)
    assert torch.get_num_threads() == two_torch_threads
    assert parallel.stats.images_encoded == single.stats.images_encoded
    bad = Sample(picture(1), box_mask(), "no/such/output.png", box_mask(), "a dog")
    with pytest.raises(InputError, match="not found"):
        parallel.score_many([*mixed_samples[:3], bad])
    assert torch.get_num_threads() == two_torch_threads
    for a, b in zip(expected, got):
        for field in SCORE_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-5, (field, x, y)
