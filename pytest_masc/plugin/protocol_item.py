"""Benchmark protocols as test items: DreamBench++ human alignment and ORIDa identity AUC.

A suite file with a ``[protocol]`` table, or ``--masc-protocol KIND=ROOT[,masks=DIR][,split=S]``,
becomes one item that loads the dataset, scores every pair in one batch, prints the
paper-style table in the terminal summary and checks the suite-level gates
(``min_alpha_concept``, ``min_alpha_prompt``, ``min_auc``).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

import pytest

from pathlib import Path

from ..errors import InputError, MaSCError
from ..gates import nan_to_none

if TYPE_CHECKING:
    from .session import MascSession

PROTOCOL_KEYS = ("masks", "split", "n_subjects", "min_backgrounds")


def parse_protocol_option(value: str) -> dict[str, str]:
    """``dreambench_plus=/data/dbpp,masks=/data/masks`` -> ``{"kind", "root", "masks"}``."""
    from ..suite.toml import PROTOCOL_KINDS

    parts = [part.strip() for part in value.split(",") if part.strip()]
    head, rest = (parts[0], parts[1:]) if parts else ("", [])
    kind, _, root = head.partition("=")
    if kind not in PROTOCOL_KINDS or not root:
        raise pytest.UsageError(
            f"--masc-protocol {value!r}: expected KIND=DATA_ROOT[,masks=DIR][,split=NAME] with KIND one of {', '.join(PROTOCOL_KINDS)}"
        )
    protocol = {"kind": kind, "root": root}
    for part in rest:
        key, _, path = part.partition("=")
        if key not in PROTOCOL_KEYS or not path:
            raise pytest.UsageError(f"--masc-protocol: unknown or empty part {part!r} (allowed: {', '.join(PROTOCOL_KEYS)})")
        if key in ("n_subjects", "min_backgrounds") and not (path.isdigit() and int(path) > 0):
            raise pytest.UsageError(f"--masc-protocol: {key} must be a positive integer, got {path!r}")
        protocol[key] = path
    if kind == "dreambench_plus" and "masks" not in protocol:
        raise pytest.UsageError("--masc-protocol dreambench_plus=ROOT needs ,masks=DIR (masks mirroring the image paths)")
    return protocol


def _baseline_scorers(session: "MascSession") -> dict[str, Any]:
    from ..metric.baselines import CLIP_MODEL, DINO_MODEL, CLIPScorer, DINOScorer

    scorers = {}
    device = str(session.model().device)
    for name, model_id in session.settings.baselines.items():
        if name == "clip":
            scorers["clip"] = CLIPScorer.from_pretrained(model_id or CLIP_MODEL, device=device)
        elif name == "dino":
            scorers["dino"] = DINOScorer.from_pretrained(model_id or DINO_MODEL, device=device)
    return scorers


class MascProtocolItem(pytest.Item):
    """Scores a whole benchmark dataset and gates the suite on its agreement statistics."""

    def __init__(self, *, protocol: dict[str, str], suite_name: str, suite_gates: dict[str, float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.protocol = protocol
        self.suite_name = suite_name
        self.suite_gates = dict(suite_gates)

    def runtest(self) -> None:
        from .session import SESSION_KEY, ProgressLine

        session = self.config.stash[SESSION_KEY]
        kind = self.protocol["kind"]
        for key in ("root", "masks"):  # before the model loads: a typo should not cost a load
            if key in self.protocol and not Path(self.protocol[key]).is_dir():
                raise InputError(f"{kind} {key} directory {self.protocol[key]} not found")
        masc = session.model()
        started = time.perf_counter()
        progress = ProgressLine(self.config, f"MaSC {kind}")
        if kind == "dreambench_plus":
            table, values = self._dreambench(session, masc, progress)
        else:
            table, values = self._orida(session, masc, progress)
        progress.close()
        session.score_seconds += time.perf_counter() - started
        session.protocol_tables.append({"suite": self.suite_name, "kind": kind, "table": table, "values": values})
        failures = []
        for gate, minimum in sorted(self.suite_gates.items()):
            value = values.get(gate)
            if value is None:
                failures.append(f"{gate} = {minimum:g}: the protocol gives no value for it")
            elif value < minimum:
                failures.append(f"{gate}: {value:.3f} < {minimum:g}")
        if failures:
            session.suite_findings.extend(f"{self.suite_name}: {f}" for f in failures)
            raise MascProtocolFailure(self.suite_name, failures, table)

    def _dreambench(self, session, masc, progress) -> tuple[str, dict[str, Optional[float]]]:
        from ..protocols import POOLED, evaluate_dreambench, format_table, load_dreambench_plus
        from ..metric.baselines import baseline_metrics

        data = load_dreambench_plus(self.protocol["root"], self.protocol["masks"])
        scores = masc.score_many(data.samples, progress=progress.update, errors="return")
        extra = baseline_metrics(data.samples, **_baseline_scorers(session)) if session.settings.baselines else None
        rows = evaluate_dreambench(data, scores, extra)
        pooled = {(r.dimension, r.metric): r.estimate.value for r in rows if r.column == POOLED}
        values = {
            "min_alpha_concept": pooled.get(("concept", "MaSC CP")),
            "min_alpha_prompt": pooled.get(("prompt", "MaSC PF")),
        }
        return format_table(rows) + "\n\n" + data.summary(), {k: nan_to_none(v) for k, v in values.items()}

    def _orida(self, session, masc, progress) -> tuple[str, dict[str, Optional[float]]]:
        from ..protocols import evaluate_identity, format_identity, load_orida

        data = load_orida(
            self.protocol["root"], self.protocol.get("split", "test"),
            n_subjects=int(self.protocol.get("n_subjects", 50)),
            min_backgrounds=int(self.protocol.get("min_backgrounds", 10)),
        )
        scores = masc.score_many(data.samples, progress=progress.update, errors="return")
        result = evaluate_identity(data, scores)
        return format_identity(result), {"min_auc": nan_to_none(result["metrics"]["MaSC CP"].value)}

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (MascProtocolFailure, MaSCError)):
            return f"MaSC protocol {self.protocol['kind']} ({self.suite_name}): {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.suite_name}::{self.protocol['kind']}"


class MascProtocolFailure(AssertionError):
    """A suite-level protocol gate failed."""

    def __init__(self, suite: str, failures: list[str], table: str) -> None:
        super().__init__("suite gate failed: " + "; ".join(failures) + "\n" + table)
