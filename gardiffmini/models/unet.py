"""The try-on UNet: a diffusers ``UNet2DConditionModel`` on ``[x_t, E(I_w), E(I_a)]``.

GarDiff's denoiser sees 12 input channels: the noisy latent ``x_t``, the VAE latent of the
warped garment ``E(I_w)`` and that of the garment-agnostic person ``E(I_a)`` (4 each), and
predicts the noise (4 channels). It is either small, built from a profile, or a pretrained
Stable Diffusion inpainting UNet (9 input channels) whose first convolution is widened to 12,
the original weights kept and the new channels starting at zero.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from gardiffmini.profiles import Profile, get_profile, norm_groups

N_CONDITION_LATENTS = 3  # x_t, E(I_w), E(I_a)


def make_unet(profile: Profile | str) -> UNet2DConditionModel:
    """A small try-on UNet at the scale of ``profile``, initialised at random.

    Stable Diffusion's shape: cross-attention in every resolution level but the lowest, and in
    the middle block; self-attention heads of ``profile.unet_head_dim`` channels (diffusers'
    ``attention_head_dim`` is, for historical reasons, the number of heads per level).
    """
    profile = get_profile(profile)
    channels = tuple(profile.unet_channels)
    if any(c % profile.unet_head_dim for c in channels):
        raise ValueError(f"profile {profile.name!r}: unet_channels {channels} must be multiples "
                         f"of unet_head_dim {profile.unet_head_dim}")
    n_levels = len(channels)
    down = ("CrossAttnDownBlock2D",) * (n_levels - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_levels - 1)
    return UNet2DConditionModel(
        sample_size=profile.latent_size,
        in_channels=N_CONDITION_LATENTS * profile.latent_channels,
        out_channels=profile.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=profile.unet_layers_per_block,
        attention_head_dim=tuple(c // profile.unet_head_dim for c in channels),
        cross_attention_dim=profile.cross_attention_dim,
        norm_num_groups=norm_groups(channels),
        use_linear_projection=True,
    )


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int = 12) -> UNet2DConditionModel:
    """Give ``unet`` a first convolution with ``in_channels`` inputs, in place.

    The original weights are kept for the first channels and the new channels start at zero,
    so the widened UNet computes exactly what the original did while the new inputs are zero.
    ``unet.config.in_channels`` is updated, so ``save_pretrained``/``from_pretrained`` work.
    """
    old = unet.conv_in
    if in_channels < old.in_channels:
        raise ValueError(f"widen_conv_in: in_channels={in_channels} is fewer than the UNet's "
                         f"{old.in_channels}; expected at least {old.in_channels}")
    if in_channels == old.in_channels:
        return unet
    new = torch.nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
        padding=old.padding, bias=old.bias is not None,
    ).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def load_pretrained_unet(
    model_id_or_path: str | Path, subfolder: str | None = "unet", in_channels: int = 12
) -> UNet2DConditionModel:
    """A pretrained UNet (e.g. Stable Diffusion 2 inpainting, 9 channels) widened to
    ``in_channels``. ``model_id_or_path`` is a Hugging Face model id (downloads) or a local folder.
    """
    unet = UNet2DConditionModel.from_pretrained(str(model_id_or_path), subfolder=subfolder)
    return widen_conv_in(unet, in_channels)
