"""A sample's scores are bit-identical whatever else is scored with it or before it: alone,
in any batch, in any order, after other samples, serially, over xdist workers and over merged
shards (#16). Compared with ``==``, never with a tolerance."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from pytest_masc import MaSC, Sample

from masc_suites import make_images, run
from test_report_merge import MARKER_TESTS, SUITE


def scores_by_node(path) -> dict[str, dict]:
    """Per node id: the scores, the distractors' PF and CP per reference of each record."""
    return {
        record["nodeid"]: {key: record[key] for key in ("scores", "distractor_prompts", "concept_per_reference")}
        for record in json.loads(path.read_text())["records"]
    }


def test_serial_xdist_and_shard_runs_give_identical_scores(pytester, tiny_model_dir):
    """The same suites run in one process, over two xdist workers, and as two CI shards: each
    case's scores (CP, PF, margins, distractor and global scores) are the same floats."""
    pytest.importorskip("xdist")
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_dogs.toml").write_text(SUITE)  # the shards split its cases: other batches
    pytester.makepyfile(test_gates=MARKER_TESTS)

    run(pytester, tiny_model_dir, "--masc-json=single.json")
    run(pytester, tiny_model_dir, "-n", "2", "--masc-json=xdist.json", subprocess=True)
    run(pytester, tiny_model_dir, "-k", "test_one or a-", "--masc-json=shard-a.json")
    run(pytester, tiny_model_dir, "-k", "test_two or b- or plain", "--masc-json=shard-b.json")

    single = scores_by_node(pytester.path / "single.json")
    shards = {**scores_by_node(pytester.path / "shard-a.json"), **scores_by_node(pytester.path / "shard-b.json")}
    assert len(single) == 7 and any(record["distractor_prompts"] for record in single.values())
    assert scores_by_node(pytester.path / "xdist.json") == single
    assert shards == single


# ----------------------------------------------------------------------------- the scorer


def picture(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:height, :width]


def random_mask(seed: int, height: int, width: int, fraction: float = 0.4) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width)) < fraction


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """12 samples over 3 references of 3 sizes: outputs of 5 sizes (so batches would pad
    unevenly), one output in two samples with two masks, a reference scored as another
    sample's output, an empty reference mask (CP NaN), a full output mask (PF NaN), subjects
    and distractors."""
    sizes = [(48, 64), (64, 40), (24, 96), (56, 56), (72, 48)]
    refs = [picture(200 + r, *sizes[r]) for r in range(3)]
    shared_out = picture(400, 40, 72)
    made = []
    for index in range(12):
        r = index % 3
        ref, ref_mask = refs[r], random_mask(index, *refs[r].shape[:2])
        out = picture(300 + index, *sizes[index % 5])
        out_mask = random_mask(100 + index, *out.shape[:2], fraction=0.5).astype(np.float32)
        if index in (4, 9):
            out, out_mask = shared_out, random_mask(index, 40, 72, fraction=0.3 + 0.05 * index)
        if index == 7:
            out, out_mask = refs[0], random_mask(7, *refs[0].shape[:2])
        if index == 5:
            ref_mask = np.zeros_like(ref_mask)
        if index == 10:
            out_mask = np.ones(out.shape[:2], np.float32)
        made.append(Sample(ref, ref_mask, out, out_mask, f"a photo of a sks dog, scene {index % 5}", "sks dog",
                           distractors=("a sks dog in the snow", f"a cat number {index % 4}")))
    return made


def fingerprint(score) -> tuple:
    """Every number a score carries, as exact bit patterns (NaN equal to NaN)."""
    numbers = [score.concept, score.prompt, score.global_concept, score.global_prompt, score.prompt_margin,
               *score.distractor_prompts.values()]
    return (tuple(float(x).hex() for x in numbers), tuple(score.distractor_prompts),
            score.concept_map.tobytes(), score.concept_map.shape)


CONFIGS = {
    "one-image forward": ("naflex", dict(batch_size=1, encode_streams=1)),
    "one-image forward, 2 streams": ("naflex", dict(batch_size=1, encode_streams=2)),
    "padded batches of 3": ("naflex", dict(batch_size=3, encode_streams=1)),
    "padded batches of 3, 2 streams": ("naflex", dict(batch_size=3, encode_streams=2)),
    "fixed resolution, batches of 3": ("fixed", dict(batch_size=3, encode_streams=1)),
}


@pytest.fixture(scope="module")
def fixed_masc(tmp_path_factory) -> MaSC:
    """A tiny fixed-resolution (64x64) checkpoint: Transformers' unpadded batched forward."""
    from pytest_masc.testing import tiny_fixed_checkpoint

    directory = tiny_fixed_checkpoint(tmp_path_factory.mktemp("models") / "tiny-siglip2-64")
    return MaSC.from_pretrained(directory, device="cpu", local_files_only=True)


@pytest.fixture
def two_torch_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("model, config", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_sample_scores_the_same_alone_in_any_batch_order_or_after_others(
        request, samples, model, config, two_torch_threads):
    loaded = request.getfixturevalue("tiny_masc" if model == "naflex" else "fixed_masc")

    def scorer() -> MaSC:
        return MaSC(loaded.model, loaded.image_processor, loaded.tokenizer, device=loaded.device,
                    dtype=loaded.dtype, max_num_patches=64, num_workers=2, **config)

    alone = [fingerprint(scorer().score_many([sample])[0]) for sample in samples]
    assert any(math.isnan(s.concept) for s in scorer().score_many(samples[5:6]))
    assert any(math.isnan(s.prompt) for s in scorer().score_many(samples[10:11]))

    shared = scorer()
    together = [fingerprint(s) for s in shared.score_many(samples)]
    # Again on the same scorer: references and texts now come from its caches.
    again = [fingerprint(s) for s in shared.score_many(samples[::-1])][::-1]
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    shuffled = dict(zip(order, map(fingerprint, scorer().score_many([samples[i] for i in order]))))
    split = scorer()
    odd = split.score_many(samples[1::2])
    even = split.score_many(samples[::2])
    halves = [fingerprint(s) for pair in zip(even, odd) for s in pair]
    one_by_one = scorer()
    after_others = [fingerprint(one_by_one.score(s.ref_image, s.ref_mask, s.out_image, s.out_mask, s.prompt,
                                                 s.subject, s.distractors)) for s in samples]

    for index, expected in enumerate(alone):
        assert together[index] == expected, index
        assert again[index] == expected, index
        assert shuffled[index] == expected, index
        assert halves[index] == expected, index
        assert after_others[index] == expected, index
