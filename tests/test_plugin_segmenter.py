"""``--masc-segmenter``: suites, CSV rows and ``masc.check()`` without masks, end to end with
``pytester`` on the tiny SigLIP2 checkpoint and the tiny random CLIPSeg / SAM3 checkpoints."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: output images of the suites: name -> (height, width)
OUTPUTS = {"beach": (80, 80), "snow": (96, 64), "city": (48, 112)}


def write_images(root: Path) -> None:
    """refs/dog.png + its mask, out/<name>.png + masks: random pixels, rectangular masks."""
    rng = np.random.default_rng(0)
    images = {"refs/dog": (64, 96), **{f"out/{name}": size for name, size in OUTPUTS.items()}}
    for stem, (height, width) in images.items():
        (root / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / f"{stem}.png")
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
        Image.fromarray(mask).save(root / f"{stem}_mask.png")


def suite_text(*, reference_mask: bool, output_masks: bool, name: str = "dogs") -> str:
    """A suite of three cases (beach, snow, and beach again with another prompt)."""
    text = f'[suite]\nname = "{name}"\nmin_concept = 0.0\n\n[concepts.dog]\nsubject = "dog"\nreference = "refs/dog.png"\n'
    if reference_mask:
        text += 'reference_mask = "refs/dog_mask.png"\n'
    for image, prompt in (("beach", "a dog on the beach"), ("snow", "a dog in the snow"), ("beach", "a dog at sunset")):
        text += f'\n[[cases]]\nconcept = "dog"\nprompt = "{prompt}"\nimage = "out/{image}.png"\n'
        if output_masks:
            text += f'mask = "out/{image}_mask.png"\n'
    return text


@pytest.fixture
def root(pytester: pytest.Pytester) -> Path:
    write_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    return pytester.path


def run(pytester, model: Path, segmenter, *args: str, subprocess: bool = False):
    arguments = ["--masc", f"--masc-model={model}", "-p", "no:cacheprovider", "--masc-json=out.json", *args]
    if segmenter is not None:
        arguments.append(f"--masc-segmenter={segmenter}")
    if subprocess:
        return pytester.runpytest_subprocess(*arguments)
    return pytester.runpytest(*arguments)


def records(root: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in json.loads((root / "out.json").read_text())["records"]}


def segmenter_runs(root: Path) -> list[dict]:
    return [run["segmenter"] for run in json.loads((root / "out.json").read_text())["runs"] if "segmenter" in run]


# --------------------------------------------------------------------------- suites


def test_suite_without_output_masks_passes_and_records_its_masks(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}")
    result.assert_outcomes(passed=3)
    by_id = records(root)
    entry = by_id["dog-1"]["computed_masks"]
    assert [m["role"] for m in entry] == ["output"]
    assert entry[0]["image"] == "out/beach.png" and entry[0]["text"] == "dog"
    assert entry[0]["segmenter"]["kind"] == "clipseg" and entry[0]["segmenter"]["threshold"] == 0.5
    assert "revision" in entry[0]["segmenter"] and entry[0]["segmenter"]["model"] == str(clipseg_dir)
    assert 0.0 < entry[0]["foreground_fraction"] < 0.98 and entry[0]["flag"] is None
    assert entry[0]["foreground_fraction"] == by_id["dog-3"]["computed_masks"][0]["foreground_fraction"]
    (run_info,) = segmenter_runs(root)
    assert run_info["loaded"] is True and run_info["kind"] == "clipseg" and run_info["device"] == "cpu"
    result.stdout.fnmatch_lines([f"segmenter clipseg {clipseg_dir}, threshold 0.5: 2 masks computed, * s"])


def test_suite_with_no_masks_at_all_and_csv_rows_pass_with_mask_files(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=False, output_masks=False))
    (root / "cases.csv").write_text("concept,prompt,image\ndog,a dog in the city,out/city.png\n")
    (root / "masc_csv.toml").write_text(
        'cases = "cases.csv"\n[suite]\nname = "csv"\n[concepts.dog]\nsubject = "dog"\nreference = "refs/dog.png"\n'
    )
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "--masc-artifacts=artifacts")
    result.assert_outcomes(passed=4)
    by_id = records(root)
    for record in by_id.values():
        roles = {m["role"]: m for m in record["computed_masks"]}
        assert set(roles) == {"output", "reference 1"}
        for computed in roles.values():
            written = np.asarray(Image.open(computed["file"]))
            height, width = OUTPUTS.get(Path(computed["image"]).stem, (64, 96))
            assert written.shape == (height, width) and set(np.unique(written)) <= {0, 255}
            assert np.count_nonzero(written) / written.size == pytest.approx(computed["foreground_fraction"])
    assert Path(by_id["dog-1"]["computed_masks"][0]["file"]).parent == root / "artifacts"


def test_failure_panel_shows_computed_masks_and_the_report_names_them(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=False, output_masks=False).replace(
        "min_concept = 0.0", "min_concept = 0.9999"))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "--masc-artifacts=artifacts")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*output mask: computed by clipseg from 'dog', *% foreground",
        "*reference 1 mask: computed by clipseg from 'dog', *% foreground",
        "*panel: *artifacts*dog-1.png",
    ])
    record = records(root)["dog-1"]
    panel = Path(record["panel"])
    assert panel.is_file() and Image.open(panel).width > 256
    assert sorted(Path(m["file"]).name for m in record["computed_masks"]) == sorted(
        [panel.stem + ".mask-output.png", panel.stem + ".mask-reference-1.png"])


def test_masks_are_computed_once_per_image_and_text_in_a_session(pytester, root, tiny_model_dir, clipseg_dir):
    """Three cases and a Python test share out/beach.png and refs/dog.png: 3 segmentations."""
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=False, output_masks=False))
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", subject="dog", min_concept=0.0)
        def test_beach(masc):
            masc.check(image="out/beach.png", prompt="a dog on the beach at noon")
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}")
    result.assert_outcomes(passed=4)
    (run_info,) = segmenter_runs(root)
    distinct = {("refs/dog.png", "dog"), ("out/beach.png", "dog"), ("out/snow.png", "dog")}
    assert run_info["segmented"] == len(distinct) == run_info["masks"]
    assert run_info["texts_encoded"] == 1
    assert records(root)["test_beach"]["computed_masks"][0]["image"] == "out/beach.png"


def test_empty_computed_mask_fails_its_case_by_name(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "--masc-segmenter-threshold=1.0")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*segmenter 'clipseg' found no 'dog' in out/beach.png*"])
    record = records(root)["dog-1"]
    assert record["passed"] is False and "found no 'dog' in out/beach.png" in record["error"]
    assert record["computed_masks"][0]["foreground_fraction"] == 0.0
    assert "nan" not in result.stdout.str().lower()


def test_a_mask_covering_the_whole_image_is_flagged(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=False, output_masks=True))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "--masc-segmenter-threshold=0.0", "-W", "default")
    result.assert_outcomes(passed=3)
    (computed,) = records(root)["dog-1"]["computed_masks"]
    assert computed["role"] == "reference 1" and computed["foreground_fraction"] == 1.0
    assert "100.0% of refs/dog.png" in computed["flag"]
    result.stdout.fnmatch_lines(["*MaskCoverageWarning: segmenter 'clipseg' marked 100.0% of refs/dog.png as 'dog'*"])


def test_segment_prompt_and_sam3(pytester, root, tiny_model_dir, sam3_dir):
    text = suite_text(reference_mask=True, output_masks=False).replace('subject = "dog"', 'subject = "dog"\nsegment_prompt = "brown dog"')
    (root / "masc_dogs.toml").write_text(text)
    result = run(pytester, tiny_model_dir, f"sam3={sam3_dir}", "--masc-segmenter-threshold=0.0")
    outcomes = result.parseoutcomes()
    by_id = records(root)
    computed = by_id["dog-1"]["computed_masks"][0]
    assert computed["text"] == "brown dog" and computed["segmenter"]["kind"] == "sam3"
    assert "mask_threshold" in computed["segmenter"]
    if computed["foreground_fraction"] == 0.0:  # the tiny random SAM3 may find nothing
        assert "segmenter 'sam3' found no 'brown dog' in out/beach.png" in by_id["dog-1"]["error"]
    else:
        assert by_id["dog-1"]["passed"] is True
    assert sum(outcomes.values()) == 3


def test_unreadable_image_fails_only_its_case(pytester, root, tiny_model_dir, clipseg_dir):
    (root / "out/snow.png").write_bytes(b"not a png")
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}")
    result.assert_outcomes(passed=2, failed=1)
    assert "cannot read the image" in records(root)["dog-2"]["error"]


# --------------------------------------------------------------------------- loading only when needed


def test_the_segmenter_loads_only_when_a_mask_is_missing(pytester, root, tiny_model_dir, tmp_path):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=True))
    result = run(pytester, tiny_model_dir, f"clipseg={tmp_path / 'no-such-checkpoint'}")
    result.assert_outcomes(passed=3)
    assert segmenter_runs(root)[0]["loaded"] is False


def test_a_segmenter_that_cannot_load_fails_the_cases_that_need_it(pytester, root, tiny_model_dir, tmp_path):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    result = run(pytester, tiny_model_dir, f"clipseg={tmp_path / 'no-such-checkpoint'}")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*cannot load the CLIPSeg segmenter checkpoint*no-such-checkpoint*does not exist*"])


def test_a_segmenter_that_cannot_load_is_explained_once(pytester, root, tiny_model_dir, tmp_path, monkeypatch):
    """``--masc-segmenter=clipseg`` offline: the full message (with "couldn't connect ...
    cached files..", the Python call to fix it and the label "MaSC model error") repeated for
    every case. Now the first case that needs a mask says why and what to do, in pytest
    terms; the others, suite cases and Python gates alike, point at it in one line."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog", min_concept=0.0)
        @pytest.mark.parametrize("scene", ["beach", "snow"])
        def test_scene(masc, scene):
            masc.check(image=f"out/{scene}.png", prompt=f"a dog on the {scene}")
    """))
    result = run(pytester, tiny_model_dir, "clipseg")
    result.assert_outcomes(failed=5)
    reports, summary = result.stdout.str().split("short test summary info")[0].split(" MaSC summary ")
    assert reports.count("cannot load the CLIPSeg segmenter checkpoint 'CIDAS/clipseg-rd64-refined': the hub is "
                         "switched off (HF_HUB_OFFLINE=1 or local_files_only)") == 1
    # the summary lists each case that could not be scored in one line: the first error's first line, then pointers
    assert summary.count("cannot load the CLIPSeg segmenter checkpoint") == 1
    assert reports.count("`hf download CIDAS/clipseg-rd64-refined`") == 1
    assert reports.count("--masc-segmenter=clipseg=/path/to/checkpoint") == 1
    assert reports.count("segmenter clipseg (CIDAS/clipseg-rd64-refined) is not loaded: SegmenterLoadError at the "
                         "first case that needed a mask (its report above says why and what to do)") == 4
    assert reports.count("MaSC segmenter error: ") == 3  # the suite's cases; the gates show the exception
    assert "MaSC model error" not in reports and "couldn't connect" not in reports
    assert records(root)["dog-1"]["error"].startswith("cannot load the CLIPSeg segmenter checkpoint")


def test_a_segmenter_that_cannot_load_fails_only_the_cases_that_need_it(pytester, root, tiny_model_dir, tmp_path):
    """The cases of a file are scored in one batch: one case without its mask made the
    segmenter's load error every case's, those with all masks given included."""
    text = suite_text(reference_mask=True, output_masks=True)
    (root / "masc_dogs.toml").write_text(text.replace('image = "out/snow.png"\nmask = "out/snow_mask.png"\n',
                                                      'image = "out/snow.png"\n'))
    result = run(pytester, tiny_model_dir, f"clipseg={tmp_path / 'no-such-checkpoint'}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*dogs::dog-2*", "MaSC segmenter error: cannot load the CLIPSeg segmenter checkpoint*"])


def test_missing_masks_without_a_segmenter_is_a_collection_error(pytester, root, tiny_model_dir):
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=True, output_masks=False))
    result = run(pytester, tiny_model_dir, None)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*masc_dogs.toml, case 'dog-1'*has no mask*--masc-segmenter=sam3|clipseg*"])


@pytest.mark.parametrize("value, message", [
    ("sam2", "*--masc-segmenter / masc_segmenter 'sam2': unknown segmenter 'sam2'; expected sam3, clipseg, sam3=ID_OR_DIR or clipseg=ID_OR_DIR*"),
    ("clipseg=", "*--masc-segmenter 'clipseg=': give a hub id or directory after '='*"),
])
def test_unknown_segmenter_is_a_usage_error(pytester, root, tiny_model_dir, value, message):
    result = run(pytester, tiny_model_dir, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_segmenter_threshold_out_of_range_is_a_usage_error(pytester, root, tiny_model_dir):
    result = run(pytester, tiny_model_dir, "clipseg", "--masc-segmenter-threshold=1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--masc-segmenter-threshold must be in [[]0, 1], got 1.5*"])
    alone = run(pytester, tiny_model_dir, None, "--masc-segmenter-threshold=0.5")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["*--masc-segmenter-threshold needs --masc-segmenter=sam3|clipseg*"])


def test_ini_key_and_default_checkpoint(pytester, root, tiny_model_dir):
    from pytest_masc.plugin.masks import parse_segmenter_option

    assert parse_segmenter_option("sam3").model == "facebook/sam3"
    assert parse_segmenter_option(" clipseg ").model == "CIDAS/clipseg-rd64-refined"
    (root / "pytest.ini").write_text("[pytest]\nmasc_segmenter = clipseg=models/seg\n")
    (root / "models/seg").mkdir(parents=True)
    result = run(pytester, tiny_model_dir, None, "--collect-only")
    result.stdout.fnmatch_lines([f"masc: missing masks segmented with clipseg ({root / 'models/seg'})"])


# --------------------------------------------------------------------------- Python gates


def test_python_gate_with_no_mask_files(pytester, root, tiny_model_dir, clipseg_dir):
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import numpy as np
        import pytest
        from PIL import Image

        @pytest.mark.masc(reference="refs/dog.png", subject="dog", min_concept=0.0)
        def test_generated(masc, masc_segmenter):
            image = Image.open("out/city.png")
            score = masc.check(image=image, prompt="a dog in the city")
            assert np.isfinite(score.concept)
            mask = masc_segmenter(image, "dog")
            assert mask.dtype == bool and mask.shape == (48, 112)
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}")
    result.assert_outcomes(passed=1)
    computed = records(root)["test_generated"]["computed_masks"]
    assert [m["role"] for m in computed] == ["output", "reference 1"]
    assert computed[0]["image"].startswith("<PIL image RGB 112x48")


def test_an_overridden_masc_segmenter_fixture_wins(pytester, root, tiny_model_dir, tmp_path):
    pytester.makeconftest(textwrap.dedent("""
        import numpy as np
        import pytest
        from PIL import Image

        @pytest.fixture
        def masc_segmenter():
            def rectangle(image):
                width, height = Image.open(image).size
                mask = np.zeros((height, width), bool)
                mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = True
                return mask
            return rectangle
    """))
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", subject="dog", min_concept=0.0)
        def test_own(masc):
            masc.check(image="out/beach.png", prompt="a dog on the beach")
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={tmp_path / 'never-loaded'}")
    result.assert_outcomes(passed=1)
    assert records(root)["test_own"]["computed_masks"] == []
    assert segmenter_runs(root)[0]["loaded"] is False


def test_python_gate_with_masks_given_does_not_load_the_segmenter(pytester, root, tiny_model_dir, tmp_path):
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog")
        def test_given(masc):
            masc.check(image="out/beach.png", mask="out/beach_mask.png", prompt="a dog on the beach")
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={tmp_path / 'never-loaded'}")
    result.assert_outcomes(passed=1)
    assert segmenter_runs(root)[0]["loaded"] is False


def test_python_gate_empty_mask_message(pytester, root, tiny_model_dir, clipseg_dir):
    pytester.makepyfile(test_gate=textwrap.dedent("""
        import pytest

        @pytest.mark.masc(reference="refs/dog.png", reference_mask="refs/dog_mask.png", subject="dog")
        def test_empty(masc):
            masc.check(image="out/beach.png", prompt="a dog on the beach")
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "--masc-segmenter-threshold=1.0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*EmptyMaskError: segmenter 'clipseg' found no 'dog' in out/beach.png*"])


# --------------------------------------------------------------------------- xdist


def test_xdist_workers_segment_what_they_need(pytester, root, tiny_model_dir, clipseg_dir):
    pytest.importorskip("xdist")
    (root / "masc_dogs.toml").write_text(suite_text(reference_mask=False, output_masks=False))
    (root / "masc_more.toml").write_text(suite_text(reference_mask=True, output_masks=False, name="more"))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", "-n", "2", subprocess=True)
    result.assert_outcomes(passed=6)
    data = json.loads((root / "out.json").read_text())
    assert len(data["records"]) == 6 and all(r["computed_masks"] for r in data["records"])
    runs = [info for info in segmenter_runs(root) if info["loaded"]]
    assert runs and len(runs) <= 2
    # 3 distinct (image, text) pairs in the session: refs/dog.png, out/beach.png, out/snow.png with "dog";
    # each worker segments those its cases need, each once
    assert all(1 <= info["segmented"] == info["masks"] <= 3 for info in runs)
    needed = {(m["image"], m["text"]) for r in data["records"] for m in r["computed_masks"]}
    assert needed == {("refs/dog.png", "dog"), ("out/beach.png", "dog"), ("out/snow.png", "dog")}
    assert sum(info["segmented"] for info in runs) >= len(needed)


# --------------------------------------------------------------------------- protocols


def test_dreambench_masks_auto_are_segmented_once_and_cached_in_the_mirror_layout(pytester, root, tiny_model_dir, clipseg_dir):
    from pytest_masc.protocols.dreambench_masks import dreambench_mask_targets
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(root / "data")
    protocol = f"--masc-protocol=dreambench_plus={fixture.root},masks=auto"
    first = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", protocol)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*protocol dreambench_plus*", "*units, 2 methods, 2 rater groups*"])
    (table,) = json.loads((root / "out.json").read_text())["summary"]["protocols"]
    targets = dreambench_mask_targets(fixture.root)
    masks = table["computed_masks"]
    assert masks["written"] == len(targets) and masks["reused"] == 0
    assert masks["segmenter"]["kind"] == "clipseg" and masks["segmenter"]["threshold"] == 0.5
    directory = Path(masks["directory"])
    assert directory.parent == root / ".masc-masks"
    for image, _subject in targets:  # the published mirror layout: same relative path, .png
        assert (directory / image.relative_to(fixture.root)).with_suffix(".png").is_file()
    assert json.loads((directory / "segmenter.json").read_text())["kind"] == "clipseg"

    second = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}", protocol)
    second.assert_outcomes(passed=1)
    (again,) = json.loads((root / "out.json").read_text())["summary"]["protocols"]
    assert again["computed_masks"]["written"] == 0 and again["computed_masks"]["reused"] == len(targets)
    assert "segmenter" not in again["computed_masks"]  # nothing to segment: the segmenter never loaded
    assert again["table"] == table["table"]


def test_dreambench_masks_auto_default_and_explicit_threshold_share_one_cache(tmp_path, clipseg_dir):
    """The cache is keyed on the threshold used, not on how it was given: no threshold (the
    default, 0.5) and an explicit 0.5 reuse one directory; 0.4 gets its own."""
    from pytest_masc.plugin.masks import SessionSegmenter, parse_segmenter_option, protocol_masks
    from pytest_masc.protocols.spec import parse_protocol_option
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(tmp_path / "data")
    spec = parse_protocol_option(f"dreambench_plus={fixture.root},masks=auto")

    def masks_with(threshold):
        segmenter = SessionSegmenter(parse_segmenter_option(f"clipseg={clipseg_dir}"), threshold=threshold,
                                     dtype=None, device=lambda: "cpu")
        return protocol_masks(segmenter, spec, tmp_path / "cache")

    default_spec, default_work = masks_with(None)
    explicit_spec, explicit_work = masks_with(0.5)
    assert default_work["written"] > 0 and default_work["segmenter"]["threshold"] == 0.5
    assert explicit_spec.masks == default_spec.masks
    assert explicit_work["written"] == 0 and explicit_work["reused"] == default_work["written"]
    lower_spec, lower_work = masks_with(0.4)
    assert lower_spec.masks != default_spec.masks and lower_work["written"] == default_work["written"]


def test_dreambench_masks_auto_without_a_segmenter_says_what_to_pass(pytester, root, tiny_model_dir):
    from pytest_masc.testing.datasets import write_dreambench_fixture

    fixture = write_dreambench_fixture(root / "data")
    result = run(pytester, tiny_model_dir, None, f"--masc-protocol=dreambench_plus={fixture.root},masks=auto")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dreambench_plus masks=auto needs a segmenter: run with --masc-segmenter=sam3|clipseg*"])


def test_readme_python_gate_without_mask_files_runs(pytester, root, tiny_model_dir, clipseg_dir):
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL) if "--masc-segmenter" in b)
    assert "reference_mask" not in example and "mask=" not in example
    pytester.makepyfile(test_release=example)
    pytester.makeconftest(textwrap.dedent("""
        import pytest
        from PIL import Image

        @pytest.fixture
        def my_pipeline():
            return lambda prompt: Image.open("out/beach.png")
    """))
    result = run(pytester, tiny_model_dir, f"clipseg={clipseg_dir}")
    result.assert_outcomes(passed=1)
    assert [m["role"] for m in records(root)["test_dog_on_beach"]["computed_masks"]] == ["output", "reference 1"]
