"""Decoupled, masked cross-attention: the attention of GarDiff's garment-focused adapter.

Every cross-attention layer of the UNet attends to two token streams and sums the results
(GARDIFF.md, claim 2; decoupled cross-attention as in IP-Adapter)::

    out = scale_clip * softmax(Q K_clip^T / sqrt(d)) V_clip
        + scale_vae  * M * softmax(Q K_vae^T / sqrt(d)) V_vae

``Q = W_q h``; ``K_clip = W_k f_clip``, ``V_clip = W_v f_clip`` use the layer's own projections;
``K_vae = W_k' f_vae``, ``V_vae = W_v' f_vae`` use new ones (``to_k_vae``, ``to_v_vae``).
``M`` is the warped-garment mask ``m_w`` resized to the layer's query grid (claim 3): one value
per query position, so multiplying the attention *rows* by it equals multiplying the branch's
*output* per position. Which branches it masks is a setting (``mask_branches``).

The processor follows diffusers' processor protocol (that of ``AttnProcessor2_0``), so it is
installed with ``unet.set_attn_processor`` and receives the mask through
``cross_attention_kwargs={"garment_mask": m_w}``. :class:`AttentionRecorder` makes the
processors keep their attention maps for pictures; when it is off they call
``scaled_dot_product_attention`` and store nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

STREAMS = ("clip", "vae")


def query_grid(n_queries: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` grid with ``h * w == n_queries`` whose ratio ``h / w`` is nearest ``aspect``.

    A UNet flattens its feature maps before attention, so a layer only sees the number of query
    tokens; the image's aspect ratio (e.g. 4:3, or the mask's own size) recovers the grid,
    odd sizes included (``48`` tokens at 4:3 give ``8 x 6``).
    """
    if n_queries < 1 or min(aspect) < 1:
        raise ValueError(f"query_grid needs n_queries >= 1 and a positive aspect, got "
                         f"{n_queries} and {aspect}")
    target = math.log(aspect[0] / aspect[1])
    heights = [h for h in range(1, n_queries + 1) if n_queries % h == 0]
    h = min(heights, key=lambda h: abs(math.log(h * h / n_queries) - target))
    return h, n_queries // h


def resize_mask(garment_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``m_w`` (B, 1, H, W) in [0, 1] -> ``M_attn`` (B, 1, h*w, 1): one weight per query (claim 3).

    Area averaging: a query cell that lies wholly outside the garment gets exactly 0.
    """
    if garment_mask.ndim != 4 or garment_mask.shape[1] != 1:
        raise ValueError(f"garment_mask must have shape (B, 1, H, W), "
                         f"got {tuple(garment_mask.shape)}")
    resized = F.interpolate(garment_mask, size=grid, mode="area")
    return resized.flatten(2).unsqueeze(-1)


class AttentionRecorder:
    """Context manager that makes every garment processor of ``unet`` keep its attention maps.

    ``maps[layer_name][stream]`` is a list with one tensor per UNet call (i.e. per timestep, per
    sampling loop), each ``(B, h, w, T)``: the attention of query cell ``(h, w)`` to token ``T``,
    averaged over heads, after the mask (the weights actually used). ``aspect`` is the image's
    ``(height, width)`` ratio, used to unflatten the queries when no mask is given.

    >>> with AttentionRecorder(unet) as recorder:
    ...     pipe(...)
    >>> recorder.maps["mid_block.attentions.0.transformer_blocks.0.attn2.processor"]["vae"]
    """

    def __init__(self, unet: nn.Module, aspect: tuple[int, int] = (4, 3)) -> None:
        self.processors = garment_processors(unet)
        if not self.processors:
            raise ValueError("AttentionRecorder: the UNet has no DecoupledMaskedAttnProcessor; "
                             "install the garment adapter first")
        self.aspect = aspect
        self.maps: dict[str, dict[str, list[torch.Tensor]]] = {}

    def __enter__(self) -> AttentionRecorder:
        for processor in self.processors.values():
            processor.recorder = self
        return self

    def __exit__(self, *exc_info) -> None:
        for processor in self.processors.values():
            processor.recorder = None

    def record(self, layer_name: str, stream: str, probs: torch.Tensor) -> None:
        """Store ``probs`` (B, h, w, T), already averaged over heads."""
        layer = self.maps.setdefault(layer_name, {s: [] for s in STREAMS})
        layer[stream].append(probs.detach().float().cpu())


class DecoupledMaskedAttnProcessor(nn.Module):
    """A diffusers attention processor for GarDiff's decoupled, masked cross-attention
    (GARDIFF.md claims 2 and 3; the equation is in this module's docstring).

    The first ``n_clip_tokens`` of ``encoder_hidden_states`` are the CLIP stream (the layer's own
    ``to_k``/``to_v``); the rest are the VAE stream (this processor's ``to_k_vae``/``to_v_vae``).
    """

    def __init__(
        self,
        hidden_size: int,
        cross_attention_dim: int,
        n_clip_tokens: int,
        mask_branches: Iterable[str] = ("vae",),
        scale_clip: float = 1.0,
        scale_vae: float = 1.0,
        bias: bool = False,
        layer_name: str = "",
    ) -> None:
        super().__init__()
        mask_branches = tuple(mask_branches)
        if not set(mask_branches) <= set(STREAMS):
            raise ValueError(f"mask_branches must be a subset of {STREAMS}, got {mask_branches}")
        if n_clip_tokens < 1:
            raise ValueError(f"n_clip_tokens must be >= 1, got {n_clip_tokens}")
        self.to_k_vae = nn.Linear(cross_attention_dim, hidden_size, bias=bias)
        self.to_v_vae = nn.Linear(cross_attention_dim, hidden_size, bias=bias)
        self.n_clip_tokens = n_clip_tokens
        self.mask_branches = mask_branches
        self.scale_clip = scale_clip
        self.scale_vae = scale_vae
        self.layer_name = layer_name
        self.recorder: AttentionRecorder | None = None

    @classmethod
    def for_layer(
        cls, attn: Attention, layer_name: str = "", **settings
    ) -> DecoupledMaskedAttnProcessor:
        """A processor for cross-attention layer ``attn``, its VAE-stream projections initialised
        from the layer's ``to_k``/``to_v`` (as IP-Adapter does), on the layer's device and dtype."""
        if not attn.is_cross_attention:
            raise ValueError(f"{layer_name or 'layer'} is a self-attention layer; the garment "
                             "processor replaces cross-attention only")
        processor = cls(
            hidden_size=attn.to_k.out_features,
            cross_attention_dim=attn.to_k.in_features,
            bias=attn.to_k.bias is not None,
            layer_name=layer_name,
            **settings,
        )
        processor.to_k_vae.load_state_dict(attn.to_k.state_dict())
        processor.to_v_vae.load_state_dict(attn.to_v.state_dict())
        return processor.to(device=attn.to_k.weight.device, dtype=attn.to_k.weight.dtype)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        garment_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """``to_out(scale_clip * A_clip + scale_vae * M * A_vae)`` (claims 2 and 3)."""
        if encoder_hidden_states is None:
            raise ValueError(f"{self.layer_name}: DecoupledMaskedAttnProcessor needs "
                             "encoder_hidden_states (it replaces cross-attention only)")
        if attention_mask is not None:
            raise ValueError(f"{self.layer_name}: token attention masks are not supported; "
                             "pass the garment mask as cross_attention_kwargs['garment_mask']")
        if encoder_hidden_states.shape[1] <= self.n_clip_tokens:
            raise ValueError(f"{self.layer_name}: encoder_hidden_states has "
                             f"{encoder_hidden_states.shape[1]} tokens; expected "
                             f"{self.n_clip_tokens} CLIP tokens followed by at least one VAE token")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        clip_tokens = encoder_hidden_states[:, : self.n_clip_tokens]
        vae_tokens = encoder_hidden_states[:, self.n_clip_tokens :]

        query = self._heads(attn, attn.to_q(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        n_queries = query.shape[2]
        aspect = tuple(garment_mask.shape[-2:]) if garment_mask is not None else None
        if aspect is None and self.recorder is not None:
            aspect = self.recorder.aspect
        grid = query_grid(n_queries, aspect) if aspect is not None else None
        query_mask = None
        if garment_mask is not None:
            if garment_mask.shape[0] != query.shape[0]:
                raise ValueError(f"{self.layer_name}: garment_mask has batch "
                                 f"{garment_mask.shape[0]}, hidden_states {query.shape[0]}")
            query_mask = resize_mask(garment_mask.to(query.dtype), grid)

        branches = {
            "clip": (attn.to_k(clip_tokens), attn.to_v(clip_tokens), self.scale_clip),
            "vae": (self.to_k_vae(vae_tokens), self.to_v_vae(vae_tokens), self.scale_vae),
        }
        hidden_states = sum(
            scale * self._attend(attn, query, key, value,
                                 query_mask if stream in self.mask_branches else None, stream, grid)
            for stream, (key, value, scale) in branches.items()
        )

        hidden_states = hidden_states.transpose(1, 2).flatten(2).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(1, 2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    @staticmethod
    def _heads(attn: Attention, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, heads * d) -> (B, heads, N, d)."""
        return tokens.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

    def _attend(
        self,
        attn: Attention,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        query_mask: torch.Tensor | None,
        stream: str,
        grid: tuple[int, int] | None,
    ) -> torch.Tensor:
        """``M * softmax(Q K^T / sqrt(d)) V`` for one stream (claims 2 and 3), (B, heads, N, d)."""
        key, value = self._heads(attn, key), self._heads(attn, value)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if self.recorder is None:
            out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        else:
            probs = (query @ key.transpose(-1, -2) * attn.scale).softmax(dim=-1)
            out = probs @ value
            if query_mask is not None:
                probs = probs * query_mask
            maps = probs.mean(dim=1)
            self.recorder.record(self.layer_name, stream, maps.unflatten(1, grid))
        return out if query_mask is None else out * query_mask


class IgnoreGarmentMask(nn.Module):
    """Wraps a self-attention layer's processor so that it accepts, and ignores, ``garment_mask``.

    diffusers hands ``cross_attention_kwargs`` to every attention layer and warns about each
    argument a processor does not take; self-attention has no garment stream to mask.
    """

    def __init__(self, processor) -> None:
        super().__init__()
        self.processor = processor

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        garment_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.processor(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, temb=temb)


def start_vae_stream_at_zero(unet: nn.Module) -> None:
    """Zero the value projection ``W_v'`` of the VAE stream in every garment processor of
    ``unet``, so that ``softmax(Q K_vae^T / sqrt(d)) V_vae = 0`` and the UNet computes exactly
    what it computed without the adapter's VAE tokens; training opens the stream from there
    (``W_v'`` gets a gradient at once, ``W_k'`` once ``V_vae`` is no longer 0), as ControlNet's
    zero convolutions do. A pretrained UNet starts without being disturbed."""
    processors = garment_processors(unet)
    if not processors:
        raise ValueError(f"{type(unet).__name__} has no garment processor: install the adapter "
                         "first (install_garment_adapter)")
    with torch.no_grad():
        for processor in processors.values():
            processor.to_v_vae.weight.zero_()
            if processor.to_v_vae.bias is not None:
                processor.to_v_vae.bias.zero_()


def garment_processors(unet: nn.Module) -> dict[str, DecoupledMaskedAttnProcessor]:
    """The garment processors installed in ``unet``, by diffusers' processor name."""
    return {
        name: processor
        for name, processor in unet.attn_processors.items()
        if isinstance(processor, DecoupledMaskedAttnProcessor)
    }
