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
        if line and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    install, test = _blocks("bash")[:2]
    assert ci_commands == [install.strip(), test.strip()]


def test_python_example_runs_on_a_tiny_checkpoint(tiny_model_dir, capsys):
    example = next(block for block in _blocks("python") if "MaSC.from_pretrained" in block)
    assert '"google/siglip2-so400m-patch16-naflex"' in example
    code = example.replace('"google/siglip2-so400m-patch16-naflex"', repr(str(tiny_model_dir)))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"CP -?\d\.\d{3}  PF -?\d\.\d{3}", printed)
    assert "a photo of on the beach" in printed
