"""Unusual prompts score like the reference: empty, non-ASCII, subject absent."""
from __future__ import annotations

import json
import math
import unicodedata

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


def test_a_subject_in_another_normal_form_is_stripped_and_reported(tiny_masc, images):
    """``cafe\\u0301`` (typed with a combining accent) against the prompt's ``café``: the
    subject was not found, so PF also scored it and extras said ``subject_found`` False."""
    ref, ref_mask, out, out_mask = images
    decomposed = unicodedata.normalize("NFD", "café")
    composed = tiny_masc.score(ref, ref_mask, out, out_mask, "a café at night", "café", distractors=["a café at noon"])
    mixed = tiny_masc.score(ref, ref_mask, out, out_mask, "a café at night", decomposed,
                            distractors=[unicodedata.normalize("NFD", "a café at noon")])
    assert mixed.extras["subject_found"] is True and mixed.extras["prompt_text"] == "at night"
    assert mixed.prompt == composed.prompt
    assert list(mixed.distractor_prompts.values()) == list(composed.distractor_prompts.values())


def test_suite_subject_in_another_normal_form_is_found_in_the_json(pytester, tiny_model_dir):
    """End to end: a suite whose subject is typed decomposed, prompts precomposed."""
    from masc_suites import make_images

    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    subject = unicodedata.normalize("NFD", "café dog")
    (pytester.path / "masc_cafe.toml").write_text(
        f'[suite]\nname = "cafe"\nmin_concept = 0.0\n\n[concepts.dog]\nsubject = "{subject}"\n'
        'reference = "refs/dog.png"\nreference_mask = "refs/dog_mask.png"\n\n[[cases]]\nconcept = "dog"\n'
        'prompt = "a café dog on the beach"\nimage = "out/beach.png"\nmask = "out/beach_mask.png"\n',
        encoding="utf-8",
    )
    result = pytester.runpytest("--masc", f"--masc-model={tiny_model_dir}", "-p", "no:cacheprovider", "--masc-json=out.json")
    result.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))["records"]
    assert record["extras"]["subject_found"] is True and record["extras"]["prompt_text"] == "on the beach"
    assert "the subject does not occur in the prompt" not in result.stdout.str()
