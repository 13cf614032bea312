"""The plugin's options: ``--masc-*`` flags, their ini keys, and :class:`Settings`, the
resolved values (command line over ini over defaults), checked once at configure time."""
from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL, DTYPE_ALIASES, check_probability
from ..metric.hub import hub_offline
from ..metric.options import ModelOptions
from ..protocols.spec import AUTO_MASKS, ProtocolError, ProtocolSpec, parse_protocol_option
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
    "max_drop": ("masc_max_drop", float, 0.02, "the drop of a concept's CP or PF the baseline comparison tolerates: a drop established beyond it fails (regressed)"),
    "require_noninferior": ("masc_require_noninferior", bool, False, "fail the session when a baseline comparison is inconclusive too (default: passes with a warning saying how many cases would decide it)"),
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
    for name, (ini, kind, default, help_text) in OPTIONS.items():
        flag = "--masc-" + name.replace("_", "-")
        metavar = METAVARS.get(name, name.upper())
        shown_default = f"; default: {default}" if default is not None else ""
        if kind is bool:  # a flag: given means true; its ini key takes true/false
            group.addoption(flag, dest=f"masc_{name}", default=None, action="store_const", const=True,
                            help=f"{help_text} (ini: {ini} = true)")
        else:
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
    model_options: ModelOptions  # model, revision, device, dtype, patch budget, batch size, hub access
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
    require_noninferior: bool = False  # --masc-require-noninferior: an inconclusive baseline comparison fails

    @classmethod
    def from_config(cls, config: pytest.Config) -> "Settings":
        """Read and check every option; a bad value is a ``pytest.UsageError`` naming it.
        Relative paths are resolved by :func:`resolve_path`: a command-line value against the
        invocation directory, an ini value against the ini file's directory."""
        check_ini_keys(config)
        given = {name: _option_value(config, name) for name in OPTIONS}
        values = {name: option.value for name, option in given.items()}

        def path(name: str) -> Optional[Path]:
            option = given[name]
            return Path(resolve_path(option.value, option.base)) if option.value else None

        _check_values(values)
        enabled = bool(config.getoption("masc"))
        if enabled:
            _check_device(given["device"])
        return cls(
            enabled=enabled,
            model_options=ModelOptions(
                model=resolve_path(values["model"], given["model"].base, hub_id=True),
                revision=values["revision"], device=values["device"], dtype=values["dtype"],
                max_num_patches=values["max_patches"], batch_size=values["batch_size"],
                # HF_HUB_OFFLINE as an option: Ray actors may run where the driver's environment is not set
                local_files_only=hub_offline(),
            ),
            json=path("json"),
            baseline=path("baseline"),
            max_drop=values["max_drop"],
            update_baseline=bool(config.getoption("masc_update_baseline")),
            artifacts=path("artifacts"),
            protocol=_protocol(given["protocol"]),
            baselines=parse_baselines(values["baselines"], given["baselines"].base),
            allow_baseline_mismatch=bool(config.getoption("masc_allow_baseline_mismatch", False)),
            segmenter=_segmenter(given["segmenter"]),
            segmenter_threshold=values["segmenter_threshold"],
            ray=_ray_address(values["ray"]),
            baseline_skip=_baseline_skip(values["baseline_skip"]),
            require_noninferior=bool(values["require_noninferior"]),
        )


@dataclass(frozen=True)
class OptionValue:
    """One option's value and where it came from: ``base`` is the directory its relative
    paths start from (the invocation directory for the command line and the defaults, the
    ini file's directory for an ini key), ``where`` names it in messages."""

    value: Any
    base: Path
    where: str


def resolve_path(value: str, base: Path, *, hub_id: bool = False) -> str:
    """The one rule for path-valued options: ``~`` expanded; an absolute path kept; a
    relative one joined to ``base`` (see :class:`OptionValue`). With ``hub_id=True`` (a
    model: a hub id or a local directory) a relative value stays as written, a hub id such
    as ``google/siglip2-base-patch16-naflex``, unless it exists under ``base`` or starts with
    ``./`` or ``../`` (then it is a path, and a missing one is reported as such at load)."""
    text = str(value).strip()
    candidate = Path(text).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    resolved = base / candidate
    if hub_id and not resolved.exists() and not _explicitly_relative(text):
        return text
    return str(resolved)


def _explicitly_relative(text: str) -> bool:
    return text in (".", "..") or text.startswith(("./", "../", ".\\", "..\\"))


def values_taken_as_test_paths(config: pytest.Config) -> list[str]:
    """Warnings for ``--masc-* VALUE`` written with a space. Before pytest knows the plugin's
    options it reads VALUE as a test path, and picks the rootdir and the ini file from the
    test paths that exist; later the option takes VALUE as its value. ``--masc-x=VALUE`` is
    safe. Each warning says what pytest chose, and whether VALUE (not) existing mattered."""
    args = [str(arg) for arg in config.invocation_params.args]
    flags = {"--masc-" + name.replace("_", "-") for name, (_ini, kind, *_rest) in OPTIONS.items() if kind is not bool}
    ini = f"read ini file {config.inipath}" if config.inipath is not None else (
        "found no ini file, so no pytest.ini / pyproject.toml setting (masc_* keys included) applies"
    )
    warnings = []
    for flag, value in zip(args, args[1:]):
        if flag not in flags or value.startswith("-"):
            continue
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = Path(config.invocation_params.dir) / candidate
        if candidate.exists():
            what = (f"pytest took {value!r} for a test path while it chose the rootdir and the ini file: "
                    f"rootdir became {config.rootpath} and pytest {ini}; check that these are the ones you meant")
        else:
            what = (f"pytest took {value!r} for a test path while it chose the rootdir and the ini file; it does "
                    f"not exist, so it changed nothing this time (rootdir {config.rootpath}, pytest {ini}), "
                    "but it will once it exists")
        warnings.append(f"{flag} {value} (written with a space): {what}. Write {flag}={value}")
    return warnings


def check_ini_keys(config: pytest.Config) -> None:
    """An ini key that starts with ``masc`` but is not one of the plugin's (``masc_modle``)
    is a usage error naming the file, with a did-you-mean: pytest would only warn at the
    end, and the option would silently keep its default."""
    known = sorted(ini for ini, *_ in OPTIONS.values())
    for key, source in _ini_keys(config):
        if key in known or not key.lower().replace("-", "_").startswith("masc"):
            continue
        try:
            config.getini(key)  # registered by another plugin or a conftest: theirs
            continue
        except ValueError:
            pass
        close = difflib.get_close_matches(key.lower().replace("-", "_"), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise pytest.UsageError(
            f"{source}: unknown ini key {key!r}{hint}; pytest-masc's ini keys: {', '.join(known)}"
        )


def _ini_keys(config: pytest.Config) -> list[tuple[str, str]]:
    """The keys of the ini file pytest read and of ``-o``/``--override-ini``, each with where
    it was written. Read from the file itself (``config.inipath``): pytest has no public API
    listing the keys it read (``config.inicfg`` is private and deprecated since pytest 9)."""
    keys = [(item.partition("=")[0].strip(), "-o / --override-ini")
            for item in config.getoption("override_ini", None) or []]
    path = config.inipath
    if path is None:
        return keys
    tables: list[Any] = []
    try:
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            tool_pytest = data.get("tool", {}).get("pytest", {})
            tables = [data.get("pytest"), tool_pytest, tool_pytest.get("ini_options")]
        else:
            import iniconfig  # pytest's own ini reader

            parsed = iniconfig.IniConfig(str(path))
            tables = [dict(parsed[name].items()) for name in ("pytest", "tool:pytest") if name in parsed]
    except Exception:  # pytest read it already; a file it could not parse stopped the run before us
        return keys
    return keys + [(key, str(path)) for table in tables if isinstance(table, dict) for key in table]


def _option_value(config: pytest.Config, name: str) -> OptionValue:
    """The command line's value, else the ini key's, else the default; converted to its type."""
    ini, kind, default, _help = OPTIONS[name]
    flag = "--masc-" + name.replace("_", "-")
    invocation_dir = Path(config.invocation_params.dir)
    value, base, where = config.getoption(f"masc_{name}"), invocation_dir, flag
    if value is None:
        raw = config.getini(ini)
        if raw not in ("", None, []):
            # as pytest's own ``paths`` ini type (``-o`` overrides included): from the ini file's directory
            value, base = raw, config.inipath.parent if config.inipath is not None else invocation_dir
            overridden = any(item.partition("=")[0].strip() == ini for item in config.getoption("override_ini", None) or [])
            where = f"-o {ini}" if overridden or config.inipath is None else f"{ini} in {config.inipath}"
    if value is None:
        value = default
    if value is not None and kind is bool and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text not in _BOOLEANS:
            raise pytest.UsageError(f"{where}: {value!r} is not true or false (true, false, yes, no, 1, 0, on, off)")
        value = _BOOLEANS[text]
    elif value is not None and kind is not str:
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{flag} / {ini}: {value!r} is not a valid {kind.__name__}") from None
    return OptionValue(value=value, base=base, where=where)


_BOOLEANS = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


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
    if threshold is not None:
        try:
            check_probability("--masc-segmenter-threshold", threshold)
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    if threshold is not None and not values["segmenter"]:
        raise pytest.UsageError("--masc-segmenter-threshold needs --masc-segmenter=sam3|clipseg (ini masc_segmenter)")


def _check_device(option: OptionValue) -> None:
    """A CUDA or MPS device this machine does not have is a usage error (torch is imported
    only when one is named)."""
    device = option.value
    if device is None or device == "cpu":
        return
    import torch

    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise pytest.UsageError(
                f"{option.where}: device 'mps' is not available on this machine (Apple MPS needs macOS on Apple "
                "silicon and a torch built with MPS); use cpu, or leave the device out to pick the best one"
            )
        return
    if not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
        raise pytest.UsageError(
            f"{option.where}: device {device!r} is not available: no CUDA GPU on this machine (torch "
            f"{torch.__version__}, {build}); use cpu, or leave the device out to pick the best one"
        )
    _, _, index = device.partition(":")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise pytest.UsageError(
            f"{option.where}: device {device!r} does not exist: this machine has {count} CUDA device(s), "
            f"cuda:0 to cuda:{count - 1}"
        )


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


def _segmenter(option: OptionValue) -> Optional[SegmenterChoice]:
    """``--masc-segmenter`` parsed, its ``=ID_OR_DIR`` resolved by :func:`resolve_path`; an
    unknown kind is a usage error."""
    if not option.value:
        return None
    kind, equals, model = str(option.value).partition("=")
    value = f"{kind}={resolve_path(model, option.base, hub_id=True)}" if model.strip() else str(option.value)
    try:
        return parse_segmenter_option(value)
    except SegmenterOptionError as error:
        raise pytest.UsageError(str(error)) from None


def _protocol(option: OptionValue) -> Optional[ProtocolSpec]:
    """``--masc-protocol`` parsed, its ``ROOT`` and ``masks=DIR`` resolved by :func:`resolve_path`."""
    if not option.value:
        return None
    try:
        spec = parse_protocol_option(option.value)
    except ProtocolError as error:
        raise pytest.UsageError(str(error)) from None
    masks = spec.masks
    if masks is not None and masks != AUTO_MASKS:
        masks = resolve_path(masks, option.base)
    return dataclasses.replace(spec, root=resolve_path(spec.root, option.base), masks=masks)


def parse_baselines(value: Optional[str], base: Optional[Path] = None) -> dict[str, Optional[str]]:
    """``"clip,dino"`` or ``"clip=/models/clip,dino"`` -> ``{"clip": "/models/clip", "dino": None}``;
    with ``base``, a checkpoint is resolved by :func:`resolve_path` (a hub id or a directory)."""
    baselines: dict[str, Optional[str]] = {}
    for part in (value or "").split(","):
        name, _, model = part.strip().partition("=")
        if not name:
            continue
        if name not in ("clip", "dino"):
            raise pytest.UsageError(f"--masc-baselines: unknown baseline {name!r} (choose from clip, dino; NAME=MODEL sets its checkpoint)")
        model = model.strip()
        baselines[name] = (resolve_path(model, base, hub_id=True) if base is not None else model) if model else None
    return baselines
