"""Score a list of :class:`~pytest_masc.types.Sample` on Ray for ``--masc-ray``: :func:`parse_address`
reads the option's address, and :class:`RayScorer` has ``MaSC.score_many``'s signature, so code
that takes a ``MaSC`` (the benchmark protocols, the plugin) can score through
:func:`pytest_masc.ray.score_table` instead. Ray is imported only when scoring starts."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

from ..errors import InputError, MaSCError
from ..types import Sample, Score
from ..metric.options import ModelOptions
from .cluster import import_ray, ray_running
from .score import score_table

_ADDRESS = re.compile(r"local|auto|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+")


def parse_address(value: str) -> Optional[str]:
    """``local`` -> ``None`` (a local Ray); ``auto``, ``ray://HOST:PORT`` and ``HOST:PORT``
    as they are; anything else is a ``ValueError`` saying what is accepted."""
    text = str(value).strip()
    if not _ADDRESS.fullmatch(text):
        raise ValueError(
            f"{value!r} is not a Ray address: use local (start a local Ray), auto (the cluster this "
            "machine belongs to), ray://HOST:PORT or HOST:PORT"
        )
    return None if text == "local" else text


def _path(value: Any, what: str) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.path.abspath(os.fspath(value))
    raise InputError(f"{what}: Ray scoring needs a file path, got {type(value).__name__}")


@dataclass
class RayScorer:
    """``score_many`` on a Ray actor pool (one ``MaSC`` per actor) with the given model
    options; ``address=None`` starts a local Ray. Actors reserve one GPU each when ``device``
    is CUDA, or when it is unset and the cluster has GPUs."""

    options: ModelOptions = field(default_factory=ModelOptions)
    address: Optional[str] = None
    rows_per_batch: int = 64

    def score_many(
        self,
        samples: Sequence[Sample],
        *,
        progress: Optional[Callable[[int, int], None]] = None,
        errors: str = "return",
    ) -> list[Any]:
        """One result per sample: a ``Score``, or (``errors="return"``) the ``MaSCError`` of a
        sample that could not be scored; ``errors="raise"`` raises the first one."""
        import pandas as pd

        results: list[Any] = [None] * len(samples)
        rows, positions = [], []
        for index, sample in enumerate(samples):
            try:
                rows.append({
                    "ref_image": _path(sample.ref_image, "reference image"),
                    "ref_mask": _path(sample.ref_mask, "reference mask"),
                    "out_image": _path(sample.out_image, "output image"),
                    "out_mask": _path(sample.out_mask, "output mask"),
                    "prompt": sample.prompt, "subject": sample.subject, "distractors": list(sample.distractors),
                })
                positions.append(index)
            except InputError as error:
                results[index] = error
        if rows:
            ray = import_ray()
            with ray_running(ray, self.address, "--masc-ray"):
                scored = score_table(pd.DataFrame(rows), **self._table_options(ray))
            for index, row in zip(positions, scored.to_dict("records")):
                results[index] = self._result(row)
        if progress is not None:
            progress(len(samples), len(samples))
        if errors == "raise":
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    def _table_options(self, ray: Any) -> dict[str, Any]:
        device = self.options.device
        gpu = bool(device and device.startswith("cuda")) or (
            device is None and float(ray.cluster_resources().get("GPU", 0)) >= 1
        )
        if gpu and device:
            device = "cuda"  # an actor sees only its own GPU, as cuda:0
        return dict(
            options=replace(self.options, device=device), address=self.address, num_gpus=1 if gpu else 0, rows_per_batch=self.rows_per_batch,
        )

    @staticmethod
    def _result(row: dict[str, Any]) -> Any:
        error = row.get("error")
        if error is not None and not (isinstance(error, float) and math.isnan(error)):
            return MaSCError(str(error))
        return Score(
            concept=float(row["concept"]), prompt=float(row["prompt"]),
            global_concept=float(row["global_concept"]), global_prompt=float(row["global_prompt"]),
            prompt_margin=float(row["prompt_margin"]),
        )


__all__ = ["RayScorer", "parse_address"]
