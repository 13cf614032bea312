"""README tells the truth: CI runs its commands, and its Python example runs."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_ray import require_ray

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
    assert re.search(r"^'on the beach' \d+ \d+$", printed, re.MULTILINE), printed  # the subject stripped cleanly


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


# --------------------------------------------------------------------------- Ray and HTML examples

REAL_MODEL = "google/siglip2-so400m-patch16-naflex"


def _commands(needle: str) -> list[str]:
    """The command lines of the one bash block (indented in a list item or not) holding ``needle``."""
    blocks = re.findall(r"^[ ]*```bash\n(.*?)^[ ]*```", README, flags=re.DOTALL | re.MULTILINE)
    (block,) = [b for b in blocks if needle in b]
    return [line.strip() for line in block.splitlines() if line.strip()]


def _run_cli(line: str, cwd: Path, model: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """A README command line, run in ``cwd``: ``python`` is this interpreter, the hub model is
    the tiny checkpoint; nothing else changes."""
    words = shlex.split(line.replace(f"--model={REAL_MODEL}", f"--model={model}"))
    assert words[0] == "python"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **env_vars)
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, *words[1:]], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "suites" / "demo", tmp_path / "suites" / "demo")
    return tmp_path


def test_ray_table_columns_are_the_ones_the_scorer_reads():
    from pytest_masc.ray import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    table = README[README.index("- *Ray*"):README.index("**pandas.**")]
    first_cells = re.findall(r"^\s*\| (`.*?`) \|", table, flags=re.MULTILINE)
    documented = [name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)]
    assert documented == [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]


def ray_cluster_running() -> bool:
    """Whether a Ray cluster's GCS server runs on this machine (read from /proc: Ray itself is
    not imported into the pytest process, tests/conftest.py)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"gcs_server" in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def test_ray_export_and_scoring_examples_run_as_written(demo_copy, tiny_model_dir):
    require_ray()
    export, score = _commands("pytest_masc.ray export")
    assert f"--model={REAL_MODEL}" in score
    exported = _run_cli(export, demo_copy, tiny_model_dir)
    assert exported.returncode == 0, exported.stderr
    scored = _run_cli(score, demo_copy, tiny_model_dir)
    assert scored.returncode == 0, scored.stderr
    assert "scored 18 of 18 rows" in scored.stderr

    from pytest_masc.ray import read_table
    from pytest_masc.ray.export import case_scores

    cases = case_scores(read_table(demo_copy / "scores.parquet"))
    assert len(cases) == 12 and cases["error"].isna().all()
    assert cases[["concept", "prompt", "prompt_margin"]].notna().all().all()  # every demo case has distractors


def test_ray_cluster_example_without_a_cluster_fails_fast_in_one_line(demo_copy, tiny_model_dir):
    """README's --address=auto line on a machine with no Ray cluster: one line, exit 2."""
    require_ray()
    if ray_cluster_running():
        pytest.skip("another Ray runs on this machine: --address=auto would connect to it")
    export, _ = _commands("pytest_masc.ray export")
    (cluster,) = _commands("--address=auto")
    assert _run_cli(export, demo_copy, tiny_model_dir).returncode == 0
    started = time.monotonic()
    done = _run_cli(cluster, demo_copy, tiny_model_dir, RAY_TMPDIR=str(demo_copy / "ray"))
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: no Ray cluster found for --address=auto")
    assert "`ray start --head`" in done.stderr and "--address=local" in done.stderr
    assert not (demo_copy / "scores.parquet").exists()
    assert not list((demo_copy / "ray").glob("session_*"))  # no local Ray was started instead


def test_html_example_runs_as_written_and_scores_only_the_suites(pytester, tiny_model_dir):
    """From a repository root with a tests/ folder, README's command gates the suites alone."""
    from oracle import require_oracle

    require_oracle("pytest_html", 'pip install -e ".[test]"', "pytest-html")
    shutil.copytree(ROOT / "suites" / "demo", pytester.path / "suites" / "demo")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_app.py").write_text("def test_app():\n    raise AssertionError('collected')\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (line,) = _commands("--html=report.html")
    words = shlex.split(line)
    assert words[:2] == ["pytest", "--masc"]
    result = pytester.runpytest(*words[1:], f"--masc-model={tiny_model_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    assert "MaSC summary" in (pytester.path / "report.html").read_text(encoding="utf-8")
