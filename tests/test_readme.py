"""README tells the truth: CI runs its commands, and its Python example runs."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci_commands = [
        line for line in (ROOT / ".ci/run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "export ", "echo "))
    ]
    install, test, oldest = _blocks("bash")[:3]  # newest versions, then the oldest allowed
    assert ci_commands == [install.strip(), test.strip(), *oldest.strip().splitlines()]
    assert "-c constraints/oldest.txt" in oldest and (ROOT / "constraints/oldest.txt").is_file()


def test_python_example_runs_on_a_tiny_checkpoint(tiny_model_dir, capsys):
    example = next(block for block in _blocks("python") if "MaSC.from_pretrained" in block)
    assert '"google/siglip2-so400m-patch16-naflex"' in example
    code = example.replace('"google/siglip2-so400m-patch16-naflex"', repr(str(tiny_model_dir)))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"CP -?\d\.\d{3}  PF -?\d\.\d{3}", printed)
    assert "a photo of on the beach" in printed


def test_option_values_are_written_with_equals():
    """``--masc-model DIR`` makes pytest take DIR for a test path; README teaches ``=``."""
    from pytest_masc.plugin.options import OPTIONS

    names = "|".join(sorted((name.replace("_", "-") for name in OPTIONS), key=len, reverse=True))
    spaced = re.findall(rf"--masc-(?:{names}) [A-Za-z0-9/.~$]\S*", README)
    assert not spaced, f"README writes option values after a space: {spaced}"
    assert "--masc-model=/tmp/tiny-siglip2-naflex" in README


def test_stated_bfloat16_drift_bound_holds_on_the_tiny_checkpoint(tiny_model_dir):
    import numpy as np

    from pytest_masc import MaSC, Sample

    bound = float(re.search(r"checks that this drift stays below (\S+?)\.\s", README).group(1))
    rng = np.random.default_rng(1)
    samples = []
    for prompt in ["a dog on the beach", "a dog in the snow", "the dog on a sofa", "a dog in a kitchen"]:
        images = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(48, 128, (2, 2))]
        masks = [np.zeros(image.shape[:2], bool) for image in images]
        for mask in masks:
            mask[mask.shape[0] // 4: 3 * mask.shape[0] // 4, mask.shape[1] // 4: 3 * mask.shape[1] // 4] = True
        samples.append(Sample(images[0], masks[0], images[1], masks[1], prompt, subject="dog"))
    scores = {
        dtype: MaSC.from_pretrained(tiny_model_dir, device="cpu", dtype=dtype, local_files_only=True).score_many(samples)
        for dtype in ("float32", "bfloat16")
    }
    for attribute in ("concept", "prompt"):
        drift = max(abs(getattr(a, attribute) - getattr(b, attribute)) for a, b in zip(scores["float32"], scores["bfloat16"]))
        assert 0 < drift < bound, (attribute, drift)


def test_suite_path_rule_reads_as_the_error_says(tmp_path):
    from pytest_masc.errors import SuiteError
    from pytest_masc.suite import load_suite

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "masc_dogs.toml").write_text(
        '[concepts.dog]\nreference = "../refs/dog.png"\nreference_mask = "refs/dog_mask.png"\n'
    )
    assert "`../refs/dog.png` is refused" in README
    quoted = re.search(r'\("(escapes the suite\'s\s+directory) \.\.\. (copy or move the file under) \.\.\."\)', README)
    try:
        load_suite(tmp_path / "suite" / "masc_dogs.toml")
    except SuiteError as error:
        message = str(error)
    else:
        raise AssertionError("a path out of the suite's directory was accepted")
    assert " ".join(quoted.group(1).split()) in message and quoted.group(2) in message


def test_protocol_table_example_states_the_normalisation_the_code_prints():
    from pytest_masc.protocols.tables import NORMALISATION_NOTE

    table = next(block for block in _blocks("text") if "Krippendorff's alpha vs. human ratings" in block)
    assert NORMALISATION_NOTE in table.splitlines()
    assert "normalises each metric over all samples" in README and "**pooled** column" in README
