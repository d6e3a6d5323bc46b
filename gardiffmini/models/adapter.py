"""The garment-focused adapter: garment tokens for the UNet's cross-attention (GARDIFF.md, claim 2).

- ``MLP_clip`` (:class:`ClipTokenProjector`): the pooled CLIP image embedding of the in-shop
  garment ``I_c`` -> a few global tokens ``f_clip`` (a linear layer and a LayerNorm, as IP-Adapter).
- ``MLP_vae`` (:class:`VaeTokenProjector`): the VAE latent of the *warped* garment ``E(I_w)`` ->
  one token per latent cell ``f_vae``, with a 2D sinusoidal position so it works at any size.
- :class:`GarmentAdapter` holds both and writes ``encoder_hidden_states = [f_clip, f_vae]``
  (for the ablation's Base variant, ``f_clip`` only).
- :func:`install_garment_adapter` puts a :class:`DecoupledMaskedAttnProcessor` in every
  cross-attention layer of any diffusers UNet, with diffusers' own ``set_attn_processor``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_2d_sincos_pos_embed_from_grid
from torch import nn

from gardiffmini.models.attention import (
    DecoupledMaskedAttnProcessor,
    IgnoreGarmentMask,
    garment_processors,
)
from gardiffmini.profiles import Profile


class ClipTokenProjector(nn.Module):
    """``MLP_clip``: pooled CLIP image embedding (B, E) -> ``f_clip`` (B, n_tokens, D)."""

    def __init__(self, clip_embed_dim: int, cross_attention_dim: int, n_tokens: int) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.proj = nn.Linear(clip_embed_dim, n_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, clip_embeds: torch.Tensor) -> torch.Tensor:
        if clip_embeds.ndim != 2 or clip_embeds.shape[1] != self.proj.in_features:
            raise ValueError(f"clip_embeds must have shape (B, {self.proj.in_features}), "
                             f"got {tuple(clip_embeds.shape)}")
        return self.norm(self.proj(clip_embeds).unflatten(1, (self.n_tokens, -1)))


def position_encoding(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """2D sine-cosine position of each cell of a ``height x width`` grid, row-major: (h*w, dim).

    Half of the channels encode the row, half the column (diffusers' MAE-style encoding);
    ``dim`` must be a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"position_encoding: dim must be a multiple of 4, got {dim}")
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    grid = torch.stack([rows.flatten(), cols.flatten()])
    return get_2d_sincos_pos_embed_from_grid(dim, grid).float()


class VaeTokenProjector(nn.Module):
    """``MLP_vae``: warped-garment latent (B, C, h, w) -> ``f_vae`` (B, h*w, D), one token per cell.

    A two-layer MLP on each latent cell plus the cell's 2D position, then a LayerNorm.
    """

    def __init__(self, latent_channels: int, cross_attention_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(latent_channels, cross_attention_dim),
            nn.GELU(),
            nn.Linear(cross_attention_dim, cross_attention_dim),
        )
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        channels = self.mlp[0].in_features
        if latents.ndim != 4 or latents.shape[1] != channels:
            raise ValueError(f"warped_latents must have shape (B, {channels}, h, w), "
                             f"got {tuple(latents.shape)}")
        _, _, height, width = latents.shape
        tokens = self.mlp(latents.flatten(2).transpose(1, 2))
        position = position_encoding(height, width, tokens.shape[-1], device=tokens.device)
        return self.norm(tokens + position.to(tokens.dtype))


class GarmentAdapter(ModelMixin, ConfigMixin):
    """``MLP_clip`` and ``MLP_vae``: garment conditions -> the UNet's ``encoder_hidden_states``.

    ``use_vae_tokens=False`` is the ablation's Base (CLIP tokens only, plain cross-attention).
    The attention settings (``mask_branches``, ``scale_clip``, ``scale_vae``) are kept in the
    config so that :meth:`install` (and the pipeline, on loading) rebuilds the same processors.
    """

    @register_to_config
    def __init__(
        self,
        clip_embed_dim: int,
        latent_channels: int,
        cross_attention_dim: int,
        n_clip_tokens: int = 4,
        use_vae_tokens: bool = True,
        mask_branches: tuple[str, ...] = ("vae",),
        scale_clip: float = 1.0,
        scale_vae: float = 1.0,
    ) -> None:
        super().__init__()
        self.clip_projector = ClipTokenProjector(clip_embed_dim, cross_attention_dim, n_clip_tokens)
        self.vae_projector = (
            VaeTokenProjector(latent_channels, cross_attention_dim) if use_vae_tokens else None
        )

    @classmethod
    def from_profile(cls, profile: Profile, use_vae_tokens: bool = True,
                     **settings) -> GarmentAdapter:
        """An adapter sized for ``profile`` (its CLIP, VAE and UNet widths)."""
        return cls(
            clip_embed_dim=profile.clip_embed_dim,
            latent_channels=profile.latent_channels,
            cross_attention_dim=profile.cross_attention_dim,
            n_clip_tokens=profile.clip_tokens,
            use_vae_tokens=use_vae_tokens,
            **settings,
        )

    def forward(
        self, clip_embeds: torch.Tensor, warped_latents: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[f_clip, f_vae]`` (B, n_clip_tokens + h*w, D); Base: ``f_clip`` only
        (``warped_latents`` is then not used)."""
        tokens = self.clip_projector(clip_embeds)
        if self.vae_projector is None:
            return tokens
        if warped_latents is None:
            raise ValueError("GarmentAdapter(use_vae_tokens=True) needs warped_latents, "
                             "the VAE latent E(I_w) of the warped garment")
        return torch.cat([tokens, self.vae_projector(warped_latents)], dim=1)

    @property
    def attention_settings(self) -> dict:
        """The keyword arguments of :func:`install_garment_adapter` this adapter was made for."""
        return {
            "n_clip_tokens": self.config.n_clip_tokens,
            "mask_branches": tuple(self.config.mask_branches),
            "scale_clip": self.config.scale_clip,
            "scale_vae": self.config.scale_vae,
        }

    def install(self, unet: nn.Module) -> nn.ModuleDict:
        """Install the matching garment processors in ``unet`` (none for Base)."""
        if not self.config.use_vae_tokens:
            return nn.ModuleDict()
        return install_garment_adapter(unet, **self.attention_settings)


def _module_key(processor_name: str) -> str:
    """``nn.ModuleDict`` keys may not contain dots."""
    return processor_name.removesuffix(".processor").replace(".", "/")


def install_garment_adapter(
    unet: nn.Module,
    n_clip_tokens: int,
    mask_branches: Iterable[str] = ("vae",),
    scale_clip: float = 1.0,
    scale_vae: float = 1.0,
) -> nn.ModuleDict:
    """Put a :class:`DecoupledMaskedAttnProcessor` in every cross-attention layer of ``unet``.

    Self-attention layers keep the processor they had, wrapped in :class:`IgnoreGarmentMask`
    so that they take the mask argument silently. Works on any diffusers model with
    ``attn_processors``/``set_attn_processor`` (the small UNet, Stable Diffusion's). The new
    processors are submodules of ``unet`` (their weights are in ``unet.state_dict()``); they
    are also returned as an ``nn.ModuleDict`` (keys: layer names with ``/`` for ``.``), e.g.
    for an optimizer.
    """
    processors = dict(unet.attn_processors)
    installed = {}
    for name, processor in processors.items():
        attn = unet.get_submodule(name.removesuffix(".processor"))
        if attn.is_cross_attention:
            installed[name] = DecoupledMaskedAttnProcessor.for_layer(
                attn, layer_name=name, n_clip_tokens=n_clip_tokens,
                mask_branches=tuple(mask_branches), scale_clip=scale_clip, scale_vae=scale_vae,
            )
        elif not isinstance(processor, IgnoreGarmentMask):
            processors[name] = IgnoreGarmentMask(processor)
    if not installed:
        raise ValueError(f"install_garment_adapter: {type(unet).__name__} has no cross-attention")
    unet.set_attn_processor({**processors, **installed})
    return nn.ModuleDict({_module_key(name): p for name, p in installed.items()})


def adapter_parameters(unet: nn.Module) -> Iterator[nn.Parameter]:
    """The VAE-stream projections (``to_k_vae``, ``to_v_vae``) of every installed processor."""
    for processor in garment_processors(unet).values():
        yield from processor.parameters()
