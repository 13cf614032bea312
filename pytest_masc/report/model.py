"""The report of one run (:class:`Report`) and what every report module shares: its error, the options of the tool in use, exit names and case keys."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..gates import Record

FORMAT = 2
EXIT_NAMES = {1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
#: ``min_alpha_*`` suite gate -> the score (and rating) it gates
ALPHA_GATES = {"min_alpha_concept": "concept", "min_alpha_prompt": "prompt"}

PathLike = Union[str, "os.PathLike[str]"]


class ReportError(ValueError):
    """A report or baseline file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Flags:
    """The options of the tool the user is in, as its messages name them."""

    allow_mismatch: str
    write_baseline: str
    baseline_skip: str
    rerun: str  # how to run again without the failing cases
    require_noninferior: str = "--masc-require-noninferior"  # inconclusive comparisons fail too


#: ``pytest --masc`` (the plugin)
PYTEST_FLAGS = Flags(
    allow_mismatch="--masc-allow-baseline-mismatch", write_baseline="--masc-update-baseline",
    baseline_skip="--masc-baseline-skip", rerun="fix or deselect (-k) the failing cases and run again",
)
#: ``python -m pytest_masc.report merge``
MERGE_FLAGS = Flags(
    allow_mismatch="--allow-baseline-mismatch", write_baseline="--write-baseline=FILE",
    baseline_skip="--baseline-skip", rerun="merge the shards of a passing run",
    require_noninferior="--require-noninferior",
)


@dataclass
class Report:
    """The records of one run (a ``--masc-json`` file, a live session, or merged shards).

    ``settings``: model, revision, dtype, max_num_patches, checkpoint (``None`` where unknown).
    ``collected``: each suite file as collected (file, cases per concept, rated cases), or
    ``{}`` where unknown. ``environment`` and ``canary``: see :mod:`pytest_masc.report.release`. ``shards``: one ``{"source", "exitstatus", "cases"}`` per file read.
    """

    records: list[Record]
    runs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    suite_gates: Optional[dict[str, dict[str, float]]] = field(default_factory=dict)  # None: unknown (format 1)
    protocols: list[dict[str, Any]] = field(default_factory=list)
    protocol_findings: list[str] = field(default_factory=list)
    exitstatus: Optional[int] = None
    shards: list[dict[str, Any]] = field(default_factory=list)
    shard_findings: list[str] = field(default_factory=list)  # shards whose pytest run failed outside MaSC
    format: int = FORMAT
    collected: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what the metric ran on (report.release.ENVIRONMENT keys); {} where unknown
    environment: dict[str, Any] = field(default_factory=dict)
    #: the metric-drift canary's scores in that environment, ``{"items", "scores": {"CP": [...], "PF": [...]}}``
    canary: Optional[dict[str, Any]] = None


def suite_collected(file: str, concepts: dict[str, int], rated: dict[str, int]) -> dict[str, Any]:
    """A ``collected`` entry: the suite's file (its node id), cases per declared concept (0 for
    a concept without cases), and cases with human ratings per rating (``concept``, ``prompt``)."""
    return {"file": str(file), "concepts": dict(concepts), "rated": {key: int(rated.get(key, 0)) for key in ALPHA_GATES.values()}}


def node_file(nodeid: str) -> str:
    """The file part of a node id: ``suites/masc_a.toml::case`` -> ``suites/masc_a.toml``."""
    return nodeid.split("::", 1)[0]


def record_order(record: Record) -> tuple[str, int]:
    """The order of records in a report: by node id, then check index."""
    return record.nodeid, record.check_index


def check_key(nodeid: str, check_index: int) -> str:
    """One check's key in a run, a baseline and an artifact name: the node id, then
    ``#check_index`` for a test's second and later ``masc.check()`` (index 0 adds nothing)."""
    return f"{nodeid}#{check_index}" if check_index else nodeid


def case_key(record: Record) -> str:
    """A record's :func:`check_key`."""
    return check_key(record.nodeid, record.check_index)


def shard_sources(report: Report) -> str:
    """The files a report was read from, for messages (``<session>`` for a live session)."""
    return ", ".join(str(s.get("source")) for s in report.shards) or "<session>"


def number_text(value: float) -> str:
    """A threshold as the user wrote it: ``0.2``, ``-1``."""
    text = f"{value:g}"
    return text if float(text) == float(value) else repr(float(value))
