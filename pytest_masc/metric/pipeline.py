"""One ``score_many`` call: plan the work, encode each distinct image and text once, score.

1. every distinct prompt text (stripped, full, distractors) is encoded once, in batches;
2. every distinct image (by path + mtime, or by content hash) is encoded once: images are
   read and preprocessed by worker threads while the vision tower runs the previous
   batch;
3. a sample is scored as soon as both of its images are encoded, and an image's tokens
   are dropped as soon as no pending sample needs them, so memory stays bounded by the
   batch size and the references in flight, not by the number of samples.

A sample's scores do not depend on what else is scored: every tensor it touches has a shape
set by the sample alone (images in the encoder's ``token_slots`` rows, foreground rows in
``ROW_BLOCK``-row blocks), and the run keeps one torch thread count throughout.

The encoders and the cache (:mod:`pytest_masc.metric.encoders`) are used through their
public methods only.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

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
        for sample in samples:
            # A blank subject strips nothing and keeps the prompt as given, as the paper's code does.
            subject = sample.subject if sample.subject and sample.subject.strip() else None
            prompt = strip_subject(sample.prompt, subject)
            stripped.append(prompt)
            distractors = [strip_subject(d, subject).text for d in sample.distractors]
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
        plan = cls(
            ref_keys=[source_key(s.ref_image) for s in samples],
            out_keys=[source_key(s.out_image) for s in samples],
            ref_mask_keys=[source_key(s.ref_mask) for s in samples],
            out_mask_keys=[source_key(s.out_mask) for s in samples],
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


class _CosinePairs:
    """``(D,)`` vector pairs whose cosines one batched call computes; :meth:`add` returns the
    pair's slot in :meth:`compute`'s list."""

    def __init__(self) -> None:
        self.left: list[torch.Tensor] = []
        self.right: list[torch.Tensor] = []

    def add(self, a: torch.Tensor, b: torch.Tensor) -> int:
        self.left.append(a)
        self.right.append(b)
        return len(self.left) - 1

    def compute(self) -> list[float]:
        return functional.cosine(torch.stack(self.left), torch.stack(self.right)).tolist()


@dataclass
class _Scoring:
    """One sample between queueing its device work and reading its results back."""

    index: int
    ref: Encoding
    out: Encoding
    ref_weights: torch.Tensor  # (N_ref,) reference mask on the grid
    out_weights: torch.Tensor  # (N_out,) output mask on the grid
    foreground: torch.Tensor  # (N_ref,) bool, the reference patches CP averages over
    prompt_slot: int  # cosine slots in the group's _CosinePairs
    distractor_slots: list[int]
    global_concept_slot: int
    global_prompt_slot: int


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
        self.text_embedding: dict[str, torch.Tensor] = {}
        self.encoded: dict[tuple, Encoding] = {}  # image key -> encoding, until no sample needs it
        self.grid_weights: dict[tuple, torch.Tensor] = {}  # (image key, mask key) -> (Hp * Wp,)
        self.keys_values: dict[tuple, torch.Tensor] = {}  # output image key -> (Hp * Wp, 2D), until released
        self.is_reference = set(self.images.ref_keys)
        self.is_output = set(self.images.out_keys)

    def run(self) -> list[Any]:
        # The whole run on one intra-op thread count: BLAS kernels may round differently
        # with another, and a sample must score the same whenever it is scored.
        with intra_op_threads(self.concurrency.stream_threads):
            self.text_embedding = self.encoders.texts.encode(self.texts.texts)
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
                self.keys_values[key] = encoding.keys_values
            encoding.keys_values = None
            self.encoded[key] = encoding
            if key in self.is_reference:
                self.encoders.cache.put(key, encoding)
            candidates.update(self.images.waiting[key])
        self._score_ready(sorted(candidates))
        return len(batch)

    def _release(self, index: int) -> None:
        """Sample ``index`` is done: drop the encodings (and grid weights) no pending sample needs."""
        plan = self.images
        for key in (plan.ref_keys[index], plan.out_keys[index]):
            plan.remaining[key] -= 1
            if plan.remaining[key] == 0:
                self.encoded.pop(key, None)
                self.keys_values.pop(key, None)
                for mask_key in plan.masks_of[key]:
                    self.grid_weights.pop((key, mask_key), None)

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
        for index, score in zip(ready, self._score_group(ready)):
            self.results[index] = score
            self._release(index)

    def _grid_weights(self, image_key: tuple, mask_key: tuple) -> torch.Tensor:
        """``(Hp * Wp,)`` mask weights on the image's patch grid, resized once per (image, mask):
        a reference shared by many outputs is not resized again for each."""
        key = (image_key, mask_key)
        if key not in self.grid_weights:
            encoding = self.encoded[image_key]
            self.grid_weights[key] = functional.mask_to_grid(torch.from_numpy(encoding.masks[mask_key][0]), encoding.grid)
        return self.grid_weights[key]

    def _background_pools(self, ready: list[int]) -> dict[tuple, tuple[torch.Tensor, torch.Tensor]]:
        """Pooled background embedding ``(D,)`` (on the device) and grid weights ``(N,)`` (on
        the CPU) per (output, output mask) pair, pooled in batches, each output in the
        encoder's ``token_slots`` rows. Keys and values the forward projected are reused;
        those of a cached reference scored as an output are projected here, as the forward does."""
        images, threshold = self.encoders.images, self.encoders.fg_threshold
        pairs = list(dict.fromkeys((self.images.out_keys[i], self.images.out_mask_keys[i]) for i in ready))
        pools = {}
        head = images.vision_model.head
        for chunk in _chunks(pairs, self._chunk_size):
            weights_list, projected, hidden = [], [], []
            for out_key, mask_key in chunk:
                weights = self._grid_weights(out_key, mask_key)
                weights_list.append(weights)
                hidden.append(functional.background_hidden(weights, threshold))
                if out_key not in self.keys_values:
                    self.keys_values[out_key] = functional.pool_keys_values(head, self.encoded[out_key].tokens[None])[0]
                projected.append(self.keys_values[out_key])
            keys_values, _ = functional.pad_rows(projected, _slots(self.encoders.images, projected))
            hidden_rows = torch.ones(keys_values.shape[:2], dtype=torch.bool)  # padding is hidden
            for row, image_hidden in enumerate(hidden):
                hidden_rows[row, :len(image_hidden)] = image_hidden
            pooled = functional.attention_pool_projected(head, keys_values, hidden_rows.to(images.device)).to(torch.float32)
            for row, pair in enumerate(chunk):
                pools[pair] = (pooled[row], weights_list[row])
        return pools

    @property
    def _chunk_size(self) -> int:
        """Samples (or pools) whose padded tensors are on the device at once."""
        return max(self.encoders.images.batch_size, 8)

    def _concept(self, ready: list[int]) -> dict[int, tuple[float, torch.Tensor]]:
        """CP and the ``(|F|,)`` best-match cosines of its foreground rows (on the CPU) per
        ready sample. Each sample's foreground rows fill ``ROW_BLOCK``-row blocks and its
        output ``token_slots`` rows, so its products' shapes depend on it alone."""
        plan, threshold = self.images, self.encoders.fg_threshold
        buckets: dict[int, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for index in ready:
            foreground = self._grid_weights(plan.ref_keys[index], plan.ref_mask_keys[index]) > threshold
            rows = torch.nonzero(foreground).squeeze(1)
            buckets[-(-len(rows) // ROW_BLOCK) * ROW_BLOCK].append((index, rows))
        done, concepts, best_matches = [], [], []
        for block, members in buckets.items():
            if block == 0:  # no foreground: CP is NaN, nothing to compare
                continue
            for chunk in _chunks(members, self._chunk_size):
                refs = [self.encoded[plan.ref_keys[i]].unit for i, _ in chunk]
                outs = [self.encoded[plan.out_keys[i]].unit for i, _ in chunk]
                ref_rows, ref_own = functional.pad_rows(
                    [ref.index_select(0, rows.to(ref.device)) for ref, (_, rows) in zip(refs, chunk)], block)
                out_unit, out_own = functional.pad_rows(outs, _slots(self.encoders.images, outs))
                concept, best = functional.concept_preservation(ref_rows, ref_own, out_unit, out_own)
                done += [(i, len(rows)) for i, rows in chunk]
                concepts.append(concept)
                best_matches.append(best.flatten())
        results = {index: (math.nan, torch.empty(0)) for index in ready}
        if done:
            concepts_host, best_host = torch.cat(concepts).cpu(), torch.cat(best_matches).cpu()
            start = 0
            for (index, count), concept in zip(done, concepts_host.tolist()):
                results[index] = (concept, best_host[start:start + count])
                start += -(-count // ROW_BLOCK) * ROW_BLOCK
        return results

    def _score_group(self, ready: list[int]) -> list[Score]:
        """Scores of samples whose images are encoded. The device work of the whole group is
        queued first and read back in three transfers, so a GPU never waits on each sample."""
        plan = self.images
        pools = self._background_pools(ready)
        pairs = _CosinePairs()
        group = []
        for index in ready:
            ref, out = self.encoded[plan.ref_keys[index]], self.encoded[plan.out_keys[index]]
            ref_weights = self._grid_weights(plan.ref_keys[index], plan.ref_mask_keys[index])
            pooled, out_weights = pools[(plan.out_keys[index], plan.out_mask_keys[index])]
            prompt_slot = pairs.add(pooled, self.text_embedding[self.texts.stripped[index].text])
            distractor_slots = [pairs.add(pooled, self.text_embedding[text]) for text in self.texts.distractors[index]]
            group.append(_Scoring(
                index=index, ref=ref, out=out, ref_weights=ref_weights, out_weights=out_weights,
                foreground=ref_weights > self.encoders.fg_threshold, prompt_slot=prompt_slot,
                distractor_slots=distractor_slots,
                global_concept_slot=pairs.add(ref.pooled.to(torch.float32), out.pooled.to(torch.float32)),
                global_prompt_slot=pairs.add(out.pooled.to(torch.float32), self.text_embedding[self.samples[index].prompt]),
            ))
        concepts = self._concept(ready)
        cosines = pairs.compute()
        scores = []
        for scoring in group:
            concept, best = concepts[scoring.index]
            concept_map = torch.full((scoring.foreground.numel(),), math.nan)
            concept_map[scoring.foreground] = best
            scores.append(self._score(scoring, cosines, concept, concept_map))
        return scores

    def _score(self, scoring: _Scoring, cosines: list[float], concept: float, concept_map: torch.Tensor) -> Score:
        """The :class:`Score` of one sample from its cosines and its ``(N_ref,)`` best-match map."""
        threshold = self.encoders.fg_threshold
        sample, stripped = self.samples[scoring.index], self.texts.stripped[scoring.index]
        prompt = cosines[scoring.prompt_slot]
        distractors = dict(zip(sample.distractors, (cosines[slot] for slot in scoring.distractor_slots)))
        margin = prompt - max(distractors.values()) if distractors else math.nan
        ref_weights, out_weights = scoring.ref_weights, scoring.out_weights
        out_hidden = functional.background_hidden(out_weights, threshold)
        texts = (stripped.text, sample.prompt, *self.texts.distractors[scoring.index])
        extras = {
            "prompt_text": stripped.text,
            "subject_found": stripped.subject_found,
            "prompt_stripped": stripped.text.split() != sample.prompt.split(),
            "prompt_truncated": any(self.encoders.texts.truncated(text) for text in texts),
            "ref_grid": list(scoring.ref.grid),
            "out_grid": list(scoring.out.grid),
            "ref_patches": int(ref_weights.numel()),
            "ref_foreground_patches": int((ref_weights > threshold).sum()),
            "ref_foreground_fraction": float(ref_weights.mean()),
            "out_patches": int(out_weights.numel()),
            "out_foreground_patches": int(out_hidden.sum()),
            "out_foreground_fraction": float(out_weights.mean()),
            "background_patches": int((~out_hidden).sum()),
            "ref_mask_reading": scoring.ref.masks[self.images.ref_mask_keys[scoring.index]][1].as_dict(),
            "out_mask_reading": scoring.out.masks[self.images.out_mask_keys[scoring.index]][1].as_dict(),
        }
        return Score(
            concept=concept,
            prompt=prompt,
            global_concept=cosines[scoring.global_concept_slot],
            global_prompt=cosines[scoring.global_prompt_slot],
            prompt_margin=margin,
            distractor_prompts=distractors,
            extras=extras,
            concept_map=concept_map.reshape(scoring.ref.grid).numpy(),
        )
