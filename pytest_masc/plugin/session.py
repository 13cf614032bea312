"""The plugin's state for one pytest process: :class:`MascSession`, the one object in
``config.stash[SESSION_KEY]``. It holds the settings, the lazily loaded model, the case
records and the session-level findings, merges what xdist workers send, and finishes the
session (baseline, suite-level gates, JSON). Torch and transformers load only when a gate
first needs the model.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from ..errors import MaSCError, ModelLoadError
from ..gates import Record
from ..report import compare_baseline, concept_table, human_agreement, read_baseline, write_baseline, write_json
from .options import Settings

if TYPE_CHECKING:
    from ..metric.scorer import MaSC

SESSION_KEY: "pytest.StashKey[MascSession]" = pytest.StashKey()

#: suite-level alpha gate -> the score kind whose agreement it reads
ALPHA_GATES = {"min_alpha_concept": "concept", "min_alpha_prompt": "prompt"}


def worker_index(config: Any) -> Optional[int]:
    """This process's pytest-xdist worker number (``gw3`` -> 3), or None outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput:
        return None
    worker_id = str(workerinput.get("workerid", "gw0"))
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return int(digits) if digits else 0


class ModelNotLoaded(ModelLoadError):
    """The model failed to load earlier in this session; the first failure holds the reason."""

    def __init__(self, model: str, first: BaseException) -> None:
        super().__init__(
            f"MaSC model {model!r} is not loaded: {type(first).__name__} at the first MaSC test that needed it "
            "(its report above says why and what to do)"
        )


@dataclass
class MascSession:
    """Everything the plugin keeps for one pytest process."""

    config: Any  # the pytest.Config
    settings: Settings
    records: list[Record] = field(default_factory=list)
    worker_runs: list[dict[str, Any]] = field(default_factory=list)  # metadata sent by xdist workers
    suite_findings: list[str] = field(default_factory=list)  # suite-level gate failures
    baseline_findings: list[str] = field(default_factory=list)
    baseline_written: Optional[Path] = None
    suite_gates: dict[str, dict[str, float]] = field(default_factory=dict)  # suite name -> suite-level gates
    protocol_tables: list[dict[str, Any]] = field(default_factory=list)  # printed in the summary
    summary: Optional[dict[str, Any]] = None  # statistics of the finished session, computed once
    load_seconds: float = 0.0
    score_seconds: float = 0.0
    _model: Any = None
    _model_error: Optional[BaseException] = None

    # -- model

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def device(self) -> Optional[str]:
        """The device to load on: under xdist with CUDA, worker ``i`` takes GPU ``i % count``."""
        requested = self.settings.device
        index = worker_index(self.config)
        if index is None or requested not in (None, "cuda"):
            return requested
        import torch

        if not torch.cuda.is_available():
            return requested
        return f"cuda:{index % torch.cuda.device_count()}"

    def model(self) -> "MaSC":
        """The session's one ``MaSC``, loaded on first use. A load failure is explained once: the
        first caller gets the full error, later callers a one-line :class:`ModelNotLoaded`."""
        if self._model is not None:
            return self._model
        if self._model_error is not None:
            raise ModelNotLoaded(self.settings.model, self._model_error)
        from ..metric.scorer import MaSC

        started = time.perf_counter()
        try:
            self._model = MaSC.from_pretrained(
                self.settings.model,
                device=self.device(),
                dtype=self.settings.dtype,
                max_num_patches=self.settings.max_patches,
                batch_size=self.settings.batch_size,
                revision=self.settings.revision,
                local_files_only=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"),
            )
        except (MaSCError, ValueError) as error:
            self._model_error = error
            raise
        self.load_seconds = time.perf_counter() - started
        return self._model

    def run_metadata(self) -> dict[str, Any]:
        """Model id, revision, device, dtype and encode counts of this process."""
        meta: dict[str, Any] = {"model": self.settings.model, "revision": self.settings.revision}
        if self._model is not None:
            meta.update(self._model.describe())
            meta.update(self._model.stats.as_dict())
        meta["load_seconds"] = self.load_seconds
        meta["score_seconds"] = self.score_seconds
        return meta

    # -- records

    def add_record(self, record: Record) -> None:
        self.records.append(record)

    def sorted_records(self) -> list[Record]:
        return sorted(self.records, key=lambda r: (r.nodeid, r.check_index))

    # -- xdist

    def worker_output(self) -> dict[str, str]:
        """What an xdist worker sends the controller (JSON strings, by key)."""
        return {
            "masc_records": json.dumps([r.as_dict() for r in self.records]),
            "masc_run": json.dumps(self.run_metadata() if self.model_loaded else {}),
            "masc_suite_gates": json.dumps(self.suite_gates),
            "masc_protocols": json.dumps(self.protocol_tables),
            "masc_findings": json.dumps(self.suite_findings),
        }

    def merge_worker_output(self, output: dict[str, str]) -> None:
        """Controller: take in what one worker sent (:meth:`worker_output`)."""
        if "masc_records" not in output:
            return
        self.records.extend(Record.from_dict(r) for r in json.loads(output["masc_records"]))
        self.suite_gates.update(json.loads(output.get("masc_suite_gates") or "{}"))
        self.protocol_tables.extend(json.loads(output.get("masc_protocols") or "[]"))
        self.suite_findings.extend(json.loads(output.get("masc_findings") or "[]"))
        run = json.loads(output.get("masc_run") or "{}")
        if run:
            self.worker_runs.append(run)

    # -- the end

    def statistics(self) -> dict[str, Any]:
        """Summary statistics (per-concept table, agreement with humans), computed once per session."""
        if self.summary is not None:
            return self.summary
        records = self.sorted_records()
        scored = [r for r in records if r.error is None]
        self.summary = {"concepts": concept_table(records), "agreement": human_agreement(scored), "suites": {}}
        for suite_name in sorted({r.suite for r in scored}):
            members = [r for r in scored if r.suite == suite_name]
            if any(r.human for r in members):
                self.summary["suites"][suite_name] = {"agreement": human_agreement(members)}
        return self.summary

    def finish(self) -> bool:
        """Compare or write the baseline, check suite-level gates, write JSON. True: fail the session."""
        if self.model_loaded:
            self.worker_runs.append(self.run_metadata())
        settings = self.settings
        records = self.sorted_records()
        if settings.baseline is not None and records:
            if settings.update_baseline:
                write_baseline(settings.baseline, records, self.worker_runs)
                self.baseline_written = settings.baseline
            else:
                self._compare_baseline(settings.baseline, records)
        summary = self.statistics()
        self.suite_findings.extend(self._alpha_gate_findings(summary))
        summary["suite_findings"] = list(self.suite_findings)
        summary["baseline_regressions"] = list(self.baseline_findings)
        summary["protocols"] = list(self.protocol_tables)
        if settings.json is not None:
            write_json(settings.json, records, self.worker_runs, summary)
        return bool(self.baseline_findings or self.suite_findings)

    def _compare_baseline(self, path: Path, records: list[Record]) -> None:
        try:
            baseline = read_baseline(path)
        except ValueError as error:
            self.baseline_findings.append(f"ERROR cannot compare: {error}")
            return
        self.baseline_findings.extend(
            f"REGRESSION {finding}" for finding in compare_baseline(baseline, records, self.settings.max_drop)
        )

    def _alpha_gate_findings(self, summary: dict[str, Any]) -> list[str]:
        """Failures of the suites' ``min_alpha_*`` gates against their cases' human ratings."""
        findings = []
        for suite_name, gates in sorted(self.suite_gates.items()):
            agreement = summary["suites"].get(suite_name, {}).get("agreement", {})
            for gate, minimum in sorted(gates.items()):
                if gate not in ALPHA_GATES:
                    continue
                entry = agreement.get(ALPHA_GATES[gate])
                alpha = None if entry is None else entry["alpha"]
                if alpha is None:
                    findings.append(f"{suite_name}: {gate} = {minimum:g} but no human-rated cases give an alpha")
                elif alpha < minimum:
                    findings.append(f"{suite_name}: alpha of {ALPHA_GATES[gate]} scores vs humans {alpha:.3f} < {gate} {minimum:g}")
        return findings


__all__ = ["ALPHA_GATES", "MascSession", "ModelNotLoaded", "SESSION_KEY", "worker_index"]
