"""Paths of a suite file: :class:`SuiteFile` resolves and confines them while loading, and
:func:`missing_files` says which of a case's files are missing when it runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checks import display, fail, text
from .model import Case, Suite

__all__ = ["SuiteFile", "missing_files"]


class SuiteFile:
    """One suite file being loaded: its names for messages and its path rules."""

    def __init__(self, path: Path, check_files: bool) -> None:
        self.path = Path(os.path.abspath(path))
        self.directory = self.path.parent
        self.root = self.directory.resolve()
        self.check_files = check_files
        self.name = display(self.path)

    def default_suite_name(self) -> str:
        stem = self.path.stem
        return stem[len("masc_"):] if stem.startswith("masc_") and len(stem) > len("masc_") else stem

    def resolve(self, where: str, name: str, value: Any, *, confined: bool = True) -> Path:
        """``value`` relative to the suite's directory, resolved; ``confined``: it must stay inside."""
        given = text(where, name, value)
        candidate = Path(given)
        if not candidate.is_absolute():
            candidate = self.directory / candidate
        resolved = candidate.resolve()
        if confined and not resolved.is_relative_to(self.root):
            fail(where, f"{name} {given!r} escapes the suite's directory {self.root} (resolves to {resolved}); "
                        "suite paths must stay inside the suite file's directory: copy or move the file under "
                        f"{self.root}, or move the suite file up to a directory that contains both")
        return resolved

    def file(self, where: str, name: str, value: Any) -> Path:
        """:meth:`resolve`, and with ``check_files`` an existing file."""
        path = self.resolve(where, name, value)
        if self.check_files and not path.is_file():
            problem = "is a directory, not a file" if path.is_dir() else "not found"
            fail(where, f"{name} file {value.strip()!r} {problem} (looked for {path})")
        return path


def missing_files(suite: Suite, case: Case) -> list[str]:
    """Why a case of a suite loaded with ``check_files=False`` cannot be scored: one message
    per reference, reference mask, image or mask that is not an existing file (empty: none).
    A mask left out (``None``: the segmenter computes it) is not a file to look for."""
    root = suite.path.parent.resolve()
    concept = suite.concepts[case.concept]
    named = [(f"concept {concept.name!r} reference", path) for path in concept.references]
    named += [(f"concept {concept.name!r} reference_mask", path) for path in concept.reference_masks]
    for image in case.images:
        seed = "" if image.seed is None else f" (seed {image.seed})"
        named += [(f"image{seed}", image.path), (f"mask{seed}", image.mask)]
    problems = []
    for name, path in named:
        if path is not None and not path.is_file():
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            problem = "is a directory, not a file" if path.is_dir() else "not found"
            problems.append(f"{name} file '{shown}' {problem} (looked for {path})")
    return problems
