"""Scoring the encoded samples of a :class:`~pytest_masc.metric.pipeline.ScoreRun`, a group at a
time: each group laid out in fixed slots for :func:`~pytest_masc.metric.functional.masc_scores`
(the formula), its scores read back in one transfer, each :class:`~pytest_masc.types.Score`
built with its :class:`~pytest_masc.types.ScoreDiagnostics`."""
from __future__ import annotations

import functools
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import functional
from .encoders import ImageEncoder
from ..types import Score, ScoreDiagnostics

if TYPE_CHECKING:
    from .pipeline import ScoreRun

#: A sample's foreground rows are compared in blocks of this many rows (zero rows fill the
#: last block): the product's shape then depends on the sample alone, not on its group.
ROW_BLOCK = 64


def _slots(images: ImageEncoder, rows: list[torch.Tensor]) -> int:
    """Rows per image when images are padded together: the encoder's fixed ``token_slots``."""
    return max(images.token_slots, *(len(r) for r in rows))


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


class GroupScorer:
    """Scores the samples of a :class:`ScoreRun` whose images are encoded, a group at a time:
    lays the group out in fixed slots for :func:`~pytest_masc.metric.functional.masc_scores`
    (the formula), reads its scores back in one transfer and builds each :class:`Score`.

    Keeps what scoring reads per image, until the run releases the image: masks on the patch
    grid per (image, mask) and outputs' pooling-head keys and values.
    """

    def __init__(self, run: "ScoreRun") -> None:
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
        texts_truncated = any(self.encoders.texts.truncated(text) for text in texts)
        diagnostics = ScoreDiagnostics(
            prompt_text=stripped.text,
            subject_found=stripped.subject_found,
            prompt_stripped=stripped.text.split() != sample.prompt.split(),
            prompt_truncated=texts_truncated,
            ref_grid=tuple(ref.grid),
            out_grid=tuple(out.grid),
            ref_patches=ref_mask.patches,
            ref_foreground_patches=len(ref_mask.rows),
            ref_foreground_fraction=ref_mask.fraction,
            out_patches=out_mask.patches,
            out_foreground_patches=out_mask.hidden,
            out_foreground_fraction=out_mask.fraction,
            background_patches=out_mask.patches - out_mask.hidden,
            ref_mask_reading=ref.masks[plan.ref_mask_keys[index]][1].as_dict(),
            out_mask_reading=out.masks[plan.out_mask_keys[index]][1].as_dict(),
            fg_threshold=self.encoders.fg_threshold,
        )
        return Score(
            concept=concept, prompt=prompt, global_concept=global_concept, global_prompt=global_prompt,
            prompt_margin=margin, distractor_prompts=dict(zip(sample.distractors, distractors)),
            diagnostics=diagnostics, concept_map=concept_map.reshape(ref.grid),
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
