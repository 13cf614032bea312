"""Protocol loaders on fixture trees in the published layouts, evaluation and tables."""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from pytest_masc import InputError, Score
from pytest_masc.stats.agreement import human_alpha, human_vs_human_alpha
from pytest_masc.protocols import (
    HUMAN_CEILING,
    POOLED,
    evaluate_dreambench,
    evaluate_identity,
    format_identity,
    format_table,
    load_dreambench_plus,
    load_orida,
)
from pytest_masc.protocols.dreambench_plus import (
    PUBLISHED_METHODS,
    collection_id,
    method_name,
    parse_key,
)
from pytest_masc.testing.datasets import demo_table, write_dreambench_fixture, write_orida_fixture

CELL = re.compile(r"^(-?\d+\.\d{2}) \[(-?\d+\.\d{2}), (-?\d+\.\d{2})\]$")


@pytest.fixture(scope="module")
def dreambench(tmp_path_factory):
    return write_dreambench_fixture(tmp_path_factory.mktemp("dreambench"))


@pytest.fixture(scope="module")
def data(dreambench):
    return load_dreambench_plus(dreambench.root, dreambench.masks)


@pytest.fixture
def tree_copy(dreambench, tmp_path):
    """A private copy of the fixture tree that a test may damage."""
    root = shutil.copytree(dreambench.root, tmp_path / "dreambench_plus")
    masks = shutil.copytree(dreambench.masks, tmp_path / "masks")
    return root, masks


@pytest.fixture(scope="module")
def orida(tmp_path_factory):
    return write_orida_fixture(tmp_path_factory.mktemp("orida"))


# --------------------------------------------------------------------------- DreamBench++ naming


def test_published_naming_rules():
    assert collection_id("animal", "00", "Kitten") == "live_subject_animal_00_kitten"
    assert collection_id("human", "03", "old man") == "live_subject_human_03_old_man"
    assert collection_id("object", "12", "t-shirt") == "object_12_t-shirt"
    assert parse_key("object_12_t-shirt-7") == ("object_12_t-shirt", 7)
    assert parse_key("live_subject_animal_00_cotton-top_tamarin-0") == ("live_subject_animal_00_cotton-top_tamarin", 0)
    assert method_name("IP-Adapter-Plus ViT-H SDXL") == "ip_adapter_plus_vit_h_sdxl"
    assert all(directory.startswith(name + "_") for name, directory in PUBLISHED_METHODS.items())
    with pytest.raises(InputError, match="prompt_index"):
        parse_key("object_12_t-shirt")


# --------------------------------------------------------------------------- DreamBench++ loader


def test_loader_reads_units_ratings_and_drops(dreambench, data):
    assert data.methods == ("blip_diffusion", "emu2")
    assert data.groups == ("group_1", "group_2")
    assert data.dropped == {
        "missing_reference": 0, "missing_output": 0, "missing_ref_mask": 0,
        "missing_out_mask": 1, "small_out_mask": 1, "small_ref_mask": 0,
    }
    assert len(data) == len(data.samples) == dreambench.n_rated - 2
    for dimension in ("concept", "prompt"):
        assert data.ratings[dimension].shape == (2, len(data))
    out_masks = {u.out_mask for u in data.units}
    assert dreambench.tiny_mask not in out_masks and dreambench.tiny_mask.is_file()
    assert all(u.out_image.stem.endswith("_0") for u in data.units)  # seed 1 is never used
    for unit, sample in zip(data.units, data.samples):
        assert sample.out_image == unit.out_image and sample.ref_mask == unit.ref_mask
        assert sample.subject == unit.subject and sample.prompt == unit.prompt
        assert unit.subject.lower() in unit.prompt.lower()
        assert unit.ref_image.parent.parent.name == "images" and unit.category == unit.ref_image.parent.name
        assert unit.key == f"{unit.collection_id}-{unit.prompt_index}"


def test_ratings_match_the_json_files(dreambench, data):
    merged = dreambench.root / "data_human_rating" / "merged_data"
    for dimension, suffix in (("concept", "cp"), ("prompt", "pf")):
        for g, group in enumerate(data.groups):
            for method in data.methods:
                table = json.loads((merged / group / f"{method}-{suffix}.json").read_text())
                for i, unit in enumerate(data.units):
                    if unit.method != method:
                        continue
                    got = data.ratings[dimension][g, i]
                    if dimension == "prompt" and not unit.pf_applies:
                        assert math.isnan(got)
                    elif unit.key in table:
                        assert got == table[unit.key]
                    else:
                        assert math.isnan(got)


def test_missing_rating_is_nan(dreambench, data):
    group, method, dimension, key = dreambench.missing_rating
    index = next(i for i, u in enumerate(data.units) if u.method == method and u.key == key)
    row = data.groups.index(group)
    assert math.isnan(data.ratings[dimension][row, index])
    assert np.isfinite(data.ratings[dimension][1 - row, index])
    assert np.isfinite(data.ratings["prompt"][:, index]).all()


def test_style_subject_is_excluded_from_prompt_following(dreambench, data):
    style = [i for i, u in enumerate(data.units) if u.collection_id == dreambench.style_collection]
    assert style and all(data.units[i].category == "style" for i in style)
    assert not data.pf_applies[style].any()
    assert np.isnan(data.ratings["prompt"][:, style]).all()
    assert np.isfinite(data.ratings["concept"][:, style]).all()
    assert data.pf_applies.sum() == len(data) - len(style)


def test_threshold_and_missing_masks(dreambench, tree_copy):
    root, masks = tree_copy
    keep_all = load_dreambench_plus(root, masks, min_mask_fraction=0.0)
    assert keep_all.dropped["small_out_mask"] == 0 and len(keep_all) == dreambench.n_rated - 1
    assert any(u.out_mask.name == dreambench.tiny_mask.name and u.category == "object" for u in keep_all.units)
    # a missing reference mask drops every rated unit of that subject (2 methods x 3
    # prompts); the reference is checked first, so the cat output without a mask now
    # counts as a missing reference mask
    reference_mask = masks / "data" / "images" / "animal" / "01.png"
    reference_mask.unlink()
    data = load_dreambench_plus(root, masks)
    assert data.dropped["missing_ref_mask"] == 6 and data.dropped["missing_out_mask"] == 0
    assert all(u.subject != "cat" for u in data.units)
    assert len(data) == dreambench.n_rated - 6 - 1


def test_small_reference_mask_is_dropped(tree_copy):
    from PIL import Image

    root, masks = tree_copy
    path = masks / "data" / "images" / "animal" / "00.png"
    small = np.zeros((64, 64), np.uint8)
    small[30:34, 30:34] = 255  # 16 of 4096 pixels
    Image.fromarray(small).save(path)
    data = load_dreambench_plus(root, masks)
    assert data.dropped["small_ref_mask"] > 0
    assert all(u.subject != "dog" for u in data.units)


def test_malformed_json_names_the_file(tmp_path):
    fixture = write_dreambench_fixture(tmp_path, malformed_json=True)
    with pytest.raises(InputError, match="malformed JSON") as error:
        load_dreambench_plus(fixture.root, fixture.masks)
    assert str(fixture.malformed) in str(error.value)


@pytest.mark.parametrize(
    "content, message",
    [("[1, 2]", "JSON object"), ('{"object_00_t-shirt-0": 7}', "outside 0..4"),
     ('{"object_00_t-shirt-0": "good"}', "not a number"), ('{"no_index": 2}', "prompt_index")],
)
def test_bad_rating_files_name_the_file(tree_copy, content, message):
    root, masks = tree_copy
    path = root / "data_human_rating" / "merged_data" / "group_1" / "emu2-cp.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        load_dreambench_plus(root, masks)
    assert str(path) in str(error.value)


def test_null_rating_is_missing(tree_copy):
    root, masks = tree_copy
    path = root / "data_human_rating" / "merged_data" / "group_1" / "blip_diffusion-cp.json"
    table = json.loads(path.read_text())
    key = sorted(table)[0]
    table[key] = None
    path.write_text(json.dumps(table))
    data = load_dreambench_plus(root, masks)
    index = next(i for i, u in enumerate(data.units) if u.method == "blip_diffusion" and u.key == key)
    assert math.isnan(data.ratings["concept"][0, index])


def test_missing_caption_names_the_image(tree_copy):
    root, masks = tree_copy
    (root / "data" / "captions" / "object" / "00.txt").unlink()
    with pytest.raises(InputError, match="no caption file") as error:
        load_dreambench_plus(root, masks)
    assert str(root / "data" / "images" / "object" / "00.jpg") in str(error.value)


def test_caption_beside_the_image_is_accepted(data, tree_copy):
    root, masks = tree_copy
    for caption in (root / "data" / "captions").rglob("*.txt"):
        shutil.move(caption, root / "data" / "images" / caption.parent.name / caption.name)
    shutil.rmtree(root / "data" / "captions")
    moved = load_dreambench_plus(root, masks)
    assert [u.key for u in moved.units] == [u.key for u in data.units]


def test_method_selection(dreambench, data):
    only = load_dreambench_plus(dreambench.root, dreambench.masks, methods=["emu2"])
    assert only.methods == ("emu2",) and {u.method for u in only.units} == {"emu2"}
    assert len(only) == int((data.method_of == "emu2").sum())
    explicit = load_dreambench_plus(
        dreambench.root, dreambench.masks, methods={"emu2": PUBLISHED_METHODS["emu2"]}
    )
    assert [u.key for u in explicit.units] == [u.key for u in only.units]
    with pytest.raises(InputError, match="dreambooth_sd"):
        load_dreambench_plus(dreambench.root, dreambench.masks, methods=["dreambooth_sd"])


def test_rated_only_and_missing_output(tree_copy):
    root, masks = tree_copy
    merged = root / "data_human_rating" / "merged_data"
    key = "live_subject_animal_01_cat-0"
    for group in ("group_1", "group_2"):
        for suffix in ("cp", "pf"):
            path = merged / group / f"blip_diffusion-{suffix}.json"
            table = json.loads(path.read_text())
            del table[key]
            path.write_text(json.dumps(table))
    rated = load_dreambench_plus(root, masks)
    everything = load_dreambench_plus(root, masks, rated_only=False)
    assert key not in {u.key for u in rated.units if u.method == "blip_diffusion"}
    index = next(i for i, u in enumerate(everything.units) if u.method == "blip_diffusion" and u.key == key)
    assert len(everything) == len(rated) + 1
    assert np.isnan(everything.ratings["concept"][:, index]).all()
    # without rating files every seed-0 output is a unit, with NaN ratings
    shutil.rmtree(root / "data_human_rating")
    unrated = load_dreambench_plus(root, masks)
    assert unrated.groups == () and unrated.ratings["concept"].shape == (0, len(unrated))
    assert unrated.methods == tuple(sorted(PUBLISHED_METHODS[m] for m in ("blip_diffusion", "emu2")))
    assert len(unrated) == len(everything)
    rows = evaluate_dreambench(unrated, _fake_scores_unrated(len(unrated)), n_resamples=10)
    assert all(math.isnan(r.estimate.value) and r.n_units == 0 for r in rows)
    # a rated key whose seed-0 output is missing is dropped and counted


def test_missing_output_is_dropped(tree_copy):
    root, masks = tree_copy
    sample_dir = root / "samples" / PUBLISHED_METHODS["emu2"]
    (sample_dir / "tgt_image" / "live_subject_animal_01_cat" / "1_0.jpg").unlink()
    assert load_dreambench_plus(root, masks).dropped["missing_output"] == 1


# --------------------------------------------------------------------------- DreamBench++ evaluation


def _fake_scores_unrated(n):
    return [Score(concept=0.1 * i, prompt=0.0, global_concept=0.0, global_prompt=0.0) for i in range(n)]


def _fake_scores(data, rng):
    """Scores whose CP follows the mean human concept rating; the rest is noise."""
    concept = np.nanmean(data.ratings["concept"], axis=0) / 4 + rng.normal(0, 0.1, len(data))
    return [
        Score(concept=float(c), prompt=float(rng.normal()), global_concept=float(rng.normal()),
              global_prompt=float(rng.normal()))
        for c in concept
    ]


def test_evaluate_dreambench_rows(data):
    rng = np.random.default_rng(0)
    scores = _fake_scores(data, rng)
    scores[0] = InputError("unreadable")  # as score_many(errors="return") leaves it
    extra = {"CLIP-I": rng.normal(size=len(data)), "CLIP-T": rng.normal(size=len(data))}
    rows = evaluate_dreambench(data, scores, extra, n_resamples=100)
    columns = ["blip_diffusion", "emu2", POOLED]
    expected = {
        "concept": ["MaSC CP", "global concept", "CLIP-I", HUMAN_CEILING],
        "prompt": ["MaSC PF", "global prompt", "CLIP-T", HUMAN_CEILING],
    }
    for dimension, metrics in expected.items():
        got = [(r.metric, r.column) for r in rows if r.dimension == dimension]
        assert got == [(m, c) for m in metrics for c in columns]
    cell = {(r.dimension, r.metric, r.column): r for r in rows}
    # a cell is human_alpha over its units; PF leaves the style subject out
    emu2 = data.method_of == "emu2"
    cp = np.array([math.nan] + [s.concept for s in scores[1:]])
    row = cell[("concept", "MaSC CP", "emu2")]
    assert row.estimate.value == pytest.approx(human_alpha(cp[emu2], data.ratings["concept"][:, emu2]))
    assert row.estimate.low <= row.estimate.value <= row.estimate.high
    assert cell[("concept", "MaSC CP", POOLED)].n_units == len(data) - 1
    assert data.pf_applies[0]  # the unscored unit is left out of PF too
    assert cell[("prompt", "MaSC PF", POOLED)].n_units == int(data.pf_applies.sum()) - 1
    pf_cells = data.pf_applies
    assert cell[("prompt", HUMAN_CEILING, POOLED)].estimate.value == pytest.approx(
        human_vs_human_alpha(data.ratings["prompt"][:, pf_cells]))
    # CP built from the ratings agrees with them better than noise does
    assert cell[("concept", "MaSC CP", POOLED)].estimate.value > cell[("concept", "CLIP-I", POOLED)].estimate.value
    with pytest.raises(ValueError, match="scores"):
        evaluate_dreambench(data, scores[:-1])
    with pytest.raises(ValueError, match="CLIP-I"):
        evaluate_dreambench(data, scores, {"CLIP-I": np.ones(3)})


def test_format_table_layout(data):
    rows = evaluate_dreambench(data, _fake_scores(data, np.random.default_rng(1)), n_resamples=100)
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("Krippendorff's alpha")
    headers = [line for line in lines if line.startswith("| Concept") or line.startswith("| Prompt")]
    assert len(headers) == 2
    for header in headers:
        names = [c.strip().split(" (n=")[0] for c in header.strip("|").split("|")[1:]]
        assert names == ["blip_diffusion", "emu2", POOLED]
    body = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and line not in headers}
    for metric in ("MaSC CP", "global concept", "MaSC PF", "global prompt", HUMAN_CEILING):
        assert metric in body
    first = [c.strip() for c in body["MaSC CP"].strip("|").split("|")[1:]]
    assert all(CELL.match(c) for c in first), first


# --------------------------------------------------------------------------- ORIDa


def test_orida_protocol_pairs(orida):
    data = load_orida(orida.root, orida.split, min_backgrounds=3)
    assert data.subjects == ("apple_red", "blue_mug", "green_box")  # yellow_duck has 2 backgrounds
    assert data.dropped == {"missing_mask": 1, "few_backgrounds": 1}
    assert all(len(data.photos[s]) == 4 for s in data.subjects)
    assert orida.unmasked[0] not in data.photos["blue_mug"]
    n_same = 3 * 6  # C(4, 2) per subject
    assert int(data.same.sum()) == n_same and len(data) == 2 * n_same
    cross = [p for p in data.pairs if not p.same]
    assert all(p.ref_subject != p.out_subject for p in cross)
    assert len({frozenset((p.ref_image, p.out_image)) for p in cross}) == len(cross)
    assert all("factual_only" in str(s.ref_image) and "factual_only" in str(s.out_image) for s in data.samples)
    assert all(p.ref_mask.name == p.ref_image.stem + "_mask.png" for p in data.pairs)
    again = load_orida(orida.root, orida.split, min_backgrounds=3)
    other = load_orida(orida.root, orida.split, min_backgrounds=3, seed=1)
    assert [(p.ref_image, p.out_image) for p in again.pairs] == [(p.ref_image, p.out_image) for p in data.pairs]
    assert [(p.ref_image, p.out_image) for p in other.pairs] != [(p.ref_image, p.out_image) for p in data.pairs]


def test_orida_subject_selection_and_errors(orida):
    first_two = load_orida(orida.root, orida.split, n_subjects=2, min_backgrounds=3)
    assert first_two.subjects == ("apple_red", "blue_mug")
    inside = load_orida(orida.root / "ORIDa_v1.0", orida.split, n_subjects=2, min_backgrounds=3)
    assert [s.out_image for s in inside.samples] == [s.out_image for s in first_two.samples]
    # backgrounds grouped by a stem rule: two photos share each background, so yellow_duck
    # (2 photos) has one background and the others two
    grouped = load_orida(orida.root, orida.split, min_backgrounds=2,
                         background_of=lambda stem: str(int(stem[-2:]) // 2))
    assert grouped.subjects == ("apple_red", "blue_mug", "green_box")
    assert all(len(p) == 2 for p in grouped.photos.values())
    assert [p.name for p in grouped.photos["apple_red"]] == ["apple_red_bg00.jpg", "apple_red_bg02.jpg"]
    with pytest.raises(InputError, match="split 'train'"):
        load_orida(orida.root, "train")
    with pytest.raises(InputError, match="at least 10 backgrounds"):
        load_orida(orida.root, orida.split)


def test_evaluate_identity_with_fake_scores(orida):
    data = load_orida(orida.root, orida.split, min_backgrounds=3)
    rng = np.random.default_rng(0)
    cp = np.where(data.same, 0.8, 0.4) + rng.normal(0, 0.05, len(data))
    scores = [Score(concept=c, prompt=0.0, global_concept=0.5, global_prompt=0.0) for c in cp]
    result = evaluate_identity(data, scores, {"DINO-I": rng.normal(size=len(data))}, n_resamples=200)
    assert result["metrics"]["MaSC CP"].value == 1.0
    assert result["metrics"]["global concept"].value == 0.5  # all tied
    assert set(result["metrics"]) == {"MaSC CP", "global concept", "DINO-I"}
    text = format_identity(result)
    assert "18 same-subject vs 18 cross-subject" in text and "| MaSC CP" in text


# --------------------------------------------------------------------------- end to end with tiny MaSC


def test_demo_table_end_to_end(tmp_path, tiny_masc):
    table = demo_table(tmp_path, tiny_masc)
    lines = table.splitlines()
    assert lines[-1].startswith("22 units, 2 methods, 2 rater groups; dropped 2")
    rows = {}
    for line in lines:
        if line.startswith("| ") and not set(line) <= set("|- "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    assert [c.split(" (n=")[0] for c in rows["Concept preservation"]] == ["blip_diffusion", "emu2", POOLED]
    assert [c.split(" (n=")[0] for c in rows["Prompt following"]] == ["blip_diffusion", "emu2", POOLED]
    for metric in ("MaSC CP", "global concept", "MaSC PF", "global prompt", HUMAN_CEILING):
        assert len(rows[metric]) == 3
        for cell in rows[metric]:
            match = CELL.match(cell)
            assert match, (metric, cell)
            value, low, high = map(float, match.groups())
            assert all(math.isfinite(v) for v in (value, low, high)) and low <= high


def test_orida_end_to_end(orida, tiny_masc):
    data = load_orida(orida.root, orida.split, min_backgrounds=3)
    scores = tiny_masc.score_many(data.samples)
    result = evaluate_identity(data, scores, n_resamples=200)
    for name in ("MaSC CP", "global concept"):
        estimate = result["metrics"][name]
        assert 0.0 <= estimate.value <= 1.0
        assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0
    assert CELL.match(str(result["metrics"]["MaSC CP"]))
