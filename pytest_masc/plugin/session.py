"""The plugin's state for one pytest process: :class:`MascSession`, the one object in
``config.stash[SESSION_KEY]``. It holds the settings, the lazily loaded model, the case
records and the session-level findings, merges what xdist workers send, and finishes the
session (baseline, suite-level gates, JSON). Torch and transformers load only when a gate
first needs the model.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import pytest

from ..errors import MaSCError, ModelLoadError
from ..gates import Record
from .options import Settings

if TYPE_CHECKING:
    from ..metric.scorer import MaSC

SESSION_KEY: "pytest.StashKey[MascSession]" = pytest.StashKey()

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
    suite_findings: list[str] = field(default_factory=list)  # protocol gate failures found while running (the rest: report.evaluate)
    suite_gates: dict[str, dict[str, float]] = field(default_factory=dict)  # suite name -> suite-level gates
    collected: dict[str, dict[str, Any]] = field(default_factory=dict)  # suite name -> report.suite_collected entry
    protocol_tables: list[dict[str, Any]] = field(default_factory=list)  # printed in the summary
    finished: Any = None  # (report.Report, report.Evaluation) once the session is finished
    load_seconds: float = 0.0
    score_seconds: float = 0.0
    ray_scored: bool = False  # a protocol item scored on Ray (--masc-ray): run metadata without a model here
    _model: Any = None
    _model_error: Optional[BaseException] = None
    segmenter: Any = None  # the --masc-segmenter's SessionSegmenter (plugin.masks), or None
    canary: Optional[dict[str, Any]] = None  # the metric-drift canary's scores (metric.canary), once scored

    # -- model

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def device(self) -> Optional[str]:
        """The device to load on: under xdist with CUDA, worker ``i`` takes GPU ``i % count``."""
        requested = self.settings.model_options.device
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
            raise ModelNotLoaded(self.settings.model_options.model, self._model_error)
        started = time.perf_counter()
        try:
            self._model = dataclasses.replace(self.settings.model_options, device=self.device()).load()
        except (MaSCError, ValueError) as error:
            self._model_error = error
            raise
        self.load_seconds = time.perf_counter() - started
        return self._model

    def run_metadata(self) -> dict[str, Any]:
        """Model id, revision, device, dtype, encode counts and environment (torch, transformers,
        attention: :func:`pytest_masc.metric.canary.environment`) of this process."""
        options = self.settings.model_options
        meta: dict[str, Any] = {"model": options.model, "revision": options.revision}
        if self._model is not None:
            from ..metric.canary import environment

            meta.update(self._model.describe())
            meta.update(self._model.stats.as_dict())
            meta["environment"] = environment(self._model)
        if self.ray_scored:
            meta["ray"] = self.settings.ray
        meta["load_seconds"] = self.load_seconds
        meta["score_seconds"] = self.score_seconds
        if self.segmenter is not None:
            meta["segmenter"] = self.segmenter.describe()
        return meta

    # -- suites

    def collect_suite(self, file_nodeid: str, suite: Any) -> None:
        """Register a collected suite file (deselected cases included): its suite-level gates,
        and its cases per concept and rated cases, which the session's end compares with what ran."""
        from ..report import suite_collected

        if suite.suite_gates:  # alpha gates over the cases' human ratings, checked at session end
            self.suite_gates[suite.name] = dict(suite.suite_gates)
        concepts = {name: sum(1 for case in suite.cases if case.concept == name) for name in suite.concepts}
        rated = {key: sum(1 for case in suite.cases if case.human.get(key)) for key in ("concept", "prompt")}
        self.collected[suite.name] = suite_collected(file_nodeid, concepts, rated)

    # -- records

    def add_record(self, record: Record) -> None:
        self.records.append(record)

    def sorted_records(self) -> list[Record]:
        return sorted(self.records, key=lambda r: (r.nodeid, r.check_index))

    # -- xdist

    def worker_output(self) -> dict[str, str]:
        """What an xdist worker sends the controller (JSON strings, by key); the records in the
        ``--masc-json`` record codec (:mod:`pytest_masc.report.codec`)."""
        from ..report.codec import records_text

        return {
            "masc_records": records_text(self.records),
            "masc_run": json.dumps(self.run_metadata() if self.model_loaded or self.ray_scored else {}),
            "masc_suite_gates": json.dumps(self.suite_gates),
            "masc_collected": json.dumps(self.collected),
            "masc_protocols": json.dumps(self.protocol_tables),
            "masc_findings": json.dumps(self.suite_findings),
            "masc_canary": json.dumps(self.session_canary() if self.settings.json or self.settings.baseline else None),
        }

    def session_canary(self) -> Optional[dict[str, Any]]:
        """The metric-drift canary scored with this process's model (None without one, or when
        it cannot score: a run is never failed by its canary), scored once."""
        from ..metric.canary import score_canary

        if self.canary is None and self._model is not None:
            try:
                self.canary = score_canary(self._model)
            except (MaSCError, ValueError, RuntimeError):
                return None
        return self.canary

    def merge_worker_output(self, output: dict[str, str]) -> None:
        """Controller: take in what one worker sent (:meth:`worker_output`)."""
        from ..report.codec import records_from_text

        if "masc_records" not in output:
            return
        self.records.extend(records_from_text(output["masc_records"], "xdist worker output"))
        self.suite_gates.update(json.loads(output.get("masc_suite_gates") or "{}"))
        self.collected.update(json.loads(output.get("masc_collected") or "{}"))
        self.protocol_tables.extend(json.loads(output.get("masc_protocols") or "[]"))
        self.suite_findings.extend(json.loads(output.get("masc_findings") or "[]"))
        self.canary = self.canary or json.loads(output.get("masc_canary") or "null")
        run = json.loads(output.get("masc_run") or "{}")
        if run:
            self.worker_runs.append(run)


__all__ = ["MascSession", "ModelNotLoaded", "SESSION_KEY", "worker_index"]
