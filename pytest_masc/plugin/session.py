"""Session state of the plugin: settings, the lazily loaded model, suite scores and records.

One :class:`MascSession` lives in ``config.stash[SESSION_KEY]``. It never imports torch or
transformers until a gate actually needs the model.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DTYPE_ALIASES
from ..errors import MaSCError
from ..gates import Record
from .protocol_item import parse_protocol_option

if TYPE_CHECKING:
    from .collect import MascCaseItem
    from ..metric.scorer import MaSC
    from ..types import Score

SESSION_KEY: "pytest.StashKey[MascSession]" = pytest.StashKey()


#: option name -> (ini key, type, default, help)
OPTIONS: dict[str, tuple[str, Any, Any, str]] = {
    "model": ("masc_model", str, DEFAULT_MODEL, "SigLIP2 NaFlex checkpoint: hub id or local directory"),
    "revision": ("masc_revision", str, None, "hub revision (branch, tag or commit) of the model"),
    "device": ("masc_device", str, None, "torch device; default: cuda when available (one GPU per xdist worker), else cpu"),
    "dtype": ("masc_dtype", str, None, "model dtype: float32, bfloat16, float16; default bfloat16 on cuda, float32 on cpu"),
    "max_patches": ("masc_max_patches", int, DEFAULT_MAX_PATCHES, "NaFlex patch budget per image (the paper: 1024)"),
    "batch_size": ("masc_batch_size", int, None, "images per vision forward; default 32 on cuda, 1 on cpu"),
    "json": ("masc_json", str, None, "write every case record, run metadata and the summary to this JSON file"),
    "baseline": ("masc_baseline", str, None, "baseline JSON file to compare against (or to write with --masc-update-baseline)"),
    "max_drop": ("masc_max_drop", float, 0.02, "fail when a concept's mean CP or PF drops more than this below the baseline"),
    "artifacts": ("masc_artifacts", str, None, "write a PNG panel for each failing case into this directory"),
    "protocol": ("masc_protocol", str, None, "run a benchmark protocol as a suite: dreambench_plus=ROOT,masks=DIR or orida=ROOT[,split=NAME]"),
    "baselines": ("masc_baselines", str, None, "extra baseline metrics for protocol tables: clip,dino (NAME=MODEL to choose a checkpoint)"),
}


@dataclass
class Settings:
    """Resolved plugin options (command line over ini over defaults)."""

    enabled: bool
    model: str
    revision: Optional[str]
    device: Optional[str]
    dtype: Optional[str]
    max_patches: int
    batch_size: Optional[int]
    json: Optional[Path]
    baseline: Optional[Path]
    max_drop: float
    update_baseline: bool
    artifacts: Optional[Path]
    protocol: Optional[dict[str, str]]
    baselines: dict[str, Optional[str]]
    allow_baseline_mismatch: bool = False  # compare with a baseline of other settings, with a warning

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        values: dict[str, Any] = {}
        for name, (ini, kind, default, _help) in OPTIONS.items():
            value = config.getoption(f"masc_{name}")
            if value is None:
                raw = config.getini(ini)
                value = raw if raw not in ("", None, []) else None
            if value is None:
                value = default
            if value is not None and kind is not str:
                try:
                    value = kind(value)
                except (TypeError, ValueError):
                    raise pytest.UsageError(
                        f"--masc-{name.replace('_', '-')} / {ini}: {value!r} is not a valid {kind.__name__}"
                    ) from None
            values[name] = value

        def path(value: Optional[str]) -> Optional[Path]:
            if not value:
                return None
            candidate = Path(value).expanduser()
            return candidate if candidate.is_absolute() else (Path(config.invocation_params.dir) / candidate)

        if values["max_patches"] is not None and values["max_patches"] < 1:
            raise pytest.UsageError(f"--masc-max-patches must be positive, got {values['max_patches']}")
        if values["batch_size"] is not None and values["batch_size"] < 1:
            raise pytest.UsageError(f"--masc-batch-size must be positive, got {values['batch_size']}")
        if values["max_drop"] < 0:
            raise pytest.UsageError(f"--masc-max-drop must be >= 0, got {values['max_drop']}")
        baselines = parse_baselines(values["baselines"])
        if values["dtype"] is not None and str(values["dtype"]).lower().removeprefix("torch.") not in DTYPE_ALIASES:
            raise pytest.UsageError(f"--masc-dtype {values['dtype']!r}: choose from {', '.join(DTYPE_ALIASES)}")
        if values["device"] is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(values["device"])):
            raise pytest.UsageError(f"--masc-device {values['device']!r}: expected cpu, cuda, cuda:N or mps")
        return cls(
            enabled=bool(config.getoption("masc")),
            model=values["model"],
            revision=values["revision"],
            device=values["device"],
            dtype=values["dtype"],
            max_patches=values["max_patches"],
            batch_size=values["batch_size"],
            json=path(values["json"]),
            baseline=path(values["baseline"]),
            max_drop=values["max_drop"],
            update_baseline=bool(config.getoption("masc_update_baseline")),
            artifacts=path(values["artifacts"]),
            protocol=parse_protocol_option(values["protocol"]) if values["protocol"] else None,
            baselines=baselines,
            allow_baseline_mismatch=bool(config.getoption("masc_allow_baseline_mismatch", False)),
        )


def parse_baselines(value: Optional[str]) -> dict[str, Optional[str]]:
    """``"clip,dino"`` or ``"clip=/models/clip,dino"`` -> ``{"clip": "/models/clip", "dino": None}``."""
    baselines: dict[str, Optional[str]] = {}
    for part in (value or "").split(","):
        name, _, model = part.strip().partition("=")
        if not name:
            continue
        if name not in ("clip", "dino"):
            raise pytest.UsageError(f"--masc-baselines: unknown baseline {name!r} (choose from clip, dino; NAME=MODEL sets its checkpoint)")
        baselines[name] = model.strip() or None
    return baselines


def worker_index(config: pytest.Config) -> Optional[int]:
    """This process's pytest-xdist worker number (``gw3`` -> 3), or None outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput:
        return None
    worker_id = str(workerinput.get("workerid", "gw0"))
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return int(digits) if digits else 0


@dataclass
class MascSession:
    """Everything the plugin keeps for one pytest process."""

    config: pytest.Config
    settings: Settings
    records: list[Record] = field(default_factory=list)
    worker_runs: list[dict[str, Any]] = field(default_factory=list)  # metadata sent by xdist workers
    suite_findings: list[str] = field(default_factory=list)  # suite-level gate failures
    baseline_findings: list[str] = field(default_factory=list)
    baseline_written: Optional[Path] = None
    _model: Any = None
    _model_error: Optional[BaseException] = None
    _suite_scores: dict[str, Any] = field(default_factory=dict)  # nodeid -> list[Score] | Exception
    suite_gates: dict[str, dict[str, float]] = field(default_factory=dict)  # suite name -> suite-level gates
    protocol_tables: list[dict[str, Any]] = field(default_factory=list)  # printed in the summary
    summary: Optional[dict[str, Any]] = None  # statistics of the finished session, computed once
    finished: Any = None  # (report.Report, report.Evaluation) once the session is finished
    load_seconds: float = 0.0
    score_seconds: float = 0.0

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
        """The session's one ``MaSC``, loaded on first use; a load failure is re-raised each time."""
        if self._model is not None:
            return self._model
        if self._model_error is not None:
            raise self._model_error
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

    # -- suite scoring

    def suite_scores(self, item: "MascCaseItem") -> list["Score"]:
        """Scores of a suite case (one per reference); all cases of its suite file scored at once."""
        if item.nodeid not in self._suite_scores:
            self._score_suite_file(item)
        result = self._suite_scores[item.nodeid]
        if isinstance(result, BaseException):
            raise result
        return result

    def _score_suite_file(self, item: "MascCaseItem") -> None:
        from ..metric.scorer import PromptTruncatedWarning
        from ..types import Sample

        siblings = [
            other for other in item.session.items
            if getattr(other, "is_masc_case", False) and other.path == item.path
            and other.nodeid not in self._suite_scores
        ] or [item]
        masc = self.model()
        samples: list[Sample] = []
        owners: list[str] = []
        for case_item in siblings:
            case, concept = case_item.case, case_item.concept
            for reference, reference_mask in zip(concept.references, concept.reference_masks):
                samples.append(Sample(
                    ref_image=reference, ref_mask=reference_mask,
                    out_image=case.image, out_mask=case.mask,
                    prompt=case.prompt, subject=concept.subject, distractors=case.distractors,
                ))
                owners.append(case_item.nodeid)
        reporter = ProgressLine(self.config, f"MaSC {item.path.name}")
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PromptTruncatedWarning)  # re-issued per case, naming it
                results = masc.score_many(samples, progress=reporter.update, errors="return")
        except Exception as error:  # e.g. out of memory on one image: every case of the file reports it
            for nodeid in owners:
                self._suite_scores[nodeid] = error
            raise
        finally:
            reporter.close()
            self.score_seconds += time.perf_counter() - started
        for nodeid in dict.fromkeys(owners):
            self._suite_scores[nodeid] = []
        for nodeid, result in zip(owners, results):
            current = self._suite_scores[nodeid]
            if isinstance(result, BaseException):
                self._suite_scores[nodeid] = result
            elif not isinstance(current, BaseException):
                current.append(result)

    # -- records

    def add_record(self, record: Record) -> None:
        self.records.append(record)

    def sorted_records(self) -> list[Record]:
        return sorted(self.records, key=lambda r: (r.nodeid, r.check_index))


class ProgressLine:
    """A one-line progress bar on an interactive terminal; silent elsewhere (CI, xdist workers)."""

    def __init__(self, config: pytest.Config, label: str) -> None:
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.label = label
        self.active = bool(
            self.reporter is not None and getattr(self.reporter, "isatty", False)
            and not getattr(config, "workerinput", None)
        )
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if not self.active or total <= 0:
            return
        width = 24
        filled = int(width * done / total)
        self.reporter.write(f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
        self.reporter.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.reporter.write("\r" + " " * 80 + "\r")


__all__ = ["MascSession", "SESSION_KEY", "Settings", "OPTIONS", "worker_index"]
