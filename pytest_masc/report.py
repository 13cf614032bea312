"""Reporting: the terminal summary, the ``--masc-json`` file and baselines (write, compare).

Pure Python over :class:`~pytest_masc.gates.Record` lists; no torch.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .gates import Record, nan_to_none

BASELINE_VERSION = 1


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def _min(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return min(finite) if finite else None


def concept_table(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (suite, concept): cases, passed, mean/min CP, mean PF, min margin."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.suite, record.concept)].append(record)
    rows = []
    for (suite, concept), members in sorted(groups.items()):
        rows.append({
            "suite": suite,
            "concept": concept,
            "cases": len(members),
            "passed": sum(1 for r in members if r.passed),
            "mean_concept": _mean(r.scores.get("concept") for r in members),
            "min_concept": _min(r.scores.get("concept") for r in members),
            "mean_prompt": _mean(r.scores.get("prompt") for r in members),
            "min_margin": _min(r.scores.get("prompt_margin") for r in members),
        })
    return rows


def human_agreement(records: Sequence[Record], n_resamples: int = 1000) -> dict[str, dict[str, Any]]:
    """Krippendorff's alpha (interval, the paper's protocol) of each score against human ratings.

    Uses the records that carry ``human`` ratings; CP and global_concept against the concept
    ratings, PF and global_prompt against the prompt ratings. Each entry: alpha, CI, units.
    """
    import numpy as np

    from .stats.agreement import human_alpha, human_alpha_ci

    pairs = {"concept": "concept", "global_concept": "concept", "prompt": "prompt", "global_prompt": "prompt"}
    results: dict[str, dict[str, Any]] = {}
    for score_key, rating_key in pairs.items():
        rated = [r for r in records if r.human.get(rating_key) and r.scores.get(score_key) is not None]
        if len(rated) < 3:
            continue
        groups = max(len(r.human[rating_key]) for r in rated)
        ratings = np.full((groups, len(rated)), np.nan)
        for unit, record in enumerate(rated):
            values = record.human[rating_key]
            ratings[: len(values), unit] = values
        metric = np.array([r.scores[score_key] for r in rated], dtype=float)
        alpha = human_alpha(metric, ratings)
        low, high = human_alpha_ci(metric, ratings, n_resamples=n_resamples, seed=0)
        results[score_key] = {"alpha": nan_to_none(alpha), "ci": [nan_to_none(low), nan_to_none(high)], "units": len(rated)}
    return results


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_summary(
    records: Sequence[Record],
    runs: Sequence[dict[str, Any]],
    agreement: dict[str, dict[str, Any]],
) -> list[str]:
    """The lines of the terminal summary."""
    lines = []
    if runs:
        first = runs[0]
        encoded = sum(int(r.get("images_encoded", 0)) for r in runs)
        cached = sum(int(r.get("images_cached", 0)) for r in runs)
        seconds = sum(float(r.get("encode_seconds", 0.0)) for r in runs)
        devices = sorted({str(r.get("device")) for r in runs if r.get("device")})
        lines.append(
            f"model {first.get('model')} (revision {first.get('revision') or 'default'}), "
            f"device {', '.join(devices) or 'not loaded'}, dtype {first.get('dtype', '-')}, "
            f"{first.get('max_num_patches', '-')} patches"
        )
        lines.append(
            f"images encoded {encoded}, served from cache {cached}, encode time {seconds:.1f} s"
            + (f" over {len(runs)} processes" if len(runs) > 1 else "")
        )
    rows = concept_table(records)
    if rows:
        header = ("suite", "concept", "cases", "pass", "mean CP", "min CP", "mean PF", "min margin")
        table = [header] + [
            (row["suite"], row["concept"], str(row["cases"]), str(row["passed"]),
             _fmt(row["mean_concept"]), _fmt(row["min_concept"]), _fmt(row["mean_prompt"]), _fmt(row["min_margin"]))
            for row in rows
        ]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for index, row in enumerate(table):
            cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
    if agreement:
        lines.append("agreement with human ratings (Krippendorff's alpha, interval; 95% bootstrap CI):")
        for key, entry in agreement.items():
            ci = entry["ci"]
            lines.append(
                f"  {key:<15} {_fmt(entry['alpha'], 2)} [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]  ({entry['units']} cases)"
            )
    return lines


def _atomic_write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=2, sort_keys=False, allow_nan=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, records: Sequence[Record], runs: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``--masc-json``: every record, the run metadata and the summary statistics."""
    from . import __version__

    _atomic_write_json(path, {
        "pytest_masc": __version__,
        "runs": list(runs),
        "records": [r.as_dict() for r in records],
        "summary": summary,
    })


def baseline_payload(records: Sequence[Record], runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-case and per-concept scores to compare later runs against."""
    return {
        "version": BASELINE_VERSION,
        "model": runs[0].get("model") if runs else None,
        "revision": runs[0].get("revision") if runs else None,
        "cases": {
            f"{r.nodeid}#{r.check_index}" if r.check_index else r.nodeid: {
                "concept": r.scores.get("concept"), "prompt": r.scores.get("prompt"),
            }
            for r in records if r.error is None
        },
        "concepts": {
            f"{row['suite']}::{row['concept']}": {
                "concept": row["mean_concept"], "prompt": row["mean_prompt"], "cases": row["cases"],
            }
            for row in concept_table([r for r in records if r.error is None])
        },
    }


def write_baseline(path: Path, records: Sequence[Record], runs: Sequence[dict[str, Any]]) -> None:
    _atomic_write_json(path, baseline_payload(records, runs))


def read_baseline(path: Path) -> dict[str, Any]:
    """Load a baseline file; a clear ``ValueError`` naming it when it is missing or malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: baseline file not found (write one with --masc-update-baseline)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: baseline file is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION or not isinstance(data.get("concepts"), dict):
        raise ValueError(f"{path}: not a pytest-masc baseline (version {BASELINE_VERSION} with a 'concepts' table)")
    return data


def compare_baseline(baseline: dict[str, Any], records: Sequence[Record], max_drop: float) -> list[str]:
    """Regressions: concepts whose mean CP or PF dropped more than ``max_drop`` below the baseline."""
    current = baseline_payload(records, [])["concepts"]
    regressions = []
    for key, before in sorted(baseline["concepts"].items()):
        now = current.get(key)
        if now is None:
            continue
        for score, label in (("concept", "CP"), ("prompt", "PF")):
            old, new = before.get(score), now.get(score)
            if old is None:
                continue
            if new is None:
                regressions.append(f"{key}: mean {label} is now NaN (baseline {old:.4f})")
            elif old - new > max_drop:
                regressions.append(
                    f"{key}: mean {label} {new:.4f} dropped {old - new:.4f} below the baseline {old:.4f} (allowed {max_drop:g})"
                )
    return regressions
