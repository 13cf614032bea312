"""Unusual prompts score like the reference: empty, non-ASCII, subject absent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_masc import Sample

PROMPTS = [
    ("", None),
    ("", "dog"),
    ("un chien à la plage, été 🌞", "chien"),
    ("Ein Hund im Schnee — ÄÖÜß", "hund"),
    ("a cat on the beach", "dog"),  # subject absent
    ("   a   DOG   in   the   snow  ", "dog"),
]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = rng.integers(0, 256, (72, 56, 3), dtype=np.uint8)
    ref_mask = np.zeros((48, 80), np.uint8)
    ref_mask[8:40, 16:64] = 255
    out_mask = np.zeros((72, 56), np.uint8)
    out_mask[20:60, 10:40] = 255
    return ref, ref_mask, out, out_mask


@pytest.mark.parametrize(("prompt", "subject"), PROMPTS)
def test_unusual_prompts_match_the_reference(tiny_masc, reference_masc, images, prompt, subject):
    from PIL import Image

    ref, ref_mask, out, out_mask = images
    ours = tiny_masc.score(ref, ref_mask, out, out_mask, prompt, subject)
    theirs = reference_masc.score(Image.fromarray(ref), ref_mask, Image.fromarray(out), out_mask, prompt, object_name=subject)
    assert math.isfinite(ours.prompt)
    assert ours.prompt == pytest.approx(theirs.pf, abs=1e-4)
    assert ours.concept == pytest.approx(theirs.cp, abs=1e-4)
    assert ours.extras["prompt_text"] == theirs.extras["prompt_text"]


def test_subject_absent_is_reported_in_extras(tiny_masc, images):
    ref, ref_mask, out, out_mask = images
    absent = tiny_masc.score_many([Sample(ref, ref_mask, out, out_mask, "a cat on the beach", "dog")])[0]
    present = tiny_masc.score_many([Sample(ref, ref_mask, out, out_mask, "a dog on the beach", "dog")])[0]
    assert absent.extras["subject_found"] is False and absent.extras["prompt_stripped"] is False
    assert present.extras["subject_found"] is True and present.extras["prompt_text"] == "on the beach"
