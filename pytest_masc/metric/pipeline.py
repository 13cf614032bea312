"""One ``score_many`` call: plan the work, encode each distinct image and text once, score.

1. every distinct prompt text (stripped, full, distractors) is encoded once, in batches;
2. every distinct image (by path + mtime, or by content hash) is encoded once: images are
   read and preprocessed by worker threads while the vision tower runs the previous
   batch;
3. a sample is scored as soon as both of its images are encoded, and an image's tokens
   are dropped as soon as no pending sample needs them, so memory stays bounded by the
   batch size and the references in flight, not by the number of samples.

:class:`ScoreRun` schedules that work; :class:`~pytest_masc.metric.group_scorer.GroupScorer`
lays each group of ready samples out for :func:`~pytest_masc.metric.functional.masc_scores`,
the formula, and reads it back once.
A sample's scores do not depend on what else is scored: every tensor it touches has a shape
set by the sample alone (images in the encoder's ``token_slots`` rows, foreground rows in
``group_scorer.ROW_BLOCK``-row blocks), and the run keeps one torch thread count throughout.

The encoders and the cache (:mod:`pytest_masc.metric.encoders`) are used through their
public methods only.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..errors import InputError, MaSCError
from .encoders import EncodeStats, Encoding, EncodingCache, ImageEncoder, MaskRequest, Pixels, TextEncoder
from .group_scorer import GroupScorer
from .inputs import source_key
from .text import StrippedPrompt, strip_subject
from ..types import Sample

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Concurrency:
    """How a run spreads its work: ``readers`` threads read and preprocess images,
    ``encode_streams`` vision forwards run side by side, each on ``stream_threads`` torch
    intra-op threads (``None``: leave torch's setting)."""

    readers: int
    encode_streams: int
    stream_threads: Optional[int]


@dataclass(frozen=True)
class Encoders:
    """What a run encodes and scores with: the two towers' encoders, the reference cache,
    the foreground threshold and the counters to update."""

    images: ImageEncoder
    texts: TextEncoder
    cache: EncodingCache
    fg_threshold: float
    stats: EncodeStats


@contextlib.contextmanager
def intra_op_threads(count: Optional[int]):
    """Set torch's intra-op thread count for the block (``None``: leave it), then restore it."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class TextPlan:
    """The texts of a run: per sample its stripped prompt and stripped distractors."""

    stripped: list[StrippedPrompt]
    distractors: list[list[str]]
    texts: list[str]  # every distinct text to encode, first use first

    @classmethod
    def of(cls, samples: list[Sample]) -> "TextPlan":
        stripped, distractor_texts, texts = [], [], []
        memo: dict[tuple[str, Optional[str]], StrippedPrompt] = {}  # a prompt recurs once per method

        def strip(text: str, subject: Optional[str]) -> StrippedPrompt:
            if (text, subject) not in memo:
                memo[text, subject] = strip_subject(text, subject)
            return memo[text, subject]

        for sample in samples:
            # A blank subject strips nothing and keeps the prompt as given, as the paper's code does.
            subject = sample.subject if sample.subject and sample.subject.strip() else None
            prompt = strip(sample.prompt, subject)
            stripped.append(prompt)
            distractors = [strip(d, subject).text for d in sample.distractors]
            distractor_texts.append(distractors)
            texts += [prompt.text, sample.prompt, *distractors]
        return cls(stripped, distractor_texts, list(dict.fromkeys(texts)))


@dataclass
class ImagePlan:
    """The images of a run, keyed by :func:`~pytest_masc.metric.inputs.source_key`, in the
    order that puts each reference next to its outputs, with the samples waiting on each."""

    ref_keys: list[tuple]
    out_keys: list[tuple]
    ref_mask_keys: list[tuple]
    out_mask_keys: list[tuple]
    sources: dict[tuple, tuple[Any, str]] = field(default_factory=dict)  # image key -> (source, what)
    masks_of: dict[tuple, dict[tuple, tuple[Any, str]]] = field(default_factory=lambda: defaultdict(dict))
    waiting: dict[tuple, list[int]] = field(default_factory=lambda: defaultdict(list))  # image key -> samples
    remaining: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))  # image key -> samples not done

    @classmethod
    def of(cls, samples: list[Sample]) -> "ImagePlan":
        memo: dict[Any, tuple] = {}  # a reference recurs in every sample of its concept

        def key(source: Any) -> tuple:
            # The same path (stat once), or the same object (hashed once): samples keep it alive.
            handle = os.fspath(source) if isinstance(source, (str, os.PathLike)) else id(source)
            if handle not in memo:
                memo[handle] = source_key(source)
            return memo[handle]

        plan = cls(
            ref_keys=[key(s.ref_image) for s in samples],
            out_keys=[key(s.out_image) for s in samples],
            ref_mask_keys=[key(s.ref_mask) for s in samples],
            out_mask_keys=[key(s.out_mask) for s in samples],
        )
        first_seen: dict[tuple, int] = {}
        for index, key in enumerate(plan.ref_keys):
            first_seen.setdefault(key, index)
        order = sorted(range(len(samples)), key=lambda i: (first_seen[plan.ref_keys[i]], i))
        for index in order:
            sample = samples[index]
            plan._add(index, plan.ref_keys[index], sample.ref_image, plan.ref_mask_keys[index], sample.ref_mask, "reference")
            plan._add(index, plan.out_keys[index], sample.out_image, plan.out_mask_keys[index], sample.out_mask, "output")
        return plan

    def _add(self, index: int, key: tuple, image: Any, mask_key: tuple, mask: Any, role: str) -> None:
        self.sources.setdefault(key, (image, f"{role} image"))
        self.masks_of[key].setdefault(mask_key, (mask, f"{role} mask"))
        self.waiting[key].append(index)
        self.remaining[key] += 1

    def mask_requests(self, key: tuple) -> list[MaskRequest]:
        return [(mask_key, mask, what) for mask_key, (mask, what) in self.masks_of[key].items()]


class ScoreRun:
    """The state of one ``score_many`` call; :meth:`run` returns one result per sample."""

    def __init__(self, samples: list[Sample], encoders: Encoders, concurrency: Concurrency, *,
                 progress: Optional[ProgressCallback], errors: str) -> None:
        self.samples = samples
        self.encoders = encoders
        self.concurrency = concurrency
        self.progress = progress
        self.errors = errors
        self.results: list[Any] = [None] * len(samples)
        self.texts = TextPlan.of(samples)
        self.images = ImagePlan.of(samples)
        self.text_embedding: dict[str, torch.Tensor] = {}  # filled when the run starts
        self.encoded: dict[tuple, Encoding] = {}  # image key -> encoding, until no sample needs it
        self.is_reference = set(self.images.ref_keys)
        self.is_output = set(self.images.out_keys)
        self.scorer = GroupScorer(self)

    def run(self) -> list[Any]:
        # The whole run on one intra-op thread count: BLAS kernels may round differently
        # with another, and a sample must score the same whenever it is scored.
        with intra_op_threads(self.concurrency.stream_threads):
            self.text_embedding.update(self.encoders.texts.encode(self.texts.texts))
            to_encode = self._take_cached()
            started = time.perf_counter()
            try:
                self._encode_all(to_encode)
            finally:
                self.encoders.stats.encode_seconds += time.perf_counter() - started
        for index, result in enumerate(self.results):
            if result is None:  # every sample is scored or holds its error by now; guard the invariant
                raise MaSCError(f"sample {index} was never scored (internal error)")
        return self.results

    # -- encoding

    def _take_cached(self) -> list[tuple]:
        """Serve cached references, score what they complete; the image keys left to encode."""
        to_encode = []
        for key in self.images.sources:
            cached = self.encoders.cache.get(key, list(self.images.masks_of[key]))
            if cached is not None:
                self.encoded[key] = cached
                self.encoders.stats.images_cached += 1
            else:
                to_encode.append(key)
        ready = {i for key in self.encoded for i in self.images.waiting[key]}
        self._score_ready(sorted(ready))
        return to_encode

    def _encode_all(self, to_encode: list[tuple]) -> None:
        """A bounded window of images is read ahead while the vision tower runs; on CPU,
        several single-threaded forwards run side by side (faster there than one
        multi-threaded forward), and finished batches are scored in order."""
        images, workers = self.encoders.images, self.concurrency
        lookahead = 2 * images.batch_size * workers.encode_streams + workers.readers
        with ThreadPoolExecutor(max_workers=workers.readers, thread_name_prefix="masc-read") as readers, \
                ThreadPoolExecutor(max_workers=workers.encode_streams, thread_name_prefix="masc-encode") as encoder:
            upcoming = iter(to_encode)
            pending = deque((key, readers.submit(self._prepare, key)) for key in itertools.islice(upcoming, lookahead))
            in_flight: deque = deque()
            done = 0
            batch: list[tuple[tuple, Pixels]] = []
            while pending or batch or in_flight:
                if pending:
                    key, future = pending.popleft()
                    for next_key in itertools.islice(upcoming, 1):
                        pending.append((next_key, readers.submit(self._prepare, next_key)))
                    pixels = future.result()
                    if isinstance(pixels, Exception):
                        self._fail_image(key, pixels)
                    else:
                        batch.append((key, pixels))
                if batch and (len(batch) >= images.batch_size or not pending):
                    in_flight.append((batch, encoder.submit(self._encode_in_stream, batch)))
                    batch = []
                while in_flight and (len(in_flight) >= workers.encode_streams or not pending):
                    finished, encodings = in_flight.popleft()
                    done += self._finish_batch(finished, encodings.result())
                    if self.progress:
                        self.progress(done, len(to_encode))

    def _prepare(self, key: tuple) -> Any:
        """Reader thread: the image's :class:`Pixels`, or the ``InputError`` reading it raised."""
        image, what = self.images.sources[key]
        try:
            return self.encoders.images.prepare(image, what, self.images.mask_requests(key))
        except InputError as error:
            return error

    def _fail_image(self, key: tuple, error: Exception) -> None:
        if self.errors == "raise":
            raise error
        for index in self.images.waiting[key]:
            if self.results[index] is None:
                self.results[index] = error
                self._release(index)

    def _encode_in_stream(self, batch: list[tuple[tuple, Pixels]]) -> list[Encoding]:
        """Encoder thread: one vision forward (inference mode is per thread)."""
        with torch.inference_mode():
            return self.encoders.images.encode([pixels for _, pixels in batch])

    def _finish_batch(self, batch: list[tuple[tuple, Pixels]], encodings: list[Encoding]) -> int:
        """Main thread: keep a batch's encodings, cache references, score what became ready."""
        self.encoders.stats.images_encoded += len(batch)
        candidates = set()
        for (key, _), encoding in zip(batch, encodings):
            # Keys and values serve only an output's background pool: kept for outputs, per run.
            if encoding.keys_values is not None and key in self.is_output:
                self.scorer.keys_values[key] = encoding.keys_values
            encoding.keys_values = None
            self.encoded[key] = encoding
            if key in self.is_reference:
                self.encoders.cache.put(key, encoding)
            candidates.update(self.images.waiting[key])
        self._score_ready(sorted(candidates))
        return len(batch)

    def _release(self, index: int) -> None:
        """Sample ``index`` is done: drop the encodings (and grid masks) no pending sample needs."""
        plan = self.images
        for key in (plan.ref_keys[index], plan.out_keys[index]):
            plan.remaining[key] -= 1
            if plan.remaining[key] == 0:
                self.encoded.pop(key, None)
                self.scorer.forget(key)

    # -- scoring

    def _score_ready(self, candidates: list[int]) -> None:
        plan = self.images
        ready = [
            i for i in candidates
            if self.results[i] is None and plan.ref_keys[i] in self.encoded and plan.out_keys[i] in self.encoded
        ]
        for index in ready:
            masks = (self.encoded[plan.ref_keys[index]].masks[plan.ref_mask_keys[index]],
                     self.encoded[plan.out_keys[index]].masks[plan.out_mask_keys[index]])
            error = next((mask for mask in masks if isinstance(mask, InputError)), None)
            if error is not None:
                if self.errors == "raise":
                    raise error
                self.results[index] = error
                self._release(index)
        ready = [i for i in ready if self.results[i] is None]
        if not ready:
            return
        for index, score in zip(ready, self.scorer.score(ready)):
            self.results[index] = score
            self._release(index)
