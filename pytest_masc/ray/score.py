"""Score a samples table on a Ray actor pool and return the scored table in input order.

:func:`score_table` is a sequence of steps: check the options, read and check the table,
start or join Ray, cut the rows into batches, size and check the actor pool, map the batches
through :class:`~pytest_masc.ray.actor.BatchScorer`, and put the scores back in input order.

To share work, rows are grouped by reference image before being cut into batches (each
distinct reference and prompt is then encoded once per batch, and an actor's reference cache
serves the next batches); a carried row index (:data:`~pytest_masc.ray.schema.ROW_COLUMN`)
restores the order at the end.

A row without ``distractors`` gets a NaN ``prompt_margin``: a table has no concepts to take
other prompts from. :mod:`pytest_masc.ray.export` writes suites' cases as a table with their
defaults resolved (one row per reference) and folds the scored table back into cases.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

from ..errors import DeviceError, MaSCError
from ..metric.options import ModelOptions
from .actor import BatchScorer
from .cluster import check_resources, fitting_actors, import_ray, ray_running
from .fetch import is_uri
from .schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, ROW_COLUMN, SCORE_COLUMNS, check_columns, is_missing, output_names
from .tables import read_table

if TYPE_CHECKING:
    import pandas as pd


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


def score_table(
    table: "pd.DataFrame | str | os.PathLike",
    *,
    options: Optional[ModelOptions] = None,
    model: Optional[str | os.PathLike] = None,
    revision: Optional[str] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    max_num_patches: Optional[int] = None,
    batch_size: Optional[int] = None,
    local_files_only: Optional[bool] = None,
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
        table: a pandas frame, or a Parquet/CSV path or URI (see :func:`~pytest_masc.ray.tables.read_table`).
        options: the model options (:class:`~pytest_masc.metric.options.ModelOptions`), or
        model, revision, device, dtype, max_num_patches, batch_size, local_files_only: the
            same one by one (left out: the defaults), not both; ``batch_size`` is images per
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
    info = info if info is not None else RunInfo()
    options = _model_options(options, model=model, revision=revision, device=device, dtype=dtype,
                             max_num_patches=max_num_patches, batch_size=batch_size, local_files_only=local_files_only)
    _check_options(rows_per_batch=rows_per_batch, num_gpus=num_gpus, num_cpus=num_cpus, actors=actors,
                   device=options.device)
    table, where, base_dir = _read_input(table, base_dir)
    _check_table(table, where)
    base_dir = os.path.abspath(os.fspath(base_dir)) if base_dir is not None else os.getcwd()
    info.rows = len(table)
    renames = output_names(table.columns, where)
    if not len(table):
        return _empty_result(table, renames)

    ray = import_ray()
    clock = time.perf_counter()
    with ray_running(ray, address) as started_ray:
        info.started_ray, info.init_seconds = started_ray, time.perf_counter() - clock
        chunks = _chunks(table, rows_per_batch)
        info.batches = len(chunks)
        info.actors = actors if actors is not None else fitting_actors(
            ray, num_gpus=num_gpus, num_cpus=num_cpus, batches=len(chunks))
        check_resources(ray, actors=info.actors, num_gpus=num_gpus, num_cpus=num_cpus, address=address)
        with _scoring_data_context(ray):
            dataset = _scoring_dataset(ray, chunks, options, base_dir, actors=info.actors, num_gpus=num_gpus,
                                       num_cpus=num_cpus, rows_per_batch=rows_per_batch)
            clock = time.perf_counter()
            scored = _collect(dataset)
            info.score_seconds = time.perf_counter() - clock
    return _in_input_order(table, renames, scored, info)


def _model_options(options: Optional[ModelOptions], **given: Any) -> ModelOptions:
    """``options``, or one built from the model keywords given one by one; a ``ValueError`` for both."""
    given = {name: value for name, value in given.items() if value is not None}
    if options is None:
        return ModelOptions(**given)
    if given:
        raise ValueError(f"give the model options as options= or one by one, not both (also given: {', '.join(given)})")
    return options


def _check_options(*, rows_per_batch: int, num_gpus: float, num_cpus: float, actors: Optional[int],
                   device: Optional[str]) -> None:
    """``ValueError`` for a bad number, ``DeviceError`` for a CUDA device without GPUs reserved."""
    if rows_per_batch < 1:
        raise ValueError(f"rows_per_batch must be positive, got {rows_per_batch}")
    if num_gpus < 0 or num_cpus < 0 or (actors is not None and actors < 1):
        raise ValueError("num_gpus and num_cpus must be >= 0 and actors >= 1")
    if device and str(device).startswith("cuda") and num_gpus <= 0:
        raise DeviceError(
            f"device {device!r} needs --num-gpus > 0: Ray hides the GPUs from actors that reserve none"
        )


def _read_input(table: Any, base_dir: Any) -> tuple["pd.DataFrame", str, Any]:
    """The table as a frame, the name errors call it by, and ``base_dir`` (for a local table
    file and no ``base_dir``: the file's directory)."""
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table, "the table", base_dir
    where = os.fspath(table)
    if base_dir is None and not is_uri(where):
        base_dir = os.path.dirname(os.path.abspath(where))
    return read_table(table), where, base_dir


def _check_table(table: "pd.DataFrame", where: str) -> None:
    """The samples columns are there and the row-order column is not."""
    check_columns(table.columns, where)
    if ROW_COLUMN in table.columns:
        raise ValueError(f"{where}: column {ROW_COLUMN!r} is reserved for the row order")


def _empty_result(table: "pd.DataFrame", renames: dict[str, str]) -> "pd.DataFrame":
    """A table without rows, with the output columns (no Ray started)."""
    import pandas as pd

    out = table.rename(columns=renames)
    for name in SCORE_COLUMNS:
        out[name] = pd.Series(dtype=float)
    out["error"] = pd.Series(dtype=object)
    return out


def _chunks(table: "pd.DataFrame", rows_per_batch: int) -> list["pd.DataFrame"]:
    """The scoring columns and the row index, grouped by reference (stable), cut into batches."""
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in table.columns]
    work = table[columns].reset_index(drop=True)
    work.insert(0, ROW_COLUMN, range(len(work)))
    key = work["ref_image"].map(lambda v: "" if is_missing(v) else str(v))
    work = work.iloc[key.argsort(kind="stable")]
    return [work.iloc[start:start + rows_per_batch].reset_index(drop=True) for start in range(0, len(work), rows_per_batch)]


#: Ray Data settings for a scoring run -> the value they take during it, where this Ray has them:
#: the UDF's own exception reaches the driver (a ``ModelLoadError`` stays one, not a
#: ``UserCodeException``), and list columns (``distractors``) stay lists of prompts (Ray 2.40
#: otherwise tries to cast equal-length lists of strings to its tensor type and fails)
SCORING_DATA_CONTEXT = {"raise_original_map_exception": True, "enable_tensor_extension_casting": False}


@contextlib.contextmanager
def _scoring_data_context(ray: Any) -> Iterator[None]:
    """:data:`SCORING_DATA_CONTEXT` set on Ray Data's current context for the block (and the
    datasets made inside it), each setting restored after."""
    context = ray.data.DataContext.get_current()
    previous = {name: getattr(context, name) for name in SCORING_DATA_CONTEXT if hasattr(context, name)}
    for name in previous:
        setattr(context, name, SCORING_DATA_CONTEXT[name])
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(context, name, value)


def _scoring_dataset(ray: Any, chunks: list["pd.DataFrame"], options: ModelOptions, base_dir: str, *,
                     actors: int, num_gpus: float, num_cpus: float, rows_per_batch: int) -> Any:
    """The (lazy) Ray dataset of ``chunks`` mapped through a pool of ``actors`` BatchScorers."""
    return ray.data.from_pandas(chunks).map_batches(
        BatchScorer,
        fn_constructor_kwargs={"options": options, "base_dir": base_dir},
        batch_format="pandas",
        batch_size=rows_per_batch,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=num_gpus,
        num_cpus=num_cpus,
    )


def _collect(dataset: Any) -> "pd.DataFrame":
    """Run ``dataset`` to one frame; a ``MaSCError`` raised in an actor is re-raised as itself."""
    try:
        return dataset.to_pandas()
    except Exception as error:
        cause = _masc_cause(error)
        if cause is not None:
            raise cause from None
        raise


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
    errors = [None if is_missing(e) else str(e) for e in scored["error"].tolist()]
    out["error"] = pd.Series(np.array(errors, dtype=object), dtype=object)
    info.failed = sum(e is not None for e in errors)
    return out


def error_rows(scored: "pd.DataFrame") -> list[tuple[int, str]]:
    """``(row, error)`` for each failed row of a scored table (rows count from 0, as in pandas)."""
    return [(row, error) for row, error in enumerate(scored["error"].tolist()) if error is not None]


__all__ = ["RunInfo", "error_rows", "score_table"]
