"""Where a checkpoint's files come from (a local directory, the Hugging Face cache, the hub),
what a checkpoint directory must hold, load errors that say what to do, and quiet loading.

Every loader of the package (the scorer's SigLIP backbone, the segmenters, the baseline
metrics) goes through :func:`load_checkpoint`, so that one rule decides what is a local path,
one parser reads ``HF_HUB_OFFLINE``, and one builder words the errors. This module imports
neither torch nor transformers at import time (the pytest plugin imports it).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from ..errors import ModelLoadError

#: values of ``HF_HUB_OFFLINE`` that switch the hub off (any case), as huggingface_hub reads them
TRUE_VALUES = ("1", "true", "yes", "on")
#: weight files ``save_pretrained`` writes (one of them, or its shard index)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: image-processor settings ``save_pretrained`` writes (alone, or inside a processor's file)
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
#: seconds a reachability probe of the hub is reused
PROBE_REUSE_SECONDS = 60.0


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or its older name ``TRANSFORMERS_OFFLINE``) switches the hub
    off: ``1``, ``true``, ``yes`` or ``on`` in any case, surrounding spaces ignored."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in TRUE_VALUES


def looks_local(model_id: str) -> bool:
    """Whether ``model_id`` names a directory rather than a hub id (``name`` or ``org/name``): it
    is an existing directory, starts with ``.``, ``/``, ``~`` or a drive, or has more than one
    ``/`` or any ``\\``."""
    path = os.path.expanduser(model_id)
    return (
        os.path.isdir(path)
        or model_id.startswith((".", "/", "~"))
        or os.path.isabs(path)
        or "\\" in model_id
        or model_id.rstrip("/").count("/") > 1
    )


@dataclass(frozen=True)
class ExpectedCheckpoint:
    """What a loader needs, for its error messages.

    ``name``: what it is (``"SigLIP2 checkpoint"``); ``contents``: what its directory holds;
    ``example``: a hub id to suggest; ``point_at``: how a user names a local directory;
    ``hub_note``: what the hub asks before a download (login, licence); ``error``: the
    :class:`ModelLoadError` subclass to raise; ``needs_processor``: whether the directory
    must hold image-processor settings; ``model_types``: the config ``model_type`` values
    the loader accepts (a directory of another type is left to the loader to name);
    ``wanted``: what the loader takes, as the end of ``... is a 'bert' checkpoint, not <wanted>``.
    """

    name: str
    contents: str
    example: str
    point_at: str
    hub_note: str = ""
    error: type = ModelLoadError
    needs_processor: bool = True
    model_types: tuple[str, ...] = ()
    wanted: str = ""

    def fail(self, model_id: str, detail: str, at: str = "") -> ModelLoadError:
        """``cannot load the <name> '<model_id>'<at>: <detail>`` as this checkpoint's error class."""
        return self.error(f"cannot load the {self.name} {model_id!r}{at}: {detail}")

    def wrong_type(self, model_id: str, model_type: Optional[str]) -> ModelLoadError:
        """``'<model_id>' is a '<model_type>' checkpoint, not <wanted>`` as this checkpoint's error class."""
        return self.error(f"{model_id!r} is a {model_type or 'unknown'!r} checkpoint, not {self.wanted or self.name}")


# ---------------------------------------------------------------------- local directories


def checkpoint_directory(model_id: str, expected: ExpectedCheckpoint) -> Optional[str]:
    """The absolute directory ``model_id`` names, or ``None`` for a hub id.

    Raises:
        ModelLoadError (``expected.error``): the directory does not exist, is a file, or
            lacks what every checkpoint has (config.json with a model_type, weights, and the
            image-processor settings when ``expected.needs_processor``).
    """
    if not looks_local(model_id):
        return None
    directory = os.path.abspath(os.path.expanduser(model_id))
    if not os.path.exists(directory):
        raise expected.fail(model_id, f"the directory {directory} does not exist. Give a directory holding "
                                      f"{expected.contents}, or a hub id such as {expected.example}.")
    if not os.path.isdir(directory):
        raise expected.fail(model_id, f"{directory} is a file; give the checkpoint's directory, which holds "
                                      f"{expected.contents}.")
    problem = directory_problem(directory, expected)
    if problem:
        raise expected.fail(model_id, f"the directory {directory} {problem}. A checkpoint directory holds "
                                      f"{expected.contents}.")
    return directory


def directory_problem(directory: str, expected: ExpectedCheckpoint) -> Optional[str]:
    """Why ``directory`` holds no loadable ``expected`` checkpoint (``None``: nothing found
    missing, or a checkpoint of another type, which the loader names), as a phrase that
    follows the directory's name."""
    names = sorted(os.listdir(directory))
    if not names:
        return "is empty: it holds no checkpoint"
    if "config.json" not in names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"holds no checkpoint: it has no config.json (it has {shown})"
    try:
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        return f"has a config.json that is not JSON ({first_line(error)})"
    if not isinstance(config, dict) or not config.get("model_type"):
        return "has a config.json without a model_type, so it is no transformers checkpoint"
    if expected.model_types and config["model_type"] not in expected.model_types:
        return None
    if not any(name in names for name in WEIGHT_FILES):
        return "has config.json but no weights (model.safetensors or pytorch_model.bin)"
    if expected.needs_processor and not any(name in names for name in PROCESSOR_FILES):
        return "has no image processor settings (preprocessor_config.json or processor_config.json)"
    return None


def tokenizer_problem(tokenizer: Any, vocab_size: int) -> Optional[str]:
    """Why a loaded tokenizer cannot feed a text encoder of ``vocab_size`` ids (``None``: it can).
    transformers builds an empty tokenizer when a checkpoint has no tokenizer files; that one
    would encode every prompt as unknown tokens, a silently wrong score."""
    words = len(tokenizer.get_vocab()) - len(set(tokenizer.all_special_tokens))
    if words <= 0:
        return f"it has no tokenizer files (transformers made an empty {type(tokenizer).__name__})"
    if len(tokenizer) > vocab_size:
        return f"its tokenizer has {len(tokenizer)} tokens but the text encoder knows {vocab_size}"
    return None


# ---------------------------------------------------------------------- the hub


@dataclass(frozen=True)
class HubAccess:
    """How a hub id's files are reached.

    ``local_files_only``: what to pass to transformers; ``offline``: why the hub is not used
    (``None``: it is), as a phrase; ``cache``: the Hugging Face cache directory consulted.
    """

    local_files_only: bool
    offline: Optional[str]
    cache: str


def hub_access(local_files_only: bool = False, cache_dir: Optional[str | os.PathLike] = None) -> HubAccess:
    """Whether to use the hub for a hub id: not when ``local_files_only`` or ``HF_HUB_OFFLINE``
    says so, nor when one quick probe finds it unreachable (then only the local cache is read,
    instead of transformers retrying every file for half a minute)."""
    from huggingface_hub import constants

    cache = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    if local_files_only or hub_offline():
        return HubAccess(True, "the hub is switched off (HF_HUB_OFFLINE=1 or local_files_only)", cache)
    unreachable = hub_unreachable()
    if unreachable:
        return HubAccess(True, f"the hub {constants.ENDPOINT} cannot be reached ({unreachable})", cache)
    return HubAccess(local_files_only, None, cache)


_PROBES: dict[str, tuple[float, Optional[str]]] = {}


def hub_unreachable() -> Optional[str]:
    """Why the hub cannot be reached, or ``None`` when it answers: one ``HEAD`` request to its
    endpoint (``HF_ENDPOINT``), no retries, within huggingface_hub's metadata timeout
    (``HF_HUB_ETAG_TIMEOUT``, 10 s by default). A server error or rate limit counts as
    unreachable. The answer is reused for :data:`PROBE_REUSE_SECONDS`."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    now = time.monotonic()
    if endpoint in _PROBES and now - _PROBES[endpoint][0] < PROBE_REUSE_SECONDS:
        return _PROBES[endpoint][1]
    try:
        status = get_session().head(endpoint, timeout=constants.HF_HUB_ETAG_TIMEOUT, follow_redirects=False).status_code
        reason = f"it answered HTTP {status}" if status >= 500 or status in (408, 429) else None
    except Exception as error:  # connection, DNS, proxy, TLS and timeout errors come in many types
        reason = first_line(error)
    _PROBES[endpoint] = (now, reason)
    return reason


@dataclass(frozen=True)
class CheckpointSource:
    """Where a loader reads a checkpoint from: ``path`` (the absolute directory, or the hub id)
    and ``hub``, the keyword arguments of transformers' ``from_pretrained``; ``access`` is
    ``None`` for a directory."""

    model_id: str
    path: str
    hub: dict
    access: Optional[HubAccess]
    expected: ExpectedCheckpoint

    def error(self, error: BaseException) -> ModelLoadError:
        """The load error for ``error``, raised by transformers while reading this checkpoint."""
        return load_error(self.expected, self.model_id, self.hub.get("revision"), error, self.access)


def checkpoint_source(
    model_id: str,
    expected: ExpectedCheckpoint,
    *,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    cache_dir: Optional[str | os.PathLike] = None,
) -> CheckpointSource:
    """Check a directory (:func:`checkpoint_directory`) or decide how to reach a hub id
    (:func:`hub_access`), before transformers reads anything.

    Raises:
        ModelLoadError (``expected.error``): a directory that is missing or holds no checkpoint.
    """
    directory = checkpoint_directory(model_id, expected)
    access = None if directory else hub_access(local_files_only, cache_dir)
    offline = access.local_files_only if access else local_files_only
    hub = dict(revision=revision, local_files_only=offline, cache_dir=cache_dir)
    return CheckpointSource(model_id, directory or model_id, hub, access, expected)


Parts = TypeVar("Parts")


def load_checkpoint(
    model_id: str,
    expected: ExpectedCheckpoint,
    read_parts: Callable[[CheckpointSource, Any], Parts],
    *,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    cache_dir: Optional[str | os.PathLike] = None,
    default_configs: Sequence[type] = (),
) -> tuple[Any, Parts]:
    """The one loading path of every loader: find ``model_id``'s files (:func:`checkpoint_source`),
    read its config, check its ``model_type`` is one of ``expected.model_types``, then call
    ``read_parts(source, config)`` for the model and its processors, all under
    :func:`quiet_loading` (``default_configs`` as there).

    Returns:
        ``(config, read_parts' result)``.

    Raises:
        ModelLoadError (``expected.error``): files missing or unreadable (worded by
            :func:`load_error`), or a checkpoint of another model type.
    """
    from transformers import AutoConfig

    source = checkpoint_source(model_id, expected, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
    with quiet_loading(default_configs):
        try:
            config = AutoConfig.from_pretrained(source.path, **source.hub)
        except Exception as error:  # hub, network and file errors come in many types
            raise source.error(error) from error
        model_type = getattr(config, "model_type", None)
        if expected.model_types and model_type not in expected.model_types:
            raise expected.wrong_type(model_id, model_type)
        try:
            return config, read_parts(source, config)
        except ModelLoadError:
            raise
        except Exception as error:
            raise source.error(error) from error


# ---------------------------------------------------------------------- errors


def first_line(error: BaseException) -> str:
    """The first line of an error's message without its closing period, else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(" .") if text else type(error).__name__


def load_error(
    expected: ExpectedCheckpoint, model_id: str, revision: Optional[str], error: BaseException, access: Optional[HubAccess],
) -> ModelLoadError:
    """The error for a checkpoint whose files transformers could not load, with what to do.

    ``access``: how the hub was used for a hub id (``None``: ``model_id`` is a directory).
    """
    at = f" at revision {revision!r}" if revision else ""
    if access is None:
        return expected.fail(model_id, f"{first_line(error)}. The directory must hold {expected.contents}.", at)
    download = (
        f"Pre-download them where the hub is reachable with `hf download {model_id}`"
        + (f" ({expected.hub_note}; share the cache through HF_HOME)" if expected.hub_note else " (share the cache through HF_HOME)")
        + f", or point at a local directory: {expected.point_at}."
    )
    if access.offline is None:
        return expected.fail(model_id, f"{first_line(error)}. {download}", at)
    where = f"{access.offline} and its files are not in the local Hugging Face cache ({access.cache}). {download}"
    if not access.offline.startswith("the hub is switched off"):
        where += " When working offline, HF_HUB_OFFLINE=1 makes this fail at once, without trying the hub."
    return expected.fail(model_id, where, at)


# ---------------------------------------------------------------------- quiet loading


_TOKEN_ID_WARNING = re.compile(
    r"Model config: (\w+_token_id) must be `None` or an integer within the vocabulary \(between 0 and (-?\d+)\), got (-?\d+)"
)


class DefaultConfigWarnings(logging.Filter):
    """Drops transformers' token-id warnings about its own default configs.

    Printing a loaded config builds the config class's defaults to diff against, and some
    defaults are themselves out of range (``SiglipTextConfig``: ``bos_token_id`` 49406 in a
    vocabulary of 32000), so every SigLIP load warned about ids the checkpoint does not have.
    A warning whose numbers are a default's stays dropped; any other is let through.
    """

    def __init__(self, config_classes: Sequence[type]) -> None:
        super().__init__()
        self.defaults = set()
        for config_class in config_classes:
            vocab_size = getattr(config_class, "vocab_size", None)
            for name in dir(config_class):
                value = getattr(config_class, name, None)
                if name.endswith("_token_id") and isinstance(value, int) and isinstance(vocab_size, int):
                    self.defaults.add((name, vocab_size - 1, value))

    def filter(self, record: logging.LogRecord) -> bool:
        match = _TOKEN_ID_WARNING.search(record.getMessage())
        return not (match and (match[1], int(match[2]), int(match[3])) in self.defaults)


def on_terminal() -> bool:
    """Whether standard error is a terminal (where progress bars are drawn)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


@contextmanager
def quiet_loading(default_configs: Sequence[type] = ()) -> Iterator[None]:
    """Load (or save) checkpoints without noise: transformers' and huggingface_hub's progress
    bars ("Loading weights", downloads) only on a terminal, so that captured test output and
    CI logs stay clean, and no warnings about the ``default_configs`` classes' own token ids
    (:class:`DefaultConfigWarnings`). ``HF_HUB_DISABLE_PROGRESS_BARS=0`` keeps the bars."""
    from huggingface_hub import constants
    from transformers.utils import logging as hf_logging

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (its package exports the class)

    hide_bars = hf_logging.is_progress_bar_enabled() and not on_terminal() and constants.HF_HUB_DISABLE_PROGRESS_BARS is not False
    hub_states = dict(hub_tqdm.progress_bar_states)
    config_logger = logging.getLogger("transformers.configuration_utils")
    warnings_filter = DefaultConfigWarnings(default_configs)
    config_logger.addFilter(warnings_filter)
    if hide_bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        config_logger.removeFilter(warnings_filter)
        if hide_bars:
            hf_logging.enable_progress_bar()
            hub_tqdm.progress_bar_states.clear()
            hub_tqdm.progress_bar_states.update(hub_states)


__all__ = [
    "CheckpointSource", "ExpectedCheckpoint", "HubAccess", "checkpoint_source", "TRUE_VALUES", "checkpoint_directory", "directory_problem", "first_line",
    "hub_access", "hub_offline", "hub_unreachable", "load_checkpoint", "load_error", "looks_local", "on_terminal", "quiet_loading",
    "tokenizer_problem",
]
