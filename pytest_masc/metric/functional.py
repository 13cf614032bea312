r"""The pure tensor math of MaSC, on patch tokens. No model loading, no state.

Notation: a SigLIP2 NaFlex image of ``Hp x Wp`` patches gives ``N = Hp * Wp`` patch tokens
``t_i`` of width ``D`` (``last_hidden_state`` without padding, row-major over the grid).
A mask ``M`` of shape ``(H, W)`` with weights in ``[0, 1]`` gives per-patch weights
``w = clamp(bilinear(M -> Hp x Wp, align_corners=False), 0, 1)``.

Concept preservation, with the reference's foreground ``F = {i : w^ref_i > \tau}``:

.. math::  CP = \frac{1}{|F|} \sum_{i \in F} \max_j \cos(t^{ref}_i, t^{out}_j)

Prompt following, with the output's hidden set ``H = {j : w^{out}_j \ge \tau} \cup padding``:

.. math::  PF = \cos\big(\mathrm{MAP}(t^{out}; H),\ e_{text}(\mathrm{strip}(prompt))\big)

where ``MAP`` is SigLIP2's trained multi-head attention pooling head with the keys in ``H``
hidden. ``CP`` is NaN when ``F`` is empty, ``PF`` when every key is hidden. A distractor
prompt scores on the same pool, and the margin is ``PF - max_k PF(distractor_k)``; the
global scores are cosines of the head's pools over all patches.

:func:`masc_scores` computes all of them for a group of samples at once, as batched tensor
work on the device with one read-back (:meth:`GroupScores.to_host`); the single-sample
functions above it are its parts. Shapes: ``G`` samples, ``L`` token slots per image,
``R`` foreground rows per sample, ``K`` distractors per sample, ``D`` the embedding width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from ..defaults import DEFAULT_THRESHOLD


def mask_to_grid(weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize mask weights onto the patch grid.

    Args:
        weights: ``(H, W)`` float foreground weights in ``[0, 1]``.
        grid: ``(Hp, Wp)`` patches.

    Returns:
        ``(Hp * Wp,)`` float32 weights in ``[0, 1]``, row-major: bilinear interpolation
        with ``align_corners=False`` and no antialiasing, as in the paper's code.
    """
    if weights.ndim != 2:
        raise ValueError(f"mask weights must be 2-D (H, W), got shape {tuple(weights.shape)}")
    resized = F.interpolate(
        weights.to(torch.float32)[None, None], size=tuple(grid), mode="bilinear", align_corners=False
    )
    return resized[0, 0].clamp_(0.0, 1.0).flatten()


def unit_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` tokens scaled to unit length, in float32."""
    return F.normalize(tokens.to(torch.float32), dim=-1)


def best_match_cosine(ref_tokens: torch.Tensor, out_tokens: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
    """For every reference token, its highest cosine to any output token.

    Args:
        ref_tokens: ``(N_ref, D)`` reference patch tokens.
        out_tokens: ``(N_out, D)`` output patch tokens (no padding).
        normalized: both are already :func:`unit_tokens` (skips normalising again).

    Returns:
        ``(N_ref,)`` float32 cosines in ``[-1, 1]``.
    """
    if not normalized:
        ref_tokens, out_tokens = unit_tokens(ref_tokens), unit_tokens(out_tokens)
    return (ref_tokens @ out_tokens.T).amax(dim=-1)


def concept_score(best_match: torch.Tensor, ref_weights: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Concept preservation from per-token best-match cosines.

    Args:
        best_match: ``(N_ref,)`` from :func:`best_match_cosine`.
        ref_weights: ``(N_ref,)`` reference mask weights on the grid (:func:`mask_to_grid`).
        threshold: a token is foreground when its weight is strictly above it.

    Returns:
        The mean best-match cosine over foreground tokens; NaN when there are none.
    """
    foreground = ref_weights > threshold
    if not bool(foreground.any()):
        return math.nan
    return float(best_match[foreground].mean())


def foreground(ref_weights: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """``(N,)`` bool: the reference tokens CP averages over, ``F`` (weight strictly above threshold)."""
    return ref_weights > threshold


def background_hidden(out_weights: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """``(N,)`` bool: the output tokens hidden from the PF pool (weight at or above threshold)."""
    return out_weights >= threshold


def pool_keys_values(head: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The pooling head's key and value projections of ``tokens``.

    Args:
        head: a ``Siglip2MultiheadAttentionPoolingHead``.
        tokens: ``(B, L, D)`` patch tokens.

    Returns:
        ``(B, L, 2 * D)``: keys ``[..., :D]`` and values ``[..., D:]``, in the head's dtype.
        One projection serves every pool of the same tokens (global and background).
    """
    attention = head.attention
    width = attention.embed_dim
    return F.linear(tokens, attention.in_proj_weight[width:], attention.in_proj_bias[width:])


def attention_pool(head: torch.nn.Module, tokens: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """SigLIP2's attention-pooling head over the tokens that are not hidden.

    The head's learned probe attends to the keys with ``hidden`` ones excluded, then its
    layer norm and MLP apply with the residual, as ``Siglip2MultiheadAttentionPoolingHead``
    does with a padding mask.

    Args:
        head: a ``Siglip2MultiheadAttentionPoolingHead`` (``probe``, ``attention``,
            ``layernorm``, ``mlp``).
        tokens: ``(B, L, D)`` patch tokens, padding included.
        hidden: ``(B, L)`` bool, True for keys to exclude (padding, foreground).

    Returns:
        ``(B, D)`` pooled embeddings in the head's dtype; rows with every key hidden are NaN.
    """
    if tokens.ndim != 3 or hidden.shape != tokens.shape[:2]:
        raise ValueError(f"tokens (B, L, D) and hidden (B, L) disagree: {tuple(tokens.shape)} vs {tuple(hidden.shape)}")
    return attention_pool_projected(head, pool_keys_values(head, tokens), hidden)


def attention_pool_projected(head: torch.nn.Module, keys_values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    r""":func:`attention_pool` from projected keys and values (:func:`pool_keys_values`).

    With the probe's query ``q``, per head ``h`` of width ``d``:

    .. math::  a_h = \sum_{j \notin H} \mathrm{softmax}_j\big(q_h \cdot k_{j,h} / \sqrt{d}\big)\, v_{j,h},
               \qquad \mathrm{pool} = o + \mathrm{MLP}(\mathrm{LN}(o)),\ o = W_o [a_1 \dots a_H] + b_o

    Hidden keys get no weight and their values are zeroed, so nothing of a hidden token
    (not even an infinite or NaN one) reaches the pool.

    A row's pool depends only on that row: every product runs on one row's ``(L, d)`` keys
    and values, and the output layers on :data:`POOL_ROWS` rows at a time, so the matrix
    shapes do not change with the batch. Give every image the same ``L`` (the scorer pads to
    the patch budget) and its pool is the same float whatever it is pooled with.

    Args:
        head: a ``Siglip2MultiheadAttentionPoolingHead``.
        keys_values: ``(B, L, 2 * D)``.
        hidden: ``(B, L)`` bool, True for keys to exclude.

    Returns:
        ``(B, D)`` pooled embeddings in the head's dtype; rows with every key hidden are NaN.
    """
    if keys_values.ndim != 3 or hidden.shape != keys_values.shape[:2]:
        raise ValueError(
            f"keys_values (B, L, 2D) and hidden (B, L) disagree: {tuple(keys_values.shape)} vs {tuple(hidden.shape)}"
        )
    attention = head.attention
    batch, length, _ = keys_values.shape
    width, heads = attention.embed_dim, attention.num_heads
    head_width = width // heads
    probe = head.probe.reshape(1, width).to(keys_values.dtype)
    query = F.linear(probe, attention.in_proj_weight[:width], attention.in_proj_bias[:width])
    query = (query.reshape(heads, head_width) * head_width ** -0.5).to(torch.float32)
    # The attention itself in float32 whatever the model dtype (one query: cheap), as fused
    # attention kernels accumulate; the projections and the MLP stay in the head's dtype.
    # (B * heads) products of one row's (L, d) keys with its head's (d, 1) query.
    keys = keys_values[..., :width].reshape(batch, length, heads, head_width).transpose(1, 2).to(torch.float32)
    logits = torch.bmm(keys.reshape(batch * heads, length, head_width),
                       query.expand(batch, heads, head_width).reshape(batch * heads, head_width, 1))
    logits = logits.reshape(batch, heads, length)
    nothing_left = hidden.all(dim=-1)
    # A fully hidden row would make softmax produce NaN; pool it over everything and
    # overwrite it with NaN afterwards (unconditionally: a test would wait on the device).
    logits = logits.masked_fill((hidden & ~nothing_left[:, None])[:, None, :], -math.inf)
    weights = logits.softmax(dim=-1)
    values = keys_values[..., width:].masked_fill(hidden[:, :, None], 0.0)
    values = values.reshape(batch, length, heads, head_width).transpose(1, 2).to(torch.float32)
    attended = torch.bmm(weights.reshape(batch * heads, 1, length), values.reshape(batch * heads, length, head_width))
    pooled = _pool_output(head, attended.reshape(batch, width).to(keys_values.dtype))
    return pooled.masked_fill(nothing_left[:, None], math.nan)


#: Rows the pooling head's output layers (projection, layer norm, MLP) run on at a time,
#: filled up with zero rows: fixed matrix shapes, so one row's result never depends on how
#: many rows are pooled together.
POOL_ROWS = 8


def _pool_output(head: torch.nn.Module, attended: torch.Tensor) -> torch.Tensor:
    """``o + MLP(LN(o))`` with ``o = W_o a + b_o`` for ``(B, D)`` attended values, in blocks
    of exactly :data:`POOL_ROWS` rows."""
    projection = head.attention.out_proj
    pooled = []
    for start in range(0, len(attended), POOL_ROWS):
        rows = attended[start:start + POOL_ROWS]
        block = rows.new_zeros(POOL_ROWS, rows.shape[1])
        block[:len(rows)] = rows
        block = F.linear(block, projection.weight, projection.bias)
        pooled.append((block + head.mlp(head.layernorm(block)))[:len(rows)])
    return torch.cat(pooled) if pooled else attended.new_empty(0, projection.out_features)


def pad_rows(rows: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(N_g, ...)`` tensors (one device) into one ``(G, length, ...)`` zero-padded tensor.

    Returns:
        The padded stack and ``(G, length)`` bool, True on each tensor's own rows.
    """
    lengths = [len(r) for r in rows]
    if max(lengths) > length:
        raise ValueError(f"{max(lengths)} rows do not fit {length} slots")
    padded = pad_sequence(rows, batch_first=True)
    if padded.shape[1] < length:
        padded = F.pad(padded, [0, 0] * (padded.ndim - 2) + [0, length - padded.shape[1]])
    own = torch.arange(length) < torch.tensor(lengths)[:, None]
    return padded, own.to(padded.device)


def concept_preservation(ref_rows: torch.Tensor, ref_rows_own: torch.Tensor,
                         out_unit: torch.Tensor, out_own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CP of a group of samples.

    .. math::  \mathrm{best}_{g,i} = \max_{j\ \mathrm{own}} \cos(t^{ref}_{g,i}, t^{out}_{g,j}),
               \qquad CP_g = \frac{1}{|F_g|} \sum_{i \in F_g} \mathrm{best}_{g,i}

    One ``(R, D) x (D, L)`` product per sample: when ``R`` and ``L`` are set by the sample
    alone (the scorer: ``F_g`` in whole 64-row blocks, outputs in the patch budget), so is
    its CP, whatever else is in the group.

    Args:
        ref_rows: ``(G, R, D)`` float32 unit-length reference tokens, zero-padded.
        ref_rows_own: ``(G, R)`` bool, the rows of ``F_g`` (never padding).
        out_unit: ``(G, L, D)`` float32 unit-length output tokens, zero-padded.
        out_own: ``(G, L)`` bool, the output's own rows (not padding).

    Returns:
        ``(G,)`` CP (NaN where ``F_g`` is empty) and ``(G, R)`` best-match cosines.
    """
    similarity = torch.bmm(ref_rows, out_unit.transpose(1, 2))
    best = similarity.masked_fill_(~out_own[:, None, :], -math.inf).amax(dim=-1)
    total = best.masked_fill(~ref_rows_own, 0.0).sum(dim=-1)
    return total / ref_rows_own.sum(dim=-1), best


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``(B, D)`` and ``(B, D)`` (or broadcastable) in float32; NaN rows stay NaN."""
    return (F.normalize(a.to(torch.float32), dim=-1) * F.normalize(b.to(torch.float32), dim=-1)).sum(-1)


@dataclass
class GroupInputs:
    """``G`` samples laid out for :func:`masc_scores`, each in slots of fixed size (``R``
    foreground rows, ``L`` token slots, ``K`` distractors) filled with zeros: every product
    then has the same shape for a sample whatever the group, so its scores are the same floats.
    """

    ref_rows: torch.Tensor  # (G, R, D) float32 unit-length reference tokens of F_g, then zero rows
    ref_rows_own: torch.Tensor  # (G, R) bool, the first |F_g| rows
    out_unit: torch.Tensor  # (G, L, D) float32 unit-length output tokens, zero-padded
    out_own: torch.Tensor  # (G, L) bool, the output's own tokens
    out_keys_values: torch.Tensor  # (G, L, 2D) the pooling head's keys and values of the output tokens
    out_weights: torch.Tensor  # (G, L) float32 output mask weights on the grid (any value on padding)
    prompt: torch.Tensor  # (G, D) float32 text embedding of the stripped prompt
    distractors: torch.Tensor  # (G, K, D) float32 text embeddings of the stripped distractors
    distractors_own: torch.Tensor  # (G, K) bool, the sample's own distractors
    ref_pooled: torch.Tensor  # (G, D) the reference's pool over all patches
    out_pooled: torch.Tensor  # (G, D) the output's pool over all patches
    full_prompt: torch.Tensor  # (G, D) float32 text embedding of the prompt as given


@dataclass
class GroupScores:
    """What :func:`masc_scores` returns: ``(G,)`` per-sample scores (NaN where undefined),
    ``(G, K)`` distractor PFs and ``(G, R)`` best-match cosines of the foreground rows."""

    concept: torch.Tensor
    prompt: torch.Tensor
    prompt_margin: torch.Tensor  # float64: the float32 PF minus the float32 best distractor PF, in float64
    global_concept: torch.Tensor
    global_prompt: torch.Tensor
    distractors: torch.Tensor
    best_match: torch.Tensor

    def to_host(self) -> "GroupScores":
        """The same scores on the CPU in float64, read back in one transfer."""
        parts = [getattr(self, f.name) for f in fields(self)]
        packed = torch.cat([part.to(torch.float64).flatten() for part in parts]).cpu()
        host = packed.split([part.numel() for part in parts])
        return GroupScores(*(values.reshape(part.shape) for values, part in zip(host, parts)))


def masc_scores(head: torch.nn.Module, group: GroupInputs, threshold: float = DEFAULT_THRESHOLD) -> GroupScores:
    r"""MaSC of ``G`` samples at once, queued on the device without waiting for it.

    .. math::
        CP_g &= \frac{1}{|F_g|} \sum_{i \in F_g} \max_{j} \cos(t^{ref}_{g,i}, t^{out}_{g,j}) \\
        PF_g &= \cos\big(p_g, e(\mathrm{strip}(prompt_g))\big), \quad
            p_g = \mathrm{MAP}(t^{out}_g;\ H_g),\ H_g = \{j : w^{out}_{g,j} \ge \tau\} \cup \mathrm{padding} \\
        PF_{g,k} &= \cos\big(p_g, e(\mathrm{strip}(distractor_{g,k}))\big), \quad
            margin_g = PF_g - \max_k PF_{g,k} \\
        global\ concept_g &= \cos(\mathrm{MAP}(t^{ref}_g), \mathrm{MAP}(t^{out}_g)), \quad
            global\ prompt_g = \cos(\mathrm{MAP}(t^{out}_g), e(prompt_g))

    Args:
        head: the vision tower's ``Siglip2MultiheadAttentionPoolingHead`` (``MAP``).
        group: the samples' tensors, shapes in :class:`GroupInputs`.
        threshold: ``tau``; ``F_g`` (the rows in ``group.ref_rows``) was chosen with it too.

    Returns:
        :class:`GroupScores` on the device: CP NaN where ``F_g`` is empty, PF and the
        distractors' where ``H_g`` hides every key, the margin where either is or ``K_g = 0``.
    """
    concept, best_match = concept_preservation(group.ref_rows, group.ref_rows_own, group.out_unit, group.out_own)
    hidden = background_hidden(group.out_weights, threshold) | ~group.out_own
    pooled = attention_pool_projected(head, group.out_keys_values, hidden).to(torch.float32)
    prompt = cosine(pooled, group.prompt)
    distractors = cosine(pooled[:, None, :], group.distractors).masked_fill(~group.distractors_own, math.nan)
    best_distractor = distractors.masked_fill(~group.distractors_own, -math.inf).amax(dim=-1)
    margin = torch.where(group.distractors_own.any(dim=-1),
                         prompt.to(torch.float64) - best_distractor.to(torch.float64), math.nan)
    return GroupScores(
        concept=concept, prompt=prompt, prompt_margin=margin,
        global_concept=cosine(group.ref_pooled.to(torch.float32), group.out_pooled.to(torch.float32)),
        global_prompt=cosine(group.out_pooled.to(torch.float32), group.full_prompt),
        distractors=distractors, best_match=best_match,
    )
