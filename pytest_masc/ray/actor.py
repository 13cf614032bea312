"""The Ray Data actor that scores batches of table rows with one ``MaSC``, loaded from
:class:`~pytest_masc.metric.options.ModelOptions`."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from ..errors import InputError, MaSCError
from ..metric.options import ModelOptions
from ..types import Sample
from .fetch import Fetcher
from .schema import (
    IMAGE_COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, SCORE_COLUMNS, cell_text, check_columns, output_names,
    parse_distractors,
)

if TYPE_CHECKING:
    import pandas as pd

_WHAT = {"ref_image": "reference image", "ref_mask": "reference mask",
         "out_image": "output image", "out_mask": "output mask"}


class BatchScorer:
    """The Ray Data actor: one ``MaSC``; each batch (a pandas frame) goes through one
    ``score_many(..., errors="return")`` call, so its distinct images and prompts are encoded
    once and a bad row costs only its own scores.

    Usable on its own: ``ds.map_batches(BatchScorer, fn_constructor_kwargs={"options":
    ModelOptions(...), "base_dir": "/data"}, batch_format="pandas", batch_size=64,
    compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1)``. It returns the batch with the
    output columns added and colliding inputs renamed (see :mod:`pytest_masc.ray.schema`); the
    order inside a batch is kept.

    A model that fails to load does not kill the actor in ``__init__`` (Ray would report an
    ``ActorDiedError`` with the cause deep in a traceback): the error is raised by the first
    batch, and :func:`~pytest_masc.ray.score.score_table` re-raises it as the original
    ``ModelLoadError`` (on Ray versions with ``DataContext.raise_original_map_exception``;
    older ones raise Ray's error, whose text holds the same message).
    """

    def __init__(self, options: ModelOptions = ModelOptions(), base_dir: Optional[str] = None) -> None:
        self.options = options
        self.fetcher = Fetcher(os.path.abspath(base_dir or os.getcwd()))
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
            value = cell_text(row[name], name)
            if value is None:
                raise InputError(f"{name} is empty: the {_WHAT[name]} path is missing")
            path = paths[value]
            if isinstance(path, Exception):
                raise path
            sources.append(path)
        prompt = cell_text(row["prompt"], "prompt")
        if prompt is None:
            raise InputError("prompt is empty")
        return Sample(*sources, prompt, cell_text(row["subject"], "subject"), parse_distractors(row.get("distractors")))

    def __del__(self) -> None:
        fetcher = getattr(self, "fetcher", None)
        if fetcher is not None:
            fetcher.close()


__all__ = ["BatchScorer", "ModelOptions"]
