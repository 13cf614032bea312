"""The plugin's options: ``--masc-*`` flags, their ini keys, and :class:`Settings`, the
resolved values (command line over ini over defaults), checked once at configure time."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DTYPE_ALIASES
from ..protocols.spec import ProtocolError, ProtocolSpec, parse_protocol_option
from .masks import SegmenterChoice, SegmenterOptionError, parse_segmenter_option

#: option name -> (ini key, type, default, help)
OPTIONS: dict[str, tuple[str, Any, Any, str]] = {
    "model": ("masc_model", str, DEFAULT_MODEL, "SigLIP2 NaFlex or fixed-resolution SigLIP checkpoint: hub id or local directory"),
    "revision": ("masc_revision", str, None, "hub revision (branch, tag or commit) of the model"),
    "device": ("masc_device", str, None, "torch device; default: cuda when available (one GPU per xdist worker), else mps, else cpu"),
    "dtype": ("masc_dtype", str, None, "model dtype: float32, bfloat16, float16; default bfloat16 on cuda, float32 elsewhere"),
    "max_patches": ("masc_max_patches", int, DEFAULT_MAX_PATCHES, "NaFlex patch budget per image (the paper: 1024)"),
    "batch_size": ("masc_batch_size", int, None, "images per vision forward; default 32 on cuda, 1 on cpu"),
    "json": ("masc_json", str, None, "write every case record, run metadata and the summary to this JSON file"),
    "baseline": ("masc_baseline", str, None, "baseline JSON file to compare against (or to write with --masc-update-baseline)"),
    "baseline_skip": ("masc_baseline_skip", str, None, "baseline concepts this run may leave out, SUITE::CONCEPT,... (fnmatch patterns); any other baseline concept missing from the run fails the check"),
    "max_drop": ("masc_max_drop", float, 0.02, "fail when a concept's mean CP or PF drops more than this below the baseline"),
    "artifacts": ("masc_artifacts", str, None, "write a PNG panel for each failing case into this directory"),
    "protocol": ("masc_protocol", str, None, "run a benchmark protocol as a suite: dreambench_plus=ROOT,masks=DIR or orida=ROOT[,split=NAME]"),
    "baselines": ("masc_baselines", str, None, "extra baseline metrics for protocol tables: clip,dino (NAME=MODEL to choose a checkpoint)"),
    "segmenter": ("masc_segmenter", str, None, "compute missing masks with a text-prompted segmenter: sam3, clipseg, sam3=ID_OR_DIR or clipseg=ID_OR_DIR"),
    "segmenter_threshold": ("masc_segmenter_threshold", float, None, "the segmenter's threshold in [0, 1] (SAM3: instance score, CLIPSeg: foreground probability); default 0.5"),
    "ray": ("masc_ray", str, None, "score protocol runs on Ray: local, auto, ray://HOST:PORT or HOST:PORT (needs pytest-masc[ray])"),
}

METAVARS = {
    "model": "ID_OR_DIR", "revision": "REV", "device": "DEVICE", "dtype": "DTYPE", "max_patches": "N",
    "batch_size": "N", "json": "PATH", "baseline": "PATH", "baseline_skip": "SUITE::CONCEPT,...", "max_drop": "FLOAT", "artifacts": "DIR",
    "protocol": "KIND=ROOT[,...]", "baselines": "clip,dino", "segmenter": "KIND[=ID_OR_DIR]",
    "segmenter_threshold": "FLOAT", "ray": "ADDRESS",
}


def add_options(parser: pytest.Parser) -> None:
    """Register ``--masc``, every ``--masc-*`` option with its ini key, and ``--masc-update-baseline``."""
    group = parser.getgroup("masc", "MaSC release gates (pytest-masc)")
    group.addoption("--masc", action="store_true", default=False,
                    help="run MaSC gates: masc-marked tests and masc_*.toml suite files")
    for name, (ini, _kind, default, help_text) in OPTIONS.items():
        flag = "--masc-" + name.replace("_", "-")
        metavar = METAVARS.get(name, name.upper())
        shown_default = f"; default: {default}" if default is not None else ""
        group.addoption(flag, dest=f"masc_{name}", default=None, metavar=metavar,
                        help=f"{help_text} (ini: {ini}{shown_default})")
        parser.addini(ini, help=help_text, default=None)
    group.addoption("--masc-update-baseline", dest="masc_update_baseline", action="store_true", default=False,
                    help="write this run's per-case and per-concept scores to the --masc-baseline file (a passing "
                    "run only; concepts it does not score in full are kept as they were)")
    group.addoption("--masc-allow-baseline-mismatch", dest="masc_allow_baseline_mismatch", action="store_true",
                    default=False, help="compare against a baseline made with another model, revision, dtype or "
                    "patch budget, with a warning (default: refused)")


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
    protocol: Optional[ProtocolSpec]
    baselines: dict[str, Optional[str]]
    allow_baseline_mismatch: bool = False  # compare with a baseline of other settings, with a warning
    segmenter: Optional[SegmenterChoice] = None
    segmenter_threshold: Optional[float] = None
    ray: Optional[str] = None  # --masc-ray: protocol items score through pytest_masc.ray (None: in process)
    baseline_skip: tuple[str, ...] = ()  # --masc-baseline-skip: baseline concepts the run may leave out

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        """Read and check every option; a bad value is a ``pytest.UsageError`` naming it."""
        values = {name: _option_value(config, name) for name in OPTIONS}

        def path(value: Optional[str]) -> Optional[Path]:
            if not value:
                return None
            candidate = Path(value).expanduser()
            return candidate if candidate.is_absolute() else (Path(config.invocation_params.dir) / candidate)

        _check_values(values)
        try:
            protocol = parse_protocol_option(values["protocol"]) if values["protocol"] else None
        except ProtocolError as error:
            raise pytest.UsageError(str(error)) from None
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
            protocol=protocol,
            baselines=parse_baselines(values["baselines"]),
            allow_baseline_mismatch=bool(config.getoption("masc_allow_baseline_mismatch", False)),
            segmenter=_segmenter(values["segmenter"], Path(config.invocation_params.dir)),
            segmenter_threshold=values["segmenter_threshold"],
            ray=_ray_address(values["ray"]),
            baseline_skip=_baseline_skip(values["baseline_skip"]),
        )


def values_taken_as_test_paths(config: pytest.Config) -> list[str]:
    """Warnings for ``--masc-* VALUE`` written with a space where VALUE is an existing path:
    pytest reads the arguments for test paths before it knows the plugin's options, so it
    picks the rootdir (and the ini file) from VALUE too. ``--masc-model=VALUE`` is safe."""
    args = [str(arg) for arg in config.invocation_params.args]
    flags = {"--masc-" + name.replace("_", "-") for name in OPTIONS}
    warnings = []
    for flag, value in zip(args, args[1:]):
        if flag not in flags or value.startswith("-"):
            continue
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = Path(config.invocation_params.dir) / candidate
        if candidate.exists():
            ini = config.inipath or "none"
            warnings.append(
                f"{flag} {value}: pytest also took {value!r} for a test path when choosing the rootdir "
                f"(rootdir: {config.rootpath}, ini file: {ini}), so pytest.ini / pyproject.toml settings may be "
                f"ignored; write {flag}={value}"
            )
    return warnings


def _option_value(config: pytest.Config, name: str) -> Any:
    """The command line's value, else the ini key's, else the default; converted to its type."""
    ini, kind, default, _help = OPTIONS[name]
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
    return value


def _check_values(values: dict[str, Any]) -> None:
    if values["max_patches"] is not None and values["max_patches"] < 1:
        raise pytest.UsageError(f"--masc-max-patches must be positive, got {values['max_patches']}")
    if values["batch_size"] is not None and values["batch_size"] < 1:
        raise pytest.UsageError(f"--masc-batch-size must be positive, got {values['batch_size']}")
    if values["max_drop"] < 0:
        raise pytest.UsageError(f"--masc-max-drop must be >= 0, got {values['max_drop']}")
    if values["dtype"] is not None and str(values["dtype"]).lower().removeprefix("torch.") not in DTYPE_ALIASES:
        raise pytest.UsageError(f"--masc-dtype {values['dtype']!r}: choose from {', '.join(DTYPE_ALIASES)}")
    if values["device"] is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(values["device"])):
        raise pytest.UsageError(f"--masc-device {values['device']!r}: expected cpu, cuda, cuda:N or mps")
    threshold = values["segmenter_threshold"]
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise pytest.UsageError(f"--masc-segmenter-threshold must be in [0, 1], got {threshold:g}")
    if threshold is not None and not values["segmenter"]:
        raise pytest.UsageError("--masc-segmenter-threshold needs --masc-segmenter=sam3|clipseg (ini masc_segmenter)")


def _baseline_skip(value: Optional[str]) -> tuple[str, ...]:
    """``--masc-baseline-skip`` parsed into ``SUITE::CONCEPT`` patterns; a usage error names a bad entry."""
    from ..report import parse_concepts

    try:
        return tuple(parse_concepts(value, "--masc-baseline-skip / masc_baseline_skip"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _ray_address(value: Optional[str]) -> Optional[str]:
    """``--masc-ray`` checked: a Ray address, and Ray installed (not imported: that waits for a
    protocol item to run); ``None`` without the option."""
    if not value:
        return None
    import importlib.util

    from ..ray.samples import parse_address

    try:
        parse_address(value)
    except ValueError as error:
        raise pytest.UsageError(f"--masc-ray / masc_ray: {error}") from None
    if importlib.util.find_spec("ray") is None:
        raise pytest.UsageError(
            f'--masc-ray={value} needs Ray, which is not installed: pip install "pytest-masc[ray]"'
        )
    return str(value).strip()


def _segmenter(value: Optional[str], base: Path) -> Optional[SegmenterChoice]:
    """``--masc-segmenter`` parsed; an unknown kind is a usage error."""
    if not value:
        return None
    try:
        return parse_segmenter_option(value, base)
    except SegmenterOptionError as error:
        raise pytest.UsageError(str(error)) from None


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
