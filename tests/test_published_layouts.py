"""The protocol loaders on small trees written by hand in the published layouts
(``tests/data/``), not by the package's own fixture writers. Expected values are worked out
by hand from the files (listed in each test), never by the code under test.

``tests/data/dreambench_plus`` (+ ``dreambench_plus_masks``): subjects ``animal/00``
kitten, ``object/00`` Spider-Man, ``style/00`` ukiyo-e; method ``blip_diffusion`` under its
published sample directory; rater groups ``group_a`` and ``group_b``; eight rated keys::

    key                                 cp a/b  pf a/b   fate
    live_subject_animal_00_kitten-0      4 4     3 2     kept (prompt from its text file)
    live_subject_animal_00_kitten-1      0 1     1 1     kept (no text file: caption line 2)
    live_subject_animal_00_kitten-2      2 2     2 2     missing_output (no 2_0.jpg)
    live_subject_human_00_chef-0         3 3     3 3     missing_reference
    object_00_spider-man-0               2 2     4 -     kept (group_b: null)
    object_00_spider-man-1               1 1     1 1     missing_out_mask
    style_00_ukiyo-e-0                   3 1     2 2     kept, style: no PF
    style_00_ukiyo-e-1                   4 4     4 4     small_out_mask (1 of 256 pixels)

``tests/data/orida/ORIDa_v1.0/test``: banana (bg01, bg02; bg03 has no mask), cherry (bg01..03),
durian (bg01 only), green_apple (bg01..03); every mask ``<stem>_mask.png``.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from pytest_masc import Score
from pytest_masc.protocols import HUMAN_CEILING, POOLED, evaluate_dreambench, load_dreambench_plus, load_orida

DATA = Path(__file__).resolve().parent / "data"
DREAMBENCH = DATA / "dreambench_plus"
DREAMBENCH_MASKS = DATA / "dreambench_plus_masks"
ORIDA = DATA / "orida"
METHOD_DIR = "blip_diffusion_gs7_5_step100_seed42_torch_float16"
NAN = math.nan


@pytest.fixture(scope="module")
def dreambench():
    return load_dreambench_plus(DREAMBENCH, DREAMBENCH_MASKS)


def test_dreambench_units_prompts_and_drops(dreambench):
    """Units sorted by collection id then prompt index; one drop of each planted kind."""
    assert dreambench.methods == ("blip_diffusion",)
    assert dreambench.method_dirs == {"blip_diffusion": DREAMBENCH / "samples" / METHOD_DIR}
    assert dreambench.groups == ("group_a", "group_b")
    assert [u.key for u in dreambench.units] == [
        "live_subject_animal_00_kitten-0",
        "live_subject_animal_00_kitten-1",
        "object_00_spider-man-0",
        "style_00_ukiyo-e-0",
    ]
    assert [u.prompt for u in dreambench.units] == [
        "a kitten on the beach, photo",  # the sample's text file wins over the caption
        "a kitten in the snow",  # caption line 2 (prompt index 1)
        "a Spider-Man on a table",
        "a cat in ukiyo-e style",
    ]
    assert [u.subject for u in dreambench.units] == ["kitten", "kitten", "Spider-Man", "ukiyo-e"]
    assert [u.pf_applies for u in dreambench.units] == [True, True, True, False]
    assert dreambench.dropped == {
        "missing_reference": 1, "missing_output": 1, "missing_ref_mask": 0,
        "missing_out_mask": 1, "small_ref_mask": 0, "small_out_mask": 1,
    }
    first = dreambench.samples[0]
    assert first.ref_image == DREAMBENCH / "data/images/animal/00.jpg"
    assert first.ref_mask == DREAMBENCH_MASKS / "data/images/animal/00.png"
    assert first.out_image == DREAMBENCH / "samples" / METHOD_DIR / "tgt_image/live_subject_animal_00_kitten/0_0.jpg"
    assert first.out_mask == DREAMBENCH_MASKS / "samples" / METHOD_DIR / "tgt_image/live_subject_animal_00_kitten/0_0.png"
    assert (first.prompt, first.subject) == ("a kitten on the beach, photo", "kitten")
    assert dreambench.summary() == (
        "4 units, 1 methods, 2 rater groups; dropped 4 (missing_reference 1, missing_output 1, "
        "missing_out_mask 1, small_out_mask 1)"
    )


def test_dreambench_ratings_as_written(dreambench):
    np.testing.assert_array_equal(dreambench.ratings["concept"], [[4, 0, 2, 3], [4, 1, 2, 1]])
    np.testing.assert_array_equal(dreambench.ratings["prompt"], [[3, 1, 4, NAN], [2, 1, NAN, NAN]])


def _cell(rows, dimension, metric):
    return next(r for r in rows if (r.dimension, r.metric, r.column) == (dimension, metric, POOLED))


def test_dreambench_alphas_worked_out_by_hand(dreambench):
    """Interval alpha, two coders, no missing values: ``1 - D_o / D_e`` with
    ``D_o = sum (a - b)^2 / N`` and ``D_e = sum_{i,j} (v_i - v_j)^2 / (n (n - 1))`` over the
    ``n = 2N`` values (ratings / 4 change nothing: alpha is scale-free).

    * concept, groups a = [4, 0, 2, 3], b = [4, 1, 2, 1]: D_o = (0+1+0+4)/4 = 5/4; the 8
      values sum to 17, squares to 51: sum_{i,j} = 2*8*51 - 2*17^2 = 238, D_e = 238/56 =
      17/4, alpha = 1 - 5/17 = 12/17.
    * prompt (PF units: not the style one; only kitten-0, kitten-1 rated by both):
      (3, 2), (1, 1): D_o = 1/2; values 3, 1, 2, 1: sum 7, squares 15: sum_{i,j} = 2*4*15 -
      2*49 = 22, D_e = 22/12, alpha = 1 - 3/11 = 8/11.
    * MaSC CP = [1, 0, 0.5, 0.75] min-max normalises to itself, which is group a / 4
      (alpha 1) and, against group b, the concept case above (12/17): mean 29/34.
    """
    scores = [Score(concept=c, prompt=p, global_concept=0.0, global_prompt=0.0)
              for c, p in zip([1.0, 0.0, 0.5, 0.75], [0.1, 0.2, 0.3, 0.4])]
    rows = evaluate_dreambench(dreambench, scores, n_resamples=20)
    assert _cell(rows, "concept", HUMAN_CEILING).estimate.value == pytest.approx(12 / 17, abs=1e-12)
    assert _cell(rows, "prompt", HUMAN_CEILING).estimate.value == pytest.approx(8 / 11, abs=1e-12)
    assert _cell(rows, "concept", "MaSC CP").estimate.value == pytest.approx(29 / 34, abs=1e-12)
    assert _cell(rows, "concept", "MaSC CP").n_units == 4
    assert _cell(rows, "prompt", "MaSC PF").n_units == 3  # the style unit has no PF


def test_dreambench_tree_scores(tiny_masc, dreambench):
    """Every kept unit's files decode and score (masks: 8x8 of 16x16 pixels)."""
    scores = tiny_masc.score_many(dreambench.samples)
    assert all(not math.isnan(s.concept) and not math.isnan(s.prompt) for s in scores)
    assert all(s.extras["ref_mask_reading"]["rule"] == "reference" for s in scores)


# ----------------------------------------------------------------------------- ORIDa


@pytest.mark.parametrize("root", [ORIDA, ORIDA / "ORIDa_v1.0"], ids=["parent", "version-dir"])
def test_orida_pairs_counted_by_hand(root):
    """min_backgrounds=2: banana (2 photos with masks), cherry (3) and green_apple (3) are
    eligible, durian (1) is not. Same-subject pairs 1 + 3 + 3 = 7, cross-subject 7 of the
    2*3 + 2*3 + 3*3 = 21 possible."""
    data = load_orida(root, "test", min_backgrounds=2)
    split = ORIDA / "ORIDa_v1.0" / "test"
    assert data.subjects == ("banana", "cherry", "green_apple")
    assert data.photos["banana"] == (split / "banana/factual_only/images/bg01.jpg",
                                     split / "banana/factual_only/images/bg02.jpg")
    assert [p.name for p in data.photos["cherry"]] == ["bg01.jpg", "bg02.jpg", "bg03.jpg"]
    assert data.dropped == {"missing_mask": 1, "few_backgrounds": 1}
    assert len(data) == 14 and int(data.same.sum()) == 7
    same = [(p.ref_subject, p.ref_image.stem, p.out_image.stem) for p in data.pairs if p.same]
    assert same == [
        ("banana", "bg01", "bg02"),
        ("cherry", "bg01", "bg02"), ("cherry", "bg01", "bg03"), ("cherry", "bg02", "bg03"),
        ("green_apple", "bg01", "bg02"), ("green_apple", "bg01", "bg03"), ("green_apple", "bg02", "bg03"),
    ]
    cross = [p for p in data.pairs if not p.same]
    assert all(p.ref_subject != p.out_subject for p in cross)
    assert len({frozenset((p.ref_image, p.out_image)) for p in cross}) == 7
    for pair in data.pairs:
        assert pair.ref_mask == pair.ref_image.parents[1] / "annotations/masks" / f"{pair.ref_image.stem}_mask.png"
    prompts = {s.prompt for s, p in zip(data.samples, data.pairs) if p.ref_subject == "green_apple"}
    assert prompts == {"a photo of green apple"}


def test_orida_first_subjects_only():
    """n_subjects=2 takes banana and cherry: 1 + 3 same pairs, and 4 of the 2*3 cross pairs."""
    data = load_orida(ORIDA, "test", n_subjects=2, min_backgrounds=2)
    assert data.subjects == ("banana", "cherry")
    assert int(data.same.sum()) == 4 and len(data) == 8
    possible = {frozenset(pair) for pair in itertools.product(data.photos["banana"], data.photos["cherry"])}
    drawn = {frozenset((p.ref_image, p.out_image)) for p in data.pairs if not p.same}
    assert len(drawn) == 4 and drawn <= possible
    assert data.dropped == {"missing_mask": 1, "few_backgrounds": 0}


def test_orida_three_backgrounds_leave_too_few_subjects():
    """min_backgrounds=3: only cherry and green_apple remain (banana has 2 masked photos)."""
    data = load_orida(ORIDA, "test", min_backgrounds=3)
    assert data.subjects == ("cherry", "green_apple")
    assert data.dropped == {"missing_mask": 1, "few_backgrounds": 2}
