"""Unit resampling for percentile bootstrap intervals: seeded index chunks, count matrices, the interval."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

#: Resample-count matrices are built in chunks of at most this many elements.
CHUNK_ELEMENTS = 4_000_000


def resample_chunks(n_units: int, n_resamples: int, seed: int, width: int = 1) -> Iterator[np.ndarray]:
    """Resample index chunks ``(b, n_units)``: all chunks together are ``n_resamples`` rows,
    drawn from ``numpy.random.default_rng(seed)`` in order (so chunking never changes them)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, n_units * width))
    done = 0
    while done < n_resamples:
        size = min(per_chunk, n_resamples - done)
        yield rng.integers(0, n_units, size=(size, n_units))
        done += size


def resample_counts(indices: np.ndarray, n_units: int) -> np.ndarray:
    """Multiplicity of each unit in each resample: ``(b, n)`` float64 from ``(b, n)`` indices."""
    b = len(indices)
    offsets = (np.arange(b) * n_units)[:, None]
    return np.bincount((indices + offsets).ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.float64)


def check_bootstrap(n_resamples: int, confidence: float) -> None:
    """A non-positive resample count or a confidence outside ``(0, 1)``: ``ValueError``."""
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite ``stats`` (``(nan, nan)``: none)."""
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


def weighted_interval(evaluate: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int, confidence: float,
                      seed: int, width: int) -> tuple[float, float]:
    """The percentile interval of ``evaluate`` over ``n_resamples`` resamples of ``n`` units, each
    resample a row of count matrices ``(b, n)`` built chunk by chunk (the rows
    :func:`resample_chunks` draws); ``width``: columns per unit ``evaluate`` multiplies, which
    sizes the chunks."""
    check_bootstrap(n_resamples, confidence)
    stats = [evaluate(resample_counts(chunk, n)) for chunk in resample_chunks(n, int(n_resamples), seed, width)]
    return percentile_interval(np.concatenate(stats) if stats else np.zeros(0), confidence)


__all__ = ["CHUNK_ELEMENTS", "check_bootstrap", "percentile_interval", "resample_chunks", "resample_counts", "weighted_interval"]
