"""The protocol loaders' selection rules exactly at their edges (issue #20): DreamBench++ drops a
unit whose mask covers ``min_mask_fraction`` or less, ORIDa keeps a subject with at least
``min_backgrounds`` backgrounds, and the first ``n_subjects`` eligible subjects."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_masc.protocols.dreambench_plus import load_dreambench_plus
from pytest_masc.protocols.orida import load_orida
from pytest_masc.testing.datasets import write_dreambench_fixture, write_orida_fixture

SIXTEENTH = 1 / 16  # a fraction a float32 mean holds exactly


def write_fraction_mask(path: Path, fraction_of_16: int = 1) -> None:
    """Overwrite the PNG mask at ``path`` (same size) with ``fraction_of_16`` sixteenths of its
    pixels at 255 and the rest 0: whole rows, as the height is a multiple of 16."""
    width, height = Image.open(path).size
    assert height % 16 == 0
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[: height * fraction_of_16 // 16] = 255
    Image.fromarray(mask).save(path)


@pytest.fixture(scope="module")
def dreambench(tmp_path_factory):
    fixture = write_dreambench_fixture(tmp_path_factory.mktemp("dreambench"))
    write_fraction_mask(fixture.tiny_mask)  # the planted tiny output mask: now exactly 1/16
    return fixture


def keys(data) -> set[tuple[str, str]]:
    return {(u.method, u.key) for u in data.units}


def test_an_output_mask_of_exactly_min_mask_fraction_is_dropped_and_one_just_above_is_kept(dreambench):
    at = load_dreambench_plus(dreambench.root, dreambench.masks, min_mask_fraction=SIXTEENTH)
    below = load_dreambench_plus(dreambench.root, dreambench.masks, min_mask_fraction=math.nextafter(SIXTEENTH, 0))
    assert at.dropped["small_out_mask"] == 1 and below.dropped["small_out_mask"] == 0
    [extra] = keys(below) - keys(at)
    assert len(below) == len(at) + 1 and extra[1] == "object_00_t-shirt-0" and extra[0] == "emu2"
    assert dreambench.tiny_mask in {u.out_mask for u in below.units}


def test_a_reference_mask_at_the_edge_drops_every_unit_of_its_collection(tmp_path):
    fixture = write_dreambench_fixture(tmp_path)
    reference = fixture.masks / "data" / "images" / "animal" / "00.png"
    write_fraction_mask(reference)
    before = load_dreambench_plus(fixture.root, fixture.masks, min_mask_fraction=math.nextafter(SIXTEENTH, 0))
    dog = {k for k in keys(before) if "animal_00_dog" in k[1]}
    assert len(dog) == 6 and before.dropped["small_ref_mask"] == 0  # 2 methods x 3 prompts
    at = load_dreambench_plus(fixture.root, fixture.masks, min_mask_fraction=SIXTEENTH)
    assert at.dropped["small_ref_mask"] == 6 and keys(before) - keys(at) == dog
    assert at.dropped["small_out_mask"] == before.dropped["small_out_mask"] == 1  # the planted ~1 % output mask
    full = load_dreambench_plus(fixture.root, fixture.masks, min_mask_fraction=0.0)
    assert full.dropped["small_ref_mask"] == 0 and full.dropped["small_out_mask"] == 0


def test_an_empty_mask_is_dropped_even_with_min_mask_fraction_zero(tmp_path):
    fixture = write_dreambench_fixture(tmp_path)
    write_fraction_mask(fixture.tiny_mask, 0)
    data = load_dreambench_plus(fixture.root, fixture.masks, min_mask_fraction=0.0)
    assert data.dropped["small_out_mask"] == 1
    assert fixture.tiny_mask not in {u.out_mask for u in data.units}


@pytest.mark.parametrize("fraction", [1.0, -0.01, 1.5])
def test_min_mask_fraction_outside_zero_to_one_is_refused(dreambench, fraction):
    with pytest.raises(ValueError, match=rf"min_mask_fraction must be in \[0, 1\), got {fraction}"):
        load_dreambench_plus(dreambench.root, dreambench.masks, min_mask_fraction=fraction)


def test_a_fraction_just_below_one_is_accepted(dreambench):
    data = load_dreambench_plus(dreambench.root, dreambench.masks, min_mask_fraction=math.nextafter(1.0, 0))
    assert len(data) == 0 and data.dropped["small_ref_mask"] > 0


# ------------------------------------------------------------------ ORIDa
@pytest.fixture(scope="module")
def orida(tmp_path_factory):
    return write_orida_fixture(tmp_path_factory.mktemp("orida"))


def test_a_subject_with_exactly_min_backgrounds_is_kept(orida):
    # apple_red, blue_mug, green_box have 4 backgrounds, yellow_duck 2
    at_four = load_orida(orida.root, orida.split, min_backgrounds=4)
    assert at_four.subjects == ("apple_red", "blue_mug", "green_box")
    assert at_four.dropped == {"missing_mask": 1, "few_backgrounds": 1}
    at_two = load_orida(orida.root, orida.split, min_backgrounds=2)
    assert at_two.subjects == ("apple_red", "blue_mug", "green_box", "yellow_duck")
    assert at_two.dropped["few_backgrounds"] == 0
    # same-subject pairs: 3 * C(4, 2) + C(2, 2), and as many cross-subject pairs
    assert int(at_two.same.sum()) == 19 and len(at_two.pairs) == 38
    with pytest.raises(Exception, match=r"only 0 subject\(s\) have at least 5 backgrounds"):
        load_orida(orida.root, orida.split, min_backgrounds=5)


def test_n_subjects_takes_the_first_eligible_subjects(orida):
    two = load_orida(orida.root, orida.split, n_subjects=2, min_backgrounds=2)
    assert two.subjects == ("apple_red", "blue_mug") and int(two.same.sum()) == 12
    assert all(two.same[:12]) and not any(two.same[12:])
    assert {p.ref_subject for p in two.pairs} | {p.out_subject for p in two.pairs} == {"apple_red", "blue_mug"}


@pytest.mark.parametrize("argument, value, message", [
    ("min_backgrounds", 1, "min_backgrounds must be at least 2"),
    ("n_subjects", 1, "n_subjects must be at least 2"),
])
def test_orida_arguments_below_two_are_refused(orida, argument, value, message):
    with pytest.raises(ValueError, match=message):
        load_orida(orida.root, orida.split, **{argument: value})


# ------------------------------------------------------------------ DreamBench++ files
def write_ratings(tmp_path: Path, data) -> Path:
    import json
    path = tmp_path / "ratings.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_ratings_at_both_ends_of_the_scale_are_read_and_beyond_them_refused(tmp_path):
    from pytest_masc.protocols.dreambench_files import read_ratings
    ratings = read_ratings(write_ratings(tmp_path, {"object_00_can-0": 0, "object_00_can-1": 4, "object_00_can-2": None,
                                                    "object_00_can-3": 2.5}))
    assert ratings["object_00_can-0"] == 0.0 and ratings["object_00_can-1"] == 4.0 and ratings["object_00_can-3"] == 2.5
    assert math.isnan(ratings["object_00_can-2"])
    for bad, shown in ((math.nextafter(4.0, 5), "4.000000000000001"), (-0.01, "-0.01")):
        path = write_ratings(tmp_path, {"object_00_can-0": bad})
        with pytest.raises(Exception, match=rf"ratings\.json: rating of 'object_00_can-0' is {shown}, outside 0\.\.4"):
            read_ratings(path)
    assert read_ratings(write_ratings(tmp_path, {"object_00_can-0": 5}), scale_max=5)["object_00_can-0"] == 5.0
    for bad in (True, "3"):
        with pytest.raises(Exception, match=r"rating of 'object_00_can-0' is .*, not a number"):
            read_ratings(write_ratings(tmp_path, {"object_00_can-0": bad}))
    with pytest.raises(Exception, match=r"must hold a JSON object of key -> rating, got list"):
        read_ratings(write_ratings(tmp_path, [1, 2]))


@pytest.mark.parametrize("key, parsed", [
    ("live_subject_animal_00_kitten-3", ("live_subject_animal_00_kitten", 3)),
    ("object_00_a-b-0", ("object_00_a-b", 0)),
    ("x-12", ("x", 12)),
])
def test_a_rating_key_is_split_at_its_last_dash(key, parsed):
    from pytest_masc.protocols.dreambench_files import parse_key
    assert parse_key(key) == parsed


@pytest.mark.parametrize("key", ["kitten", "-3", "kitten-", "kitten-x", "kitten-3.0"])
def test_a_malformed_rating_key_is_refused(key):
    from pytest_masc.protocols.dreambench_files import parse_key
    with pytest.raises(Exception, match=rf"where: key '{re_escape(key)}' is not '<collection_id>-<prompt_index>'"):
        parse_key(key, "where")


def re_escape(text: str) -> str:
    import re
    return re.escape(text)


def test_collection_ids_and_method_names_as_published():
    from pytest_masc.protocols.dreambench_files import collection_id, method_name
    assert collection_id("animal", "00", "Golden Retriever") == "live_subject_animal_00_golden_retriever"
    assert collection_id("human", "03", "girl") == "live_subject_human_03_girl"
    assert collection_id("object", "01", "Red Can") == "object_01_red_can"
    assert method_name("DreamBooth LoRA-SDXL") == "dreambooth_lora_sdxl"


def test_rating_groups_are_the_visible_directories_of_merged_data(tmp_path):
    from pytest_masc.protocols.dreambench_files import rating_files
    merged = tmp_path / "data_human_rating" / "merged_data"
    for group in ("group_b", "group_a", ".cache"):
        (merged / group).mkdir(parents=True)
    (merged / "README.md").write_text("not a group")
    (merged / "group_a" / "emu2-cp.json").write_text("{}")
    (merged / "group_a" / "emu2-pf.json").write_text("{}")
    (merged / "group_b" / "emu2-cp.json").write_text("{}")
    (merged / "group_b" / "notes.json").write_text("{}")
    groups, files = rating_files(tmp_path)
    assert groups == ("group_a", "group_b")
    assert files == {"emu2": {"concept": {"group_a": merged / "group_a" / "emu2-cp.json",
                                          "group_b": merged / "group_b" / "emu2-cp.json"},
                              "prompt": {"group_a": merged / "group_a" / "emu2-pf.json"}}}
    assert rating_files(tmp_path / "elsewhere") == ((), {})


def test_a_method_s_sample_directory_is_found_by_prefix_only_when_one_matches(tmp_path):
    from pytest_masc.errors import InputError
    from pytest_masc.protocols.dreambench_files import sample_dir
    assert sample_dir(tmp_path, "mymethod", None) is None  # no samples directory at all
    samples = tmp_path / "samples"
    (samples / "mymethod_gs7").mkdir(parents=True)
    assert sample_dir(tmp_path, "mymethod", None) == samples / "mymethod_gs7"
    assert sample_dir(tmp_path, "other", None) is None
    (samples / "mymethod_gs3").mkdir()
    with pytest.raises(InputError, match=r"several sample directories could be method 'mymethod' "
                                         r"\(mymethod_gs3, mymethod_gs7\)"):
        sample_dir(tmp_path, "mymethod", None)
    (samples / "mymethod").mkdir()
    assert sample_dir(tmp_path, "mymethod", None) == samples / "mymethod"  # an exact name wins
    assert sample_dir(tmp_path, "x", "mymethod_gs3") == samples / "mymethod_gs3"
    with pytest.raises(InputError, match=r"sample directory of method 'x' not found"):
        sample_dir(tmp_path, "x", "missing")


def write_orida_subjects(root: Path, sizes: dict[str, int]) -> Path:
    """An ORIDa tree with ``sizes[subject]`` masked photos per subject (tiny PNGs)."""
    split = root / "ORIDa_v1.0" / "test"
    for subject, count in sizes.items():
        images, masks = split / subject / "factual_only" / "images", split / subject / "factual_only" / "annotations" / "masks"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for k in range(count):
            Image.fromarray(np.full((8, 8, 3), 40 * k, dtype=np.uint8)).save(images / f"{subject}_bg{k:02d}.png")
            Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(masks / f"{subject}_bg{k:02d}_mask.png")
    return root


def test_orida_takes_every_cross_pair_when_there_are_fewer_than_same_pairs(tmp_path):
    """6 photos of one subject and 2 of another: 16 same-subject pairs but only 12 cross pairs."""
    data = load_orida(write_orida_subjects(tmp_path, {"a": 6, "b": 2}), "test", min_backgrounds=2)
    assert int(data.same.sum()) == 16 and int((~data.same).sum()) == 12
    cross = {frozenset((p.ref_image, p.out_image)) for p in data.pairs if not p.same}
    assert len(cross) == 12 and all(p.ref_subject != p.out_subject for p in data.pairs if not p.same)


def test_every_orida_photo_can_be_drawn_into_a_cross_pair_and_pairs_are_frozen(orida):
    """Over a few seeds the random cross-subject draw reaches every photo (none, such as the
    first, is left out of the draw), and a drawn pair cannot be altered."""
    import dataclasses
    photos = set()
    for seed in range(6):
        data = load_orida(orida.root, orida.split, min_backgrounds=2, seed=seed)
        photos |= {image for p in data.pairs if not p.same for image in (p.ref_image, p.out_image)}
    assert photos == {image for images in data.photos.values() for image in images}
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.pairs[0].ref_subject = "other"


def test_prompts_come_from_the_captions_without_text_files_and_an_index_past_them_is_refused(tmp_path):
    import shutil
    from pytest_masc.errors import InputError
    fixture = write_dreambench_fixture(tmp_path)
    with_text = {(u.method, u.key): u.prompt for u in load_dreambench_plus(fixture.root, fixture.masks).units}
    samples = fixture.root / "samples"
    for text_dir in samples.glob("*/text"):
        shutil.rmtree(text_dir)
    from_captions = {(u.method, u.key): u.prompt for u in load_dreambench_plus(fixture.root, fixture.masks).units}
    assert from_captions == with_text and len(with_text) == 22
    # an output for prompt index 3 of a subject with prompts 0..2, and no text file for it
    method_dir = next(samples.glob("emu2_*"))
    outputs = method_dir / "tgt_image" / "object_00_t-shirt"
    source = next(outputs.glob("1_0.*"))
    shutil.copy(source, outputs / f"3_0{source.suffix}")
    mask_dir = fixture.masks / "samples" / method_dir.name / "tgt_image" / "object_00_t-shirt"
    shutil.copy(next(mask_dir.glob("1_0.*")), mask_dir / "3_0.png")
    with pytest.raises(InputError, match=r"no prompt for object_00_t-shirt-3 \(file missing or empty, and .* has 3 prompts\)"):
        load_dreambench_plus(fixture.root, fixture.masks, rated_only=False)


def test_protocol_summaries_count_units_pairs_and_drops(tmp_path, orida):
    from pytest_masc.protocols.dreambench_plus import ProtocolData
    fixture = write_dreambench_fixture(tmp_path)
    assert load_dreambench_plus(fixture.root, fixture.masks).summary() == (
        "22 units, 2 methods, 2 rater groups; dropped 2 (missing_out_mask 1, small_out_mask 1)")
    empty = ProtocolData(samples=[], units=[], ratings={}, groups=(), dropped={"missing_output": 0}, methods=())
    assert empty.summary() == "0 units, 0 methods, 0 rater groups; dropped 0 (none)"
    assert load_orida(orida.root, orida.split, min_backgrounds=4).summary() == (
        "3 subjects, 12 photos; 18 same-subject and 18 cross-subject pairs; "
        "skipped 1 photos without mask, 1 subjects with too few backgrounds")


def test_orida_reads_only_visible_image_files(tmp_path):
    root = write_orida_subjects(tmp_path, {"a": 2, "b": 2})
    images = root / "ORIDa_v1.0" / "test" / "a" / "factual_only" / "images"
    (images / "notes.txt").write_text("not a photo")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / ".hidden.png")
    data = load_orida(root, "test", min_backgrounds=2)
    assert data.dropped == {"missing_mask": 0, "few_backgrounds": 0}
    assert [p.name for p in data.photos["a"]] == ["a_bg00.png", "a_bg01.png"]


def test_an_identity_protocol_built_without_drop_counts_reports_none_dropped():
    from pytest_masc.protocols.orida import IdentityData
    data = IdentityData(samples=[], same=np.zeros(0, dtype=bool), pairs=[], subjects=(), photos={})
    assert data.summary() == ("0 subjects, 0 photos; 0 same-subject and 0 cross-subject pairs; "
                              "skipped 0 photos without mask, 0 subjects with too few backgrounds")


def test_dreambench_text_files_captions_and_outputs_at_their_edges(tmp_path):
    import dataclasses
    from pytest_masc.errors import InputError
    from pytest_masc.protocols.dreambench_files import read_collections
    fixture = write_dreambench_fixture(tmp_path)
    samples = fixture.root / "samples"
    method_dir = next(samples.glob("emu2_*"))
    text = next((method_dir / "text" / "object_00_t-shirt").glob("1_0.txt"))
    text.write_text("a custom prompt\n\n", encoding="utf-8")  # the prompt is the first line, a blank last line
    (method_dir / "tgt_image" / "object_00_t-shirt" / "7_0.txt").write_text("not an output")
    data = load_dreambench_plus(fixture.root, fixture.masks, rated_only=False)
    unit = next(u for u in data.units if u.method == "emu2" and u.key == "object_00_t-shirt-1")
    assert unit.prompt == "a custom prompt"
    assert data.dropped["missing_output"] == 0 and not any(u.key.endswith("-7") for u in data.units)
    with pytest.raises(dataclasses.FrozenInstanceError):
        unit.prompt = "changed"
    caption = fixture.root / "data" / "captions" / "object" / "00.txt"
    caption.write_text("\nt-shirt\na t-shirt on the beach\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"00\.txt: caption file is empty; its first line must be the subject name"):
        read_collections(fixture.root)


def test_orida_needs_two_eligible_subjects_and_takes_fifty_by_default(tmp_path):
    from pytest_masc.errors import InputError
    with pytest.raises(InputError, match=r"only 1 subject\(s\) have at least 3 backgrounds"):
        load_orida(write_orida_subjects(tmp_path / "one", {"a": 3, "b": 2}), "test", min_backgrounds=3)
    many = write_orida_subjects(tmp_path / "many", {f"s{i:02d}": 2 for i in range(51)})
    data = load_orida(many, "test", min_backgrounds=2)
    assert len(data.subjects) == 50 and data.subjects[-1] == "s49" and int(data.same.sum()) == 50
