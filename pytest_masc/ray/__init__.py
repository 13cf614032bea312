"""Score a table of samples with Ray Data: one ``MaSC`` per actor, batches through ``score_many``.

Install with ``pip install "pytest-masc[ray]"``. Ray is imported only when a function here
needs it, so this module imports without it.

Input columns: ``ref_image``, ``ref_mask``, ``out_image``, ``out_mask`` (local paths,
relative to ``base_dir``, or URIs such as ``s3://…`` / ``gs://…`` that ``pyarrow.fs`` or
``fsspec`` can open), ``prompt``, ``subject`` (a blank cell strips nothing) and optionally
``distractors`` (a list, or one ``|``-separated string as in suite case CSVs). Every other
column is passed through unchanged.

Output columns, appended in this order: ``concept``, ``prompt``, ``global_concept``,
``global_prompt``, ``prompt_margin`` (floats, NaN when not scored) and ``error`` (``None``, or
what is wrong with the row, naming the file). Scores keep the names of
:class:`~pytest_masc.types.Score` so a score column reads the same everywhere (``Score.prompt``,
``Score.as_dict()["prompt"]``, JSON reports, this table). Because ``prompt`` is also an input,
the rule is: **an input column whose name is an output column is kept as ``input_<name>``**,
so the prompt text comes back as ``input_prompt`` (and a ``concept`` name column as
``input_concept``). A table that already has that ``input_<name>`` column is refused.

Rows come back in input order. To share work, rows are grouped by reference image before
being cut into batches (each distinct reference and prompt is then encoded once per batch,
and an actor's reference cache serves the next batches); a carried row index restores the
order at the end.

A row without ``distractors`` gets a NaN ``prompt_margin``: a table has no concepts to take
other prompts from. :mod:`pytest_masc.ray.export` writes suites' cases as a table with their
defaults resolved (one row per reference) and folds the scored table back into cases.
An ``address`` with no cluster behind it is one :class:`~pytest_masc.errors.DeviceError` line.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..defaults import DEFAULT_MAX_PATCHES, DEFAULT_MODEL
from ..errors import DeviceError, InputError, MaSCError
from ..types import Sample

if TYPE_CHECKING:
    import pandas as pd

IMAGE_COLUMNS = ("ref_image", "ref_mask", "out_image", "out_mask")
REQUIRED_COLUMNS = (*IMAGE_COLUMNS, "prompt", "subject")
OPTIONAL_COLUMNS = ("distractors",)
SCORE_COLUMNS = ("concept", "prompt", "global_concept", "global_prompt", "prompt_margin")
OUTPUT_COLUMNS = (*SCORE_COLUMNS, "error")
INPUT_PREFIX = "input_"
ROW_COLUMN = "__masc_row"  # the carried input position; never in the output

_WHAT = {"ref_image": "reference image", "ref_mask": "reference mask",
         "out_image": "output image", "out_mask": "output mask"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
INSTALL_HINT = 'Ray scoring needs Ray Data: pip install "pytest-masc[ray]"  (or: pip install "ray[data]>=2.40")'


def start_ray(ray: Any, address: Optional[str], option: str = "--address") -> None:
    """``ray.init`` for ``address`` (``None`` or ``"local"``: start a local Ray), failing fast
    with one :class:`~pytest_masc.errors.DeviceError` line, naming ``option``, when no cluster
    answers: Ray raises a long ``ConnectionError`` for ``auto`` and retries a dead
    ``HOST:PORT`` for minutes."""
    if address not in (None, "local", "auto"):
        problem = _unanswered(address)
        if problem:
            raise DeviceError(
                f"no Ray cluster answers at {option}={address} ({problem}): check the address (the head "
                f"node's `ray status` prints it), start a cluster with `ray start --head`, or use "
                f"{option}=local to start a local Ray for this run"
            )
    try:
        ray.init(address=address or "local", include_dashboard=False)
    except ConnectionError as error:
        said = str(error).split(". ")[0].rstrip(".")
        raise DeviceError(
            f"no Ray cluster found for {option}={address} (Ray: {said}): start one on this machine with "
            f"`ray start --head` ({option}=auto then finds it), or use {option}=local to start a local "
            "Ray for this run"
        ) from None


def _unanswered(address: str, timeout: float = 5.0) -> Optional[str]:
    """Why nothing accepts a TCP connection at ``[ray://]HOST:PORT`` (``None``: something does,
    or the address is not of that form). A loopback host is also tried at this node's IP,
    where Ray itself connects."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)/?", address.strip())
    if not match:
        return None
    host, port = match.group(1), int(match.group(2))
    hosts = [host]
    if host in ("localhost", "127.0.0.1", "::1"):
        with contextlib.suppress(Exception):  # a private helper: the loopback probe still runs without it
            from ray._private.services import get_node_ip_address

            hosts.append(get_node_ip_address())
    problem = None
    for candidate in dict.fromkeys(hosts):
        try:
            with socket.create_connection((candidate, port), timeout=timeout):
                return None
        except OSError as error:
            problem = problem or f"{candidate}:{port}: {error.strerror or error}"
    return problem


def import_ray():
    """``ray`` (and ``ray.data``), or an ``ImportError`` that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from None
    return ray


# --------------------------------------------------------------------------- columns


def output_names(columns: Iterable[str], where: str = "the table") -> dict[str, str]:
    """Renames that keep input columns clear of the output columns (``prompt`` -> ``input_prompt``)."""
    columns = list(columns)
    renames = {name: INPUT_PREFIX + name for name in columns if name in OUTPUT_COLUMNS}
    for name, new in renames.items():
        if new in columns:
            raise ValueError(
                f"{where}: has both {name!r} and {new!r}; the output puts a score in {name!r} "
                f"and keeps the input {name!r} as {new!r}, so rename one of them"
            )
    return renames


def check_columns(columns: Iterable[str], where: str = "the table") -> None:
    """Raise ``ValueError`` naming ``where`` and the missing columns."""
    columns = list(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {', '.join(missing)}; a MaSC table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally distractors); it has {', '.join(map(str, columns)) or 'none'}"
        )
    output_names(columns, where)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def _text(value: Any, column: str) -> Optional[str]:
    """A cell as text, ``None`` when empty or missing; anything else than text is an ``InputError``."""
    if _missing(value):
        return None
    if not isinstance(value, str):
        raise InputError(f"{column} must be text, got {type(value).__name__} {value!r}")
    return value if value.strip() else None


def parse_distractors(value: Any) -> tuple[str, ...]:
    """A ``distractors`` cell: a list/array of prompts, one ``|``-separated string, or empty."""
    if _missing(value):
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("|") if part.strip())
    if hasattr(value, "tolist"):  # numpy arrays from Parquet list columns
        value = value.tolist()
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(item for item in value if item.strip())
    raise InputError(
        f"distractors must be a list of prompts or one '|'-separated string, got {type(value).__name__} {value!r}"
    )


# --------------------------------------------------------------------------- reading URIs


class _Fetcher:
    """Local paths for the cells of a batch: relative paths joined to ``base_dir``, remote URIs
    copied into a temporary directory (kept for the last ``keep`` URIs, so a reference used by
    the next batch keeps its path and the actor's encoding cache still serves it)."""

    def __init__(self, base_dir: str, keep: int = 512, threads: int = 8) -> None:
        self.base_dir = base_dir
        self.keep = keep
        self.threads = threads
        self.copies: OrderedDict[str, str] = OrderedDict()  # uri -> local copy
        self.directory: Optional[str] = None

    def resolve(self, values: Iterable[str]) -> dict[str, Any]:
        """Path (or ``InputError``) for each distinct value; remote ones fetched in parallel."""
        values = list(dict.fromkeys(values))
        local = {value: self._local(value) for value in values if not _URI.match(value)}
        remote = [value for value in values if _URI.match(value)]
        if remote:
            with ThreadPoolExecutor(max_workers=min(self.threads, len(remote))) as pool:
                local.update(zip(remote, pool.map(self._fetch_safely, remote)))
        return local

    def original(self, message: str) -> str:
        """An error message with local copies named by their URIs again."""
        for uri, path in self.copies.items():
            message = message.replace(path, uri)
        return message

    def close(self) -> None:
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.copies.clear()

    def _local(self, value: str) -> str:
        path = os.path.expanduser(value)
        return os.path.normpath(path if os.path.isabs(path) else os.path.join(self.base_dir, path))

    def _fetch_safely(self, uri: str) -> Any:
        try:
            return self._fetch(uri)
        except InputError as error:
            return error
        except Exception as error:  # filesystems raise many types (OSError, ArrowInvalid, botocore …)
            return InputError(f"{uri}: cannot be read ({type(error).__name__}: {error})")

    def _fetch(self, uri: str) -> str:
        if uri in self.copies:
            self.copies.move_to_end(uri)
            return self.copies[uri]
        try:
            from pyarrow import fs as pafs

            filesystem, path = pafs.FileSystem.from_uri(uri)
        except Exception:  # a scheme pyarrow does not know: try fsspec (memory://, http:// …)
            filesystem = None
        if filesystem is not None and isinstance(filesystem, pafs.LocalFileSystem):
            return path  # file:// — read in place
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="masc-ray-")
        suffix = "".join(Path(uri.split("?", 1)[0]).suffixes[-1:])
        target = os.path.join(self.directory, hashlib.sha1(uri.encode()).hexdigest()[:20] + suffix)
        if filesystem is not None:
            try:
                info = filesystem.get_file_info(path)
            except Exception as error:
                raise InputError(f"{uri}: cannot be read ({type(error).__name__}: {error})") from None
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{uri}: file not found")
            with filesystem.open_input_stream(path) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
        else:
            import fsspec

            try:
                with fsspec.open(uri, "rb") as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            except FileNotFoundError:
                raise InputError(f"{uri}: file not found") from None
        self.copies[uri] = target
        while len(self.copies) > self.keep:
            _, old = self.copies.popitem(last=False)
            with contextlib.suppress(OSError):
                os.remove(old)
        return target


# --------------------------------------------------------------------------- the actor


@dataclass(frozen=True)
class ModelOptions:
    """``MaSC.from_pretrained`` settings, named as the plugin's ``--masc-*`` options."""

    model: str = DEFAULT_MODEL
    revision: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    max_patches: int = DEFAULT_MAX_PATCHES
    batch_size: Optional[int] = None
    local_files_only: bool = False

    def load(self):
        from ..metric.scorer import MaSC

        return MaSC.from_pretrained(
            self.model, revision=self.revision, device=self.device, dtype=self.dtype,
            max_num_patches=self.max_patches, batch_size=self.batch_size,
            local_files_only=self.local_files_only,
        )


class BatchScorer:
    """The Ray Data actor: one ``MaSC``; each batch (a pandas frame) goes through one
    ``score_many(..., errors="return")`` call, so its distinct images and prompts are encoded
    once and a bad row costs only its own scores.

    Usable on its own: ``ds.map_batches(BatchScorer, fn_constructor_kwargs={"options":
    ModelOptions(...), "base_dir": "/data"}, batch_format="pandas", batch_size=64,
    compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1)``. It returns the batch with the
    output columns added and colliding inputs renamed (see the module docstring); the order
    inside a batch is kept.

    A model that fails to load does not kill the actor in ``__init__`` (Ray would report an
    ``ActorDiedError`` with the cause deep in a traceback): the error is raised by the first
    batch, and :func:`score_table` re-raises it as the original ``ModelLoadError`` (on Ray
    versions with ``DataContext.raise_original_map_exception``; older ones raise Ray's
    error, whose text holds the same message).
    """

    def __init__(self, options: ModelOptions = ModelOptions(), base_dir: Optional[str] = None) -> None:
        self.options = options
        self.fetcher = _Fetcher(os.path.abspath(base_dir or os.getcwd()))
        self.load_error: Optional[BaseException] = None
        try:
            self.masc = options.load()
        except (MaSCError, ValueError) as error:
            self.masc, self.load_error = None, error

    def __call__(self, batch: "pd.DataFrame") -> "pd.DataFrame":
        import numpy as np
        import pandas as pd

        if self.load_error is not None:
            raise self.load_error
        check_columns(batch.columns, "batch")
        rows = len(batch)
        columns = {name: batch[name].tolist() for name in batch.columns if name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        errors: list[Optional[str]] = [None] * rows
        paths = self.fetcher.resolve(
            value for name in IMAGE_COLUMNS for value in columns[name] if isinstance(value, str) and value.strip()
        )
        samples, positions = [], []
        for row in range(rows):
            try:
                samples.append(self._sample({name: values[row] for name, values in columns.items()}, paths))
                positions.append(row)
            except (InputError, TypeError) as error:
                errors[row] = self.fetcher.original(str(error))
        scores = {name: np.full(rows, np.nan) for name in SCORE_COLUMNS}
        for row, result in zip(positions, self.masc.score_many(samples, errors="return")):
            if isinstance(result, Exception):
                errors[row] = self.fetcher.original(str(result))
                continue
            for name in SCORE_COLUMNS:
                scores[name][row] = getattr(result, name)
        out = batch.rename(columns=output_names(batch.columns, "batch"))
        for name in SCORE_COLUMNS:
            out[name] = scores[name]
        out["error"] = pd.Series(errors, index=out.index, dtype=object)  # None, not NaN, for scored rows
        return out

    def _sample(self, row: dict[str, Any], paths: dict[str, Any]) -> Sample:
        sources = []
        for name in IMAGE_COLUMNS:
            value = _text(row[name], name)
            if value is None:
                raise InputError(f"{name} is empty: the {_WHAT[name]} path is missing")
            path = paths[value]
            if isinstance(path, Exception):
                raise path
            sources.append(path)
        prompt = _text(row["prompt"], "prompt")
        if prompt is None:
            raise InputError("prompt is empty")
        return Sample(*sources, prompt, _text(row["subject"], "subject"), parse_distractors(row.get("distractors")))

    def __del__(self) -> None:
        fetcher = getattr(self, "fetcher", None)
        if fetcher is not None:
            fetcher.close()


# --------------------------------------------------------------------------- tables


def read_table(path: str | os.PathLike) -> "pd.DataFrame":
    """A samples table from Parquet (``.parquet``/``.pq``) or CSV (``.csv``), local or a URI.

    CSV cells of the text columns are read as text (empty cells as missing), so a prompt
    like ``1984`` stays a string.
    """
    import pandas as pd

    name = os.fspath(path)
    kind = _table_kind(name)
    try:
        if kind == "parquet":
            return pd.read_parquet(name)
        text = {column: object for column in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        return pd.read_csv(name, dtype=text, keep_default_na=False, na_values={c: [""] for c in text})
    except FileNotFoundError:
        raise InputError(f"{name}: samples table not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{name}: cannot read the samples table as {kind} ({error})") from None


def write_table(table: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Write a scored table as Parquet or CSV (by extension). In CSV, list cells (distractors)
    are joined with ``|``, the form :func:`read_table` reads back."""
    name = os.fspath(path)
    if _table_kind(name) == "parquet":
        table.to_parquet(name, index=False)
        return
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object and table[column].map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).any():
            table[column] = table[column].map(lambda v: v if _missing(v) or isinstance(v, str) else "|".join(list(v)))
    table.to_csv(name, index=False)


def _table_kind(name: str) -> str:
    lower = name.lower().split("?", 1)[0]
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    raise ValueError(f"{name}: unknown table format; use a .parquet, .pq or .csv file")


# --------------------------------------------------------------------------- scoring


@dataclass
class RunInfo:
    """What :func:`score_table` did: for logs and benchmarks."""

    rows: int = 0
    failed: int = 0
    actors: int = 0
    batches: int = 0
    started_ray: bool = False
    init_seconds: float = 0.0
    score_seconds: float = 0.0


def check_resources(ray: Any, *, actors: int, num_gpus: float, num_cpus: float, address: Optional[str]) -> None:
    """Fail before scheduling when the cluster cannot place the actors (Ray would wait forever)."""
    resources = ray.cluster_resources()
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    have_gpus, have_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if num_gpus > 0 and have_gpus < num_gpus * actors:
        raise DeviceError(
            f"--num-gpus={num_gpus:g} per actor x {actors} actor(s) needs {num_gpus * actors:g} GPU(s), but "
            f"{where} has {have_gpus:g}; start GPU nodes first, lower --actors, or score on CPUs with --num-gpus=0"
        )
    if num_cpus > 0 and have_cpus < num_cpus * actors:
        raise DeviceError(
            f"{actors} actor(s) x {num_cpus:g} CPU(s) need {num_cpus * actors:g} CPUs, but {where} has "
            f"{have_cpus:g}; lower --actors or --num-cpus"
        )


def _masc_cause(error: BaseException) -> Optional[MaSCError]:
    """The ``MaSCError`` raised inside an actor, found in Ray's wrapping exceptions."""
    seen = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MaSCError) and type(current).__module__.startswith("pytest_masc"):
            return current
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None


def score_table(
    table: "pd.DataFrame | str | os.PathLike",
    *,
    model: str | os.PathLike = DEFAULT_MODEL,
    revision: Optional[str] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    max_patches: int = DEFAULT_MAX_PATCHES,
    batch_size: Optional[int] = None,
    local_files_only: bool = False,
    address: Optional[str] = None,
    num_gpus: float = 0,
    num_cpus: float = 1,
    actors: Optional[int] = None,
    rows_per_batch: int = 64,
    base_dir: Optional[str | os.PathLike] = None,
    info: Optional[RunInfo] = None,
) -> "pd.DataFrame":
    """Score every row of ``table`` on a Ray actor pool; the scored table, in input order.

    Args:
        table: a pandas frame, or a Parquet/CSV path or URI (see :func:`read_table`).
        model, revision, device, dtype, max_patches, batch_size, local_files_only: the
            model options, as the plugin's ``--masc-*`` ones; ``batch_size`` is images per
            vision forward inside an actor.
        address: Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``…); ``None``
            starts a local Ray instance. An already initialised Ray is used as it is.
        num_gpus, num_cpus: resources reserved per actor (``num_gpus=1`` on GPU clusters).
        actors: actor pool size; ``None``: as many as the cluster fits, at most one per batch.
        rows_per_batch: rows per ``score_many`` call.
        base_dir: directory that relative paths are relative to; ``None``: the table file's
            directory for a path, the working directory for a frame.
        info: filled with counts and timings.

    Raises:
        ValueError: missing or colliding columns, bad options. ``DeviceError``: the cluster
        lacks the requested GPUs/CPUs. ``ModelLoadError``: the model does not load on an actor.
    """
    import pandas as pd

    info = info if info is not None else RunInfo()
    if rows_per_batch < 1:
        raise ValueError(f"rows_per_batch must be positive, got {rows_per_batch}")
    if num_gpus < 0 or num_cpus < 0 or (actors is not None and actors < 1):
        raise ValueError("num_gpus and num_cpus must be >= 0 and actors >= 1")
    if device and str(device).startswith("cuda") and num_gpus <= 0:
        raise DeviceError(
            f"device {device!r} needs --num-gpus > 0: Ray hides the GPUs from actors that reserve none"
        )
    where = "the table"
    if not isinstance(table, pd.DataFrame):
        where = os.fspath(table)
        if base_dir is None and not _URI.match(where):
            base_dir = os.path.dirname(os.path.abspath(where))
        table = read_table(table)
    check_columns(table.columns, where)
    if ROW_COLUMN in table.columns:
        raise ValueError(f"{where}: column {ROW_COLUMN!r} is reserved for the row order")
    base_dir = os.path.abspath(os.fspath(base_dir)) if base_dir is not None else os.getcwd()
    info.rows = len(table)
    renames = output_names(table.columns, where)
    if not len(table):
        out = table.rename(columns=renames)
        for name in SCORE_COLUMNS:
            out[name] = pd.Series(dtype=float)
        out["error"] = pd.Series(dtype=object)
        return out

    ray = import_ray()
    started = time.perf_counter()
    info.started_ray = not ray.is_initialized()
    if info.started_ray:
        start_ray(ray, address)
    info.init_seconds = time.perf_counter() - started
    try:
        chunks = _chunks(table, rows_per_batch)
        info.batches = len(chunks)
        if actors is None:
            resources = ray.cluster_resources()
            fits = (resources.get("GPU", 0) // num_gpus) if num_gpus > 0 else (resources.get("CPU", 1) // max(num_cpus, 1e-9))
            actors = int(max(1, min(fits, len(chunks))))
        info.actors = actors
        check_resources(ray, actors=actors, num_gpus=num_gpus, num_cpus=num_cpus, address=address)
        options = ModelOptions(
            model=os.fspath(model), revision=revision, device=device, dtype=dtype,
            max_patches=max_patches, batch_size=batch_size, local_files_only=local_files_only,
        )
        # Ray Data wraps a UDF's exception in a UserCodeException whose cause does not reach
        # the driver; newer Ray can raise the original, so a ModelLoadError stays one.
        context = ray.data.DataContext.get_current()
        had_flag = hasattr(context, "raise_original_map_exception")
        original_flag = getattr(context, "raise_original_map_exception", None)
        if had_flag:
            context.raise_original_map_exception = True
        dataset = ray.data.from_pandas(chunks).map_batches(
            BatchScorer,
            fn_constructor_kwargs={"options": options, "base_dir": base_dir},
            batch_format="pandas",
            batch_size=rows_per_batch,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=num_gpus,
            num_cpus=num_cpus,
        )
        started = time.perf_counter()
        try:
            scored = dataset.to_pandas()
        except Exception as error:
            cause = _masc_cause(error)
            if cause is not None:
                raise cause from None
            raise
        finally:
            if had_flag:
                context.raise_original_map_exception = original_flag
        info.score_seconds = time.perf_counter() - started
    finally:
        if info.started_ray:
            ray.shutdown()
    return _in_input_order(table, renames, scored, info)


def _chunks(table: "pd.DataFrame", rows_per_batch: int) -> list["pd.DataFrame"]:
    """The scoring columns and the row index, grouped by reference (stable), cut into batches."""
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in table.columns]
    work = table[columns].reset_index(drop=True)
    work.insert(0, ROW_COLUMN, range(len(work)))
    key = work["ref_image"].map(lambda v: "" if _missing(v) else str(v))
    work = work.iloc[key.argsort(kind="stable")]
    return [work.iloc[start:start + rows_per_batch].reset_index(drop=True) for start in range(0, len(work), rows_per_batch)]


def _in_input_order(table: "pd.DataFrame", renames: dict[str, str], scored: "pd.DataFrame", info: RunInfo) -> "pd.DataFrame":
    """The input table (dtypes untouched) with the scores of ``scored`` joined by row index."""
    import numpy as np
    import pandas as pd

    scored = scored.sort_values(ROW_COLUMN, kind="stable")
    order = scored[ROW_COLUMN].to_numpy()
    if len(order) != len(table) or (order != range(len(table))).any():
        raise MaSCError(f"Ray returned {len(order)} scored rows for {len(table)} input rows (internal error)")
    out = table.rename(columns=renames).reset_index(drop=True)
    for name in SCORE_COLUMNS:
        # a block whose rows all failed comes back as nulls (None or pd.NA), not NaN
        out[name] = pd.to_numeric(scored[name]).to_numpy(dtype=np.float64, na_value=np.nan)
    errors = [None if _missing(e) else str(e) for e in scored["error"].tolist()]
    out["error"] = pd.Series(np.array(errors, dtype=object), dtype=object)
    info.failed = sum(e is not None for e in errors)
    return out


def error_rows(scored: "pd.DataFrame") -> list[tuple[int, str]]:
    """``(row, error)`` for each failed row (rows count from 0, as in pandas)."""
    return [(row, error) for row, error in enumerate(scored["error"].tolist()) if error is not None]


__all__ = [
    "BatchScorer", "ModelOptions", "OUTPUT_COLUMNS", "REQUIRED_COLUMNS", "RunInfo", "SCORE_COLUMNS",
    "check_columns", "error_rows", "import_ray", "output_names", "parse_distractors", "read_table",
    "score_table", "write_table",
]
