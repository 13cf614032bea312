"""SigLIP2's vision tower for one unpadded image, without the general forward's overheads.

``Siglip2VisionTransformer.forward`` serves padded batches: it builds an attention mask,
resizes the position embeddings on every call, allocates every intermediate afresh and
runs the pooling head. For a single image of ``N = Hp * Wp`` patches on the CPU (where
MaSC encodes one image per forward, several forwards side by side), none of that is
needed, and it costs about a sixth of the forward (measured in ``benchmarks/RESULTS.md``):

* no padding, so no mask: attention runs the fused kernel over the image's own patches;
* the resized position embeddings are kept per grid;
* the residual stream is updated in place (``addmm_``), and the MLP's hidden activations
  live in two buffers reused by every layer, instead of fresh pages for each;
* tanh-GELU is computed in place as ``x * sigmoid(2 z)`` with
  ``z = sqrt(2 / pi) (x + 0.044715 x^3)``, the same function as ``0.5 x (1 + tanh z)``
  in four passes over a reused buffer;
* the pooling head is left to the caller (:func:`pytest_masc.metric.functional.pool_keys_values`),
  so its key/value projection can serve the global and the background pools.

The weights are the model's own (no copies). The result equals
``vision_model(pixel_values[None], pixel_attention_mask=ones, spatial_shapes=[grid])
.last_hidden_state[0]`` up to float rounding (about 1e-6 in float32; ``tests/test_vision.py``).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Optional

import torch
import torch.nn.functional as F

#: tanh-GELU classes of transformers (``hidden_act="gelu_pytorch_tanh"``), by class name.
_TANH_GELU = {"GELUTanh", "PytorchGELUTanh", "GELUPytorchTanh"}
_GELU_SCALE = 2.0 * math.sqrt(2.0 / math.pi)


def unsupported_reason(vision_model: Any) -> Optional[str]:
    """Why :class:`OneImageVisionForward` cannot run ``vision_model`` (None when it can).

    It needs the SigLIP2 layout (patch ``Linear``, pre-norm layers with ``q/k/v/out_proj``
    and a two-layer MLP, a post layer norm) in eval mode, built of plain ``torch.nn`` layers
    with their weights in memory: no quantised or offloaded layers (subclasses, meta
    weights), no hooks and no replaced ``forward``, since it reads the weights directly.
    """
    try:
        embeddings, layers = vision_model.embeddings, list(vision_model.encoder.layers)
        parts = [embeddings.patch_embedding, embeddings.position_embedding, vision_model.post_layernorm]
        for layer in layers:
            attention = layer.self_attn
            parts += [layer.layer_norm1, layer.layer_norm2, layer.mlp.fc1, layer.mlp.fc2,
                      attention.q_proj, attention.k_proj, attention.v_proj, attention.out_proj]
            if not attention.num_heads or attention.embed_dim % attention.num_heads:
                return "attention heads do not divide the width"
    except AttributeError as error:
        return f"not a SigLIP2 vision tower ({error})"
    if vision_model.training:
        return "the model is in training mode"
    plain = (torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Embedding)
    for part in parts:
        if type(part) not in plain:
            return f"a {type(part).__name__} layer (only plain Linear, LayerNorm and Embedding layers)"
    for module in vision_model.modules():
        if module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__:
            return f"{type(module).__name__} has hooks or a replaced forward"
    if any(parameter.is_meta for parameter in vision_model.parameters()):
        return "weights are not loaded (meta device: offloaded or not materialised)"
    return None


class OneImageVisionForward:
    """Runs one unpadded image through a SigLIP2 vision tower's weights.

    Thread-safe: several forwards may run side by side (each allocates its own buffers).

    Args:
        vision_model: a ``Siglip2VisionTransformer`` (``model.vision_model``), in eval mode.
        position_cache: how many grids' resized position embeddings to keep (each ``N x D``,
            about 4.5 MiB for SO400M at 1024 patches in float32).
    """

    def __init__(self, vision_model: Any, position_cache: int = 8) -> None:
        reason = unsupported_reason(vision_model)
        if reason is not None:
            raise ValueError(f"cannot run this vision tower one image at a time: {reason}")
        self.vision_model = vision_model
        self._positions: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._position_cache = int(position_cache)
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Drop the kept position embeddings."""
        with self._lock:
            self._positions.clear()

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """``(Hp * Wp, D)`` position embeddings resized to ``grid`` (bilinear, antialiased).

        Kept per grid and per state of the table (its storage, device and in-place version),
        so weights loaded or moved later are never served stale."""
        embeddings = self.vision_model.embeddings
        weight = embeddings.position_embedding.weight
        key = (tuple(grid), weight.device, weight.data_ptr(), weight._version)
        with self._lock:
            cached = self._positions.get(key)
            if cached is not None:
                self._positions.move_to_end(key)
                return cached
        side = embeddings.position_embedding_size
        table = weight.reshape(side, side, -1)
        shapes = torch.tensor([grid], dtype=torch.long, device=table.device)
        resized = embeddings.resize_positional_embeddings(table, shapes, max_length=grid[0] * grid[1])[0]
        with self._lock:
            self._positions[key] = resized
            while len(self._positions) > self._position_cache:
                self._positions.popitem(last=False)
        return resized

    def __call__(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Encode one image.

        Args:
            patches: ``(Hp * Wp, 3 * P * P)`` normalised pixel patches, row-major over the grid.
            grid: ``(Hp, Wp)``.

        Returns:
            ``(Hp * Wp, D)`` last hidden state (after the post layer norm), the model's dtype.
        """
        vision = self.vision_model
        count = patches.shape[0]
        if count != grid[0] * grid[1]:
            raise ValueError(f"{count} patches do not fill a {grid[0]}x{grid[1]} grid")
        patch_embedding = vision.embeddings.patch_embedding
        hidden = F.linear(patches.to(patch_embedding.weight.dtype), patch_embedding.weight, patch_embedding.bias)
        hidden += self.positions(grid).to(hidden.dtype)
        layers = vision.encoder.layers
        width = hidden.shape[1]
        mlp_width = layers[0].mlp.fc1.out_features if len(layers) else 0
        activations = hidden.new_empty(count, mlp_width)
        gate = torch.empty_like(activations)
        for layer in layers:
            self._attention_block(layer, hidden, count, width)
            self._mlp_block(layer, hidden, activations, gate)
        norm = vision.post_layernorm
        return F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    @staticmethod
    def _attention_block(layer: Any, hidden: torch.Tensor, count: int, width: int) -> None:
        """``hidden += out_proj(attention(layer_norm1(hidden)))``, in place."""
        norm, attention = layer.layer_norm1, layer.self_attn
        normed = F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        heads = attention.num_heads
        shape = (1, count, heads, width // heads)
        query, key, value = (
            F.linear(normed, projection.weight, projection.bias).view(shape).transpose(1, 2)
            for projection in (attention.q_proj, attention.k_proj, attention.v_proj)
        )
        attended = F.scaled_dot_product_attention(query, key, value, scale=attention.scale)
        attended = attended.transpose(1, 2).reshape(count, width)
        hidden.addmm_(attended, attention.out_proj.weight.t())
        hidden += attention.out_proj.bias

    @staticmethod
    def _mlp_block(layer: Any, hidden: torch.Tensor, activations: torch.Tensor, gate: torch.Tensor) -> None:
        """``hidden += fc2(act(fc1(layer_norm2(hidden))))``, in place, in the given buffers."""
        norm, mlp = layer.layer_norm2, layer.mlp
        normed = F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        torch.addmm(mlp.fc1.bias, normed, mlp.fc1.weight.t(), out=activations)
        # The in-place form rounds four times: exact enough in float32 only.
        if type(mlp.activation_fn).__name__ in _TANH_GELU and activations.dtype == torch.float32:
            tanh_gelu_(activations, gate)
            result = activations
        else:
            result = mlp.activation_fn(activations)
        hidden.addmm_(result, mlp.fc2.weight.t())
        hidden += mlp.fc2.bias


def tanh_gelu_(values: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """tanh-approximated GELU of ``values`` in place, using ``scratch`` (same shape).

    ``0.5 x (1 + tanh z) = x * sigmoid(2 z)`` with ``2 z = x (a + b x^2)``,
    ``a = 2 sqrt(2 / pi)`` and ``b = 0.044715 a``: four passes over the data.
    """
    coefficient = torch.tensor(_GELU_SCALE, dtype=values.dtype, device=values.device)
    torch.addcmul(coefficient, values, values, value=_GELU_SCALE * 0.044715, out=scratch)  # a + b x^2
    scratch.mul_(values).sigmoid_()
    return values.mul_(scratch)
