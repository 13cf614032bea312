"""Suites as Ray samples tables, and a scored table back to one row per case.

``python -m pytest_masc.ray export suites/ --out samples.parquet`` (see :mod:`.cli`) writes
what :func:`suite_samples` returns; scoring that table with :func:`pytest_masc.ray.score_table`
and folding it with :func:`case_scores` gives the scores ``pytest --masc`` gives the suites.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

from ..errors import SuiteError
from ..suite import Suite, is_suite_file, load_suite
from .schema import SCORE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

PathLike = Union[str, os.PathLike]

#: Columns that say where a row comes from; then the samples columns of :func:`score_table`.
CASE_COLUMNS = ("suite", "suite_file", "case_id", "concept_name", "reference_index")
EXPORT_COLUMNS = (*CASE_COLUMNS, "ref_image", "ref_mask", "out_image", "out_mask", "prompt", "subject", "distractors")


def suite_files(paths: Union[PathLike, Iterable[PathLike]]) -> list[Path]:
    """The suite files named by ``paths``: files as they are, directories searched for
    ``masc_*.toml`` (sorted; hidden directories skipped). A ``SuiteError`` names a path that
    is neither, or a directory without suites."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(
                file for file in path.rglob("masc_*.toml")
                if is_suite_file(file) and not any(part.startswith(".") for part in file.relative_to(path).parts[:-1])
            )
            if not inside:
                raise SuiteError(f"{path}: no suite file (masc_*.toml) in this directory")
            found += inside
        elif path.is_file() or not path.exists():
            found.append(path)  # load_suite says "suite file not found"
        else:
            raise SuiteError(f"{path}: not a suite file or a directory")
    return list(dict.fromkeys(found))


def suite_samples(
    paths: Union[PathLike, Iterable[PathLike]], *, base_dir: Optional[PathLike] = None,
) -> "pd.DataFrame":
    """The cases of suite files as a samples table for :func:`pytest_masc.ray.score_table`:
    one row per case and reference of its concept, with the suite's defaults resolved
    (distractors: the concept's other prompts unless the case gives its own; subjects; masks).

    Columns: :data:`EXPORT_COLUMNS`: ``suite`` (its name), ``suite_file``, ``case_id``,
    ``concept_name``, ``reference_index`` (0-based, as ``concept_per_reference`` in
    ``--masc-json``), then ``ref_image``, ``ref_mask``, ``out_image``, ``out_mask``,
    ``prompt``, ``subject`` (``None``: nothing stripped) and ``distractors`` (a list).

    Args:
        paths: suite files (``masc_*.toml``) and directories to search for them.
        base_dir: write paths relative to this directory (score with the same ``base_dir``,
            or put the table there: scoring reads relative paths against the table's
            directory); ``None``: absolute paths.

    Raises:
        SuiteError: a malformed suite, a missing file, or a case whose mask the pytest
        plugin would segment (a samples table needs mask files). A ``[protocol]`` table's
        samples are not exported (a ``UserWarning`` says so).
    """
    import pandas as pd

    rows = []
    for path in suite_files(paths):
        suite = load_suite(path)
        if suite.protocol is not None:
            warnings.warn(f"{path}: the samples of its [protocol] table are not exported (score them with "
                          "pytest --masc --masc-ray=ADDRESS)", UserWarning, stacklevel=2)
        rows += _rows(suite, base_dir)
    table = pd.DataFrame(rows, columns=list(EXPORT_COLUMNS))
    table["subject"] = pd.Series([row["subject"] for row in rows], dtype=object)  # None stays None, not NaN
    return table


def _rows(suite: Suite, base_dir: Optional[PathLike]) -> list[dict]:
    def shown(path: Path) -> str:
        return os.path.relpath(path, base_dir) if base_dir is not None else str(path)

    rows = []
    for case in suite.cases:
        concept = suite.concepts[case.concept]
        if case.seeded:
            raise SuiteError(f"{case.location}: {len(case.images)} images (seeds); a samples table holds one image "
                             "per case: score seeded cases with pytest --masc")
        (image,) = case.images
        if image.mask is None:
            raise SuiteError(f"{case.location}: no mask (pytest segments it with --masc-segmenter); a samples "
                             "table needs mask files: give mask = ...")
        if None in concept.reference_masks:
            raise SuiteError(f"{suite.path}, concept {concept.name!r}: no reference_mask (pytest segments the "
                             "references with --masc-segmenter); a samples table needs mask files")
        for index, (reference, reference_mask) in enumerate(zip(concept.references, concept.reference_masks)):
            rows.append({
                "suite": suite.name, "suite_file": shown(suite.path), "case_id": case.id,
                "concept_name": concept.name, "reference_index": index,
                "ref_image": shown(reference), "ref_mask": shown(reference_mask),
                "out_image": shown(image.path), "out_mask": shown(image.mask),
                "prompt": case.prompt, "subject": concept.subject, "distractors": list(case.distractors),
            })
    return rows


def case_scores(scored: "pd.DataFrame") -> "pd.DataFrame":
    """A scored export (:func:`suite_samples` through ``score_table``) folded to one row per
    case, as ``pytest --masc`` scores it: ``concept`` and ``global_concept`` are means over the
    case's references (``concept`` NaN when one is), ``prompt``, ``global_prompt`` and
    ``prompt_margin`` depend on the output alone; ``error``: the first row's error, if any.
    Columns: ``suite``, ``suite_file``, ``case_id``, ``concept_name``, ``references``, the
    scores and ``error``, in the table's case order."""
    import pandas as pd

    missing = [name for name in (*CASE_COLUMNS, *SCORE_COLUMNS, "error") if name not in scored.columns]
    if missing:
        raise ValueError(f"not a scored export: missing column(s) {', '.join(missing)} (export with "
                         "suite_samples, then score with score_table)")
    groups = scored.groupby(["suite_file", "case_id"], sort=False)
    folded = groups.agg(
        suite=("suite", "first"), concept_name=("concept_name", "first"), references=("reference_index", "size"),
        concept=("concept", lambda values: values.mean(skipna=False)),
        prompt=("prompt", "first"), global_concept=("global_concept", lambda values: values.mean(skipna=False)),
        global_prompt=("global_prompt", "first"), prompt_margin=("prompt_margin", "first"),
    ).reset_index()
    errors = [next((e for e in values if isinstance(e, str)), None) for _, values in groups["error"]]
    folded["error"] = pd.Series(errors, dtype=object)  # None, not NaN, for scored cases
    return folded[["suite", "suite_file", "case_id", "concept_name", "references", *SCORE_COLUMNS, "error"]]


__all__ = ["CASE_COLUMNS", "EXPORT_COLUMNS", "case_scores", "suite_files", "suite_samples"]
