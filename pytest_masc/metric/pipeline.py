"""One ``score_many`` call: plan the work, encode each distinct image and text once, score.

1. every distinct prompt text (stripped, full, distractors) is encoded once, in batches;
2. every distinct image (by path + mtime, or by content hash) is encoded once: images are
   read and preprocessed by worker threads while the vision tower runs the previous
   batch;
3. a sample is scored as soon as both of its images are encoded, and an image's tokens
   are dropped as soon as no pending sample needs them, so memory stays bounded by the
   batch size and the references in flight, not by the number of samples.

:class:`ScoreRun` schedules that work; :class:`GroupScorer` lays each group of ready samples
out for :func:`~pytest_masc.metric.functional.masc_scores`, the formula, and reads it back once.
A sample's scores do not depend on what else is scored: every tensor it touches has a shape
set by the sample alone (images in the encoder's ``token_slots`` rows, foreground rows in
``ROW_BLOCK``-row blocks), and the run keeps one torch thread count throughout.

The encoders and the cache (:mod:`pytest_masc.metric.encoders`) are used through their
public methods only.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import functional
from ..errors import InputError, MaSCError
from .encoders import EncodeStats, Encoding, EncodingCache, ImageEncoder, MaskRequest, Pixels, TextEncoder
from .inputs import source_key
from .text import StrippedPrompt, strip_subject
from ..types import Sample, Score

ProgressCallback = Callable[[int, int], None]

#: A sample's foreground rows are compared in blocks of this many rows (zero rows fill the
#: last block): the product's shape then depends on the sample alone, not on its group.
ROW_BLOCK = 64


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


def _slots(images: ImageEncoder, rows: list[torch.Tensor]) -> int:
    """Rows per image when images are padded together: the encoder's fixed ``token_slots``."""
    return max(images.token_slots, *(len(r) for r in rows))


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


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


class GroupScorer:
    """Scores the samples of a :class:`ScoreRun` whose images are encoded, a group at a time:
    lays the group out in fixed slots for :func:`~pytest_masc.metric.functional.masc_scores`
    (the formula), reads its scores back in one transfer and builds each :class:`Score`.

    Keeps what scoring reads per image, until the run releases the image: masks on the patch
    grid per (image, mask) and outputs' pooling-head keys and values.
    """

    def __init__(self, run: ScoreRun) -> None:
        self.samples, self.texts, self.images = run.samples, run.texts, run.images
        self.encoded, self.text_embedding, self.encoders = run.encoded, run.text_embedding, run.encoders
        self.grid_masks: dict[tuple, GridMask] = {}  # (image key, mask key) -> its mask on the grid
        self.keys_values: dict[tuple, torch.Tensor] = {}  # output image key -> (Hp * Wp, 2D)

    def forget(self, image_key: tuple) -> None:
        """Drop what is kept of an image no pending sample needs."""
        self.keys_values.pop(image_key, None)
        for mask_key in self.images.masks_of[image_key]:
            self.grid_masks.pop((image_key, mask_key), None)

    def _grid_mask(self, image_key: tuple, mask_key: tuple) -> "GridMask":
        """The mask on the image's patch grid, resized and counted once per (image, mask): a
        reference shared by many outputs is not resized again for each."""
        key = (image_key, mask_key)
        if key not in self.grid_masks:
            encoding = self.encoded[image_key]
            weights = functional.mask_to_grid(torch.from_numpy(encoding.masks[mask_key][0]), encoding.grid)
            self.grid_masks[key] = GridMask(weights, self.encoders.fg_threshold)
        return self.grid_masks[key]

    def _keys_values(self, out_key: tuple) -> torch.Tensor:
        """``(N, 2D)`` keys and values of an output's tokens: the forward's, or, for a cached
        reference scored as an output, projected here from its tokens alone as the forward does."""
        if out_key not in self.keys_values:
            head = self.encoders.images.vision_model.head
            self.keys_values[out_key] = functional.pool_keys_values(head, self.encoded[out_key].tokens[None])[0]
        return self.keys_values[out_key]

    @property
    def _chunk_size(self) -> int:
        """Samples whose padded tensors are on the device at once."""
        return max(self.encoders.images.batch_size, 8)

    def score(self, ready: list[int]) -> list[Score]:
        """Scores of samples whose images are encoded. Samples with the same foreground-row
        block are laid out together (at most ``_chunk_size``); every group's
        :func:`~pytest_masc.metric.functional.masc_scores` is queued before any is read back,
        one transfer per group, so a GPU never waits on each sample."""
        plan = self.images
        blocks: dict[int, list[int]] = defaultdict(list)
        for index in ready:
            blocks[self._grid_mask(plan.ref_keys[index], plan.ref_mask_keys[index]).row_block].append(index)
        head = self.encoders.images.vision_model.head
        queued = [
            (chunk, functional.masc_scores(head, self._layout(chunk, block), self.encoders.fg_threshold))
            for block, members in blocks.items() for chunk in _chunks(members, self._chunk_size)
        ]
        scores = {}
        for chunk, group_scores in queued:
            host = group_scores.to_host()
            values = zip(host.concept.tolist(), host.prompt.tolist(), host.prompt_margin.tolist(),
                         host.global_concept.tolist(), host.global_prompt.tolist(), host.distractors.tolist(),
                         host.best_match.to(torch.float32).numpy())
            for index, numbers in zip(chunk, values):
                scores[index] = self._score(index, *numbers)
        return [scores[index] for index in ready]

    def _layout(self, chunk: list[int], block: int) -> functional.GroupInputs:
        """The chunk's samples in fixed slots (:class:`~pytest_masc.metric.functional.GroupInputs`):
        references' foreground rows in ``block`` rows, outputs in the encoder's ``token_slots``,
        at least one distractor slot."""
        return functional.GroupInputs(**self._reference_rows(chunk, block), **self._output_rows(chunk),
                                      **self._text_rows(chunk))

    def _reference_rows(self, chunk: list[int], block: int) -> dict[str, torch.Tensor]:
        """``ref_rows``, ``ref_rows_own``, ``ref_pooled``: each distinct (reference, mask)
        gathered once, then picked per sample."""
        plan = self.images
        pairs = [(plan.ref_keys[index], plan.ref_mask_keys[index]) for index in chunk]
        distinct = {pair: slot for slot, pair in enumerate(dict.fromkeys(pairs))}
        units = [self.encoded[key].unit for key, _ in distinct]
        rows, own = functional.pad_rows(
            [unit.index_select(0, torch.from_numpy(self._grid_mask(*pair).rows).to(unit.device))
             for unit, pair in zip(units, distinct)], block)
        pooled = torch.stack([self.encoded[key].pooled for key, _ in distinct])
        which = torch.tensor([distinct[pair] for pair in pairs], device=rows.device)
        return {"ref_rows": rows[which], "ref_rows_own": own[which], "ref_pooled": pooled[which]}

    def _output_rows(self, chunk: list[int]) -> dict[str, torch.Tensor]:
        """``out_unit``, ``out_own``, ``out_keys_values``, ``out_weights``, ``out_pooled``."""
        plan = self.images
        outs = [self.encoded[plan.out_keys[index]] for index in chunk]
        slots = _slots(self.encoders.images, [out.tokens for out in outs])
        unit, own = functional.pad_rows([out.unit for out in outs], slots)
        keys_values, _ = functional.pad_rows([self._keys_values(plan.out_keys[index]) for index in chunk], slots)
        weights, _ = functional.pad_rows(
            [self._grid_mask(plan.out_keys[index], plan.out_mask_keys[index]).weights for index in chunk], slots)
        return {"out_unit": unit, "out_own": own, "out_keys_values": keys_values,
                "out_weights": weights.to(unit.device), "out_pooled": torch.stack([out.pooled for out in outs])}

    def _text_rows(self, chunk: list[int]) -> dict[str, torch.Tensor]:
        """``prompt``, ``full_prompt``, ``distractors``, ``distractors_own``: picked from one
        table of the chunk's distinct texts."""
        stripped, distractors = self.texts.stripped, self.texts.distractors
        table = {text: slot for slot, text in enumerate(dict.fromkeys(
            text for index in chunk for text in (stripped[index].text, self.samples[index].prompt, *distractors[index])))}
        embeddings = torch.stack([self.text_embedding[text] for text in table])
        width = max(1, *(len(distractors[index]) for index in chunk))
        slots = [[table[text] for text in distractors[index]] + [0] * (width - len(distractors[index])) for index in chunk]
        own = [[k < len(distractors[index]) for k in range(width)] for index in chunk]
        return {
            "prompt": embeddings[[table[stripped[index].text] for index in chunk]],
            "full_prompt": embeddings[[table[self.samples[index].prompt] for index in chunk]],
            "distractors": embeddings[torch.tensor(slots, device=embeddings.device)],
            "distractors_own": torch.tensor(own, device=embeddings.device),
        }

    def _score(self, index: int, concept: float, prompt: float, margin: float, global_concept: float,
               global_prompt: float, distractors: list[float], best_match: np.ndarray) -> Score:
        """The :class:`Score` of sample ``index`` from its row of its group's scores (on the
        host): ``best_match`` holds its foreground rows' best-match cosines first."""
        plan, sample, stripped = self.images, self.samples[index], self.texts.stripped[index]
        ref, out = self.encoded[plan.ref_keys[index]], self.encoded[plan.out_keys[index]]
        ref_mask = self._grid_mask(plan.ref_keys[index], plan.ref_mask_keys[index])
        out_mask = self._grid_mask(plan.out_keys[index], plan.out_mask_keys[index])
        concept_map = np.full(ref_mask.patches, np.nan, dtype=np.float32)
        concept_map[ref_mask.rows] = best_match[:len(ref_mask.rows)]
        texts = (stripped.text, sample.prompt, *self.texts.distractors[index])
        extras = {
            "prompt_text": stripped.text,
            "subject_found": stripped.subject_found,
            "prompt_stripped": stripped.text.split() != sample.prompt.split(),
            "prompt_truncated": any(self.encoders.texts.truncated(text) for text in texts),
            "ref_grid": list(ref.grid),
            "out_grid": list(out.grid),
            "ref_patches": ref_mask.patches,
            "ref_foreground_patches": len(ref_mask.rows),
            "ref_foreground_fraction": ref_mask.fraction,
            "out_patches": out_mask.patches,
            "out_foreground_patches": out_mask.hidden,
            "out_foreground_fraction": out_mask.fraction,
            "background_patches": out_mask.patches - out_mask.hidden,
            "ref_mask_reading": ref.masks[plan.ref_mask_keys[index]][1].as_dict(),
            "out_mask_reading": out.masks[plan.out_mask_keys[index]][1].as_dict(),
        }
        return Score(
            concept=concept, prompt=prompt, global_concept=global_concept, global_prompt=global_prompt,
            prompt_margin=margin, distractor_prompts=dict(zip(sample.distractors, distractors)),
            extras=extras, concept_map=concept_map.reshape(ref.grid),
        )


class GridMask:
    """A mask on its image's patch grid (CPU), with what scoring reads of it, each read once:
    ``weights`` ``(N,)`` float32, ``rows`` ``(|F|,)`` the foreground patches
    (:func:`~pytest_masc.metric.functional.foreground`), ``hidden`` the patches PF's pool hides,
    ``fraction`` the mean weight."""

    def __init__(self, weights: torch.Tensor, threshold: float) -> None:
        self.weights = weights
        self.threshold = threshold
        self.patches = int(weights.numel())

    @functools.cached_property
    def rows(self) -> np.ndarray:
        return torch.nonzero(functional.foreground(self.weights, self.threshold)).squeeze(1).numpy()

    @functools.cached_property
    def hidden(self) -> int:
        return int(functional.background_hidden(self.weights, self.threshold).sum())

    @functools.cached_property
    def fraction(self) -> float:
        return float(self.weights.mean())

    @property
    def row_block(self) -> int:
        """Rows the foreground takes in a group: whole ``ROW_BLOCK`` blocks, at least one."""
        return max(ROW_BLOCK, -(-len(self.rows) // ROW_BLOCK) * ROW_BLOCK)
