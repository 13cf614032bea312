"""CLIP-I, CLIP-T and DINO-I on tiny random checkpoints written to disk (offline)."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from pytest_masc import ModelLoadError
from pytest_masc.metric.baselines import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CLIPScorer,
    DINOScorer,
    baseline_metrics,
    clip_image_similarity,
    clip_text_similarity,
    dino_image_similarity,
    dino_preprocess,
)


@pytest.fixture(scope="module")
def clip(clip_dir):
    return CLIPScorer.from_pretrained(clip_dir, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def dino(dino_dir):
    return DINOScorer.from_pretrained(dino_dir, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [(rng.random((40 + 9 * i, 56 + 5 * i, 3)) * 255).astype(np.uint8) for i in range(5)]


PROMPTS = ["a dog on the beach", "a cat in the snow", "a red t-shirt", "a dog on the beach", "ukiyo-e style"]


def test_identical_images_have_similarity_one(clip, dino, images):
    for scorer in (clip, dino):
        similarity = scorer.image_similarity(images, images)
        assert similarity.shape == (len(images),)
        np.testing.assert_allclose(similarity, 1.0, atol=1e-5)
        different = scorer.image_similarity(images, images[1:] + images[:1])
        assert np.all(np.abs(different) <= 1.0 + 1e-6) and np.all(different < 1.0 - 1e-6)


def test_batching_and_deduplication_do_not_change_scores(clip_dir, dino_dir, clip, dino, images):
    small_clip = CLIPScorer.from_pretrained(clip_dir, device="cpu", local_files_only=True, batch_size=2)
    small_dino = DINOScorer.from_pretrained(dino_dir, device="cpu", local_files_only=True, batch_size=1)
    refs, outs = images[:3] * 2, images[2:] + images[:3]
    np.testing.assert_allclose(small_clip.image_similarity(refs, outs), clip.image_similarity(refs, outs), atol=1e-5)
    np.testing.assert_allclose(small_dino.image_similarity(refs, outs), dino.image_similarity(refs, outs), atol=1e-5)
    np.testing.assert_allclose(small_clip.text_similarity(images, PROMPTS), clip.text_similarity(images, PROMPTS),
                               atol=1e-5)
    alone = np.stack([dino.image_embeddings([image])[0] for image in images])
    np.testing.assert_allclose(dino.image_embeddings(images), alone, atol=1e-5)


def test_paths_pil_and_arrays_give_the_same_embedding(clip, tmp_path, images):
    path = tmp_path / "image.png"
    Image.fromarray(images[1]).save(path)
    embedded = clip.image_embeddings([path, Image.open(path), images[1]])
    np.testing.assert_allclose(embedded[0], embedded[2], atol=1e-6)
    np.testing.assert_allclose(embedded[1], embedded[2], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)


def test_clip_matches_transformers_feature_api(clip, images):
    """CLIP-I/T equal cosines of CLIPModel.get_image_features / get_text_features."""
    import torch

    def features(output):
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    pixels = clip.image_processor(images=[Image.fromarray(i) for i in images], return_tensors="pt")["pixel_values"]
    tokens = clip.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = torch.nn.functional.normalize(features(clip.model.get_image_features(pixel_values=pixels)), dim=-1)
        text = torch.nn.functional.normalize(features(clip.model.get_text_features(**tokens)), dim=-1)
    expected_t = (image * text).sum(-1).numpy()
    expected_i = (image * image.roll(1, 0)).sum(-1).numpy()
    np.testing.assert_allclose(clip.text_similarity(images, PROMPTS), expected_t, atol=1e-5)
    np.testing.assert_allclose(clip.image_similarity(images, images[-1:] + images[:-1]), expected_i, atol=1e-5)
    assert clip.text_similarity(images, PROMPTS).shape == (5,)


def test_function_forms(clip_dir, dino_dir, clip, images):
    refs, outs = images[:2], images[2:4]
    loaded = clip_image_similarity(refs, outs, model_id=str(clip_dir), local_files_only=True, device="cpu")
    np.testing.assert_allclose(loaded, clip.image_similarity(refs, outs), atol=1e-6)
    np.testing.assert_allclose(clip_text_similarity(outs, PROMPTS[:2], scorer=clip),
                               clip.text_similarity(outs, PROMPTS[:2]))
    assert dino_image_similarity(refs, outs, model_id=str(dino_dir), local_files_only=True, device="cpu").shape == (2,)
    with pytest.raises(TypeError, match="either a scorer"):
        clip_image_similarity(refs, outs, scorer=clip, local_files_only=True)
    with pytest.raises(ValueError, match="reference images"):
        clip.image_similarity(refs, outs[:1])
    with pytest.raises(ValueError, match="prompts"):
        clip.text_similarity(outs, PROMPTS)


@pytest.mark.parametrize("shape", [(300, 400), (256, 256), (100, 150), (512, 300)])
def test_dino_preprocess_matches_an_independent_implementation(shape):
    """Against transformers' CLIP PIL processor set up as DreamBench++'s DINO transform
    (shorter side 256 bicubic, 224 crop, ImageNet mean/std); these shapes crop evenly."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    reference = CLIPImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    image = (np.random.default_rng(1).random(shape + (3,)) * 255).astype(np.uint8)
    ours = dino_preprocess(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference(images=[Image.fromarray(image)], return_tensors="np")["pixel_values"][0],
                               atol=1e-5)


@pytest.mark.parametrize("height, first_row", [(343, 60), (341, 58)])
def test_dino_center_crop_rounds_like_torchvision(height, first_row):
    """torchvision crops at ``int(round((h - 224) / 2))`` (round half to even); a 256-wide
    image is not resized, so the crop's first row tells the offset."""
    rows = np.repeat(np.arange(height, dtype=np.uint8)[:, None], 256, axis=1)
    image = np.stack([rows] * 3, axis=-1)
    cropped = dino_preprocess(image)
    value = cropped[0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert round(value * 255) == first_row


def test_missing_weights_fail_clearly(tmp_path, clip_dir, dino_dir):
    with pytest.raises(ModelLoadError, match=r"openai/clip-vit-base-patch32.*hf download"):
        CLIPScorer.from_pretrained(local_files_only=True, cache_dir=tmp_path / "empty-cache")
    with pytest.raises(ModelLoadError, match=r"facebook/dino-vits8.*hf download"):
        DINOScorer.from_pretrained(local_files_only=True, cache_dir=tmp_path / "empty-cache")
    with pytest.raises(ModelLoadError, match="the directory .*nowhere does not exist"):
        DINOScorer.from_pretrained(str(tmp_path / "nowhere"), local_files_only=True)
    with pytest.raises(ModelLoadError, match=r"is a 'clip' checkpoint, not a ViT \(DINO\) one"):
        DINOScorer.from_pretrained(clip_dir, local_files_only=True)
    with pytest.raises(ModelLoadError, match=r"is a 'vit' checkpoint, not CLIP"):
        CLIPScorer.from_pretrained(dino_dir, local_files_only=True)


def test_baseline_metrics_feed_the_dreambench_table(tmp_path, clip, dino):
    from pytest_masc import Score
    from pytest_masc.protocols import evaluate_dreambench, format_table, load_dreambench_plus
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(tmp_path)
    data = load_dreambench_plus(fixture.root, fixture.masks)
    extra = baseline_metrics(data.samples, clip=clip, dino=dino)
    assert set(extra) == {"CLIP-I", "CLIP-T", "DINO-I"}
    assert all(v.shape == (len(data),) and np.isfinite(v).all() for v in extra.values())
    scores = [Score(concept=float(v), prompt=0.0, global_concept=0.0, global_prompt=0.0) for v in extra["DINO-I"]]
    rows = evaluate_dreambench(data, scores, extra, n_resamples=50)
    dimension = {r.metric: r.dimension for r in rows}
    assert dimension["CLIP-I"] == dimension["DINO-I"] == "concept" and dimension["CLIP-T"] == "prompt"
    table = format_table(rows)
    assert "| CLIP-T" in table and "| DINO-I" in table
