"""The try-on UNet: a diffusers ``UNet2DConditionModel`` on ``[x_t, E(I_w), E(I_a)]``.

GarDiff's denoiser sees 12 input channels: the noisy latent ``x_t``, the VAE latent of the
warped garment ``E(I_w)`` and that of the garment-agnostic person ``E(I_a)`` (4 each), and
predicts the noise (4 channels). It is either small, built from a profile, or a pretrained
Stable Diffusion inpainting UNet (9 input channels, ``[x_t, mask, E(masked image)]``) whose
first convolution is widened to 12: each pretrained weight moved to the input that means the
same (``x_t`` to ``x_t``, the masked image to ``E(I_a)``), ``E(I_w)`` starting at zero and the
mask channel dropped. :func:`add_input_channels` appends more inputs at zero (the recipe's
optional DensePose channels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from gardiffmini.models.memory import own_memory
from gardiffmini.profiles import Profile, norm_groups

N_CONDITION_LATENTS = 3  # x_t, E(I_w), E(I_a)


def make_unet(profile: Profile) -> UNet2DConditionModel:
    """A small try-on UNet at the scale of ``profile``, initialised at random.

    Stable Diffusion's shape: cross-attention in every resolution level but the lowest, and in
    the middle block; self-attention heads of ``profile.unet_head_dim`` channels (diffusers'
    ``attention_head_dim`` is, for historical reasons, the number of heads per level).
    """
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


def widen_conv_in(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Give a pretrained ``unet`` GarDiff's input ``[x_t, E(I_w), E(I_a)]``, in place.

    With ``c = unet.config.out_channels`` latent channels, the first convolution becomes one
    with ``3c`` inputs, each pretrained weight moved to the input that means the same:

    - Stable Diffusion inpainting (``2c + 1`` inputs, ``[x_t, mask, E(masked image)]``):
      ``x_t`` stays ``x_t``; the masked image's weights read ``E(I_a)``, the person with the
      garment region greyed out; ``E(I_w)``'s weights start at zero; the mask's weights are
      **dropped**, since GarDiff's input has no mask channel (GARDIFF.md, "UNet input"). The
      widened UNet fed ``E(I_w) = 0`` computes what the original computes with mask 0 and
      ``E(I_a)`` as the masked image; fine-tuning teaches it to find the hole from ``E(I_a)``.
    - A text-to-image UNet (``c`` inputs, ``x_t``): ``x_t`` stays; both latents start at zero.
    - A UNet that already has ``3c`` inputs is returned as it is.

    ``unet.config.in_channels`` is updated, so ``save_pretrained``/``from_pretrained`` work.
    """
    old = unet.conv_in
    c = unet.config.out_channels
    if old.in_channels == N_CONDITION_LATENTS * c:
        return unet
    if old.in_channels not in (c, 2 * c + 1):
        raise ValueError(
            f"widen_conv_in: a UNet with {old.in_channels} input channels and {c} output "
            f"channels; expected {c} (text-to-image: x_t), {2 * c + 1} (inpainting: x_t, "
            f"mask, masked image) or {N_CONDITION_LATENTS * c} (already [x_t, E(I_w), E(I_a)])")
    new = _zero_conv_like(old, N_CONDITION_LATENTS * c)
    with torch.no_grad():
        new.weight[:, :c] = old.weight[:, :c]  # x_t
        if old.in_channels == 2 * c + 1:  # the masked image's weights read E(I_a)
            new.weight[:, 2 * c:] = old.weight[:, c + 1:]
    unet.conv_in = new
    unet.register_to_config(in_channels=N_CONDITION_LATENTS * c)
    return unet


def add_input_channels(unet: UNet2DConditionModel, extra: int) -> UNet2DConditionModel:
    """Append ``extra`` input channels to ``unet``'s first convolution, in place, their
    weights at zero: the widened UNet computes exactly what ``unet`` did, whatever the new
    channels hold, until training teaches it to read them (how the recipe's ``pose_input``
    starts, :class:`~gardiffmini.objective.Recipe`). ``unet.config.in_channels`` is updated,
    so ``save_pretrained``/``from_pretrained`` work.
    """
    if extra < 1:
        raise ValueError(f"add_input_channels: extra must be >= 1, got {extra}")
    old = unet.conv_in
    new = _zero_conv_like(old, old.in_channels + extra)
    with torch.no_grad():
        new.weight[:, :old.in_channels] = old.weight
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet


def move_input_weights(unet: UNet2DConditionModel, source: int, target: int,
                       count: int) -> UNet2DConditionModel:
    """Move the first convolution's weights of input channels ``source:source+count`` to
    ``target:target+count``, in place, leaving the source channels at zero: the UNet reads
    the target channels as it read the source ones, and learns the source ones afresh (how
    the recipe's ``skin_init="agnostic"`` starts: the skin-primed agnostic latent takes over
    ``E(I_a)``'s weights)."""
    weight = unet.conv_in.weight
    if min(source, target) < 0 or max(source, target) + count > weight.shape[1] or count < 1:
        raise ValueError(f"move_input_weights: channels {source}:{source + count} -> "
                         f"{target}:{target + count} do not fit {weight.shape[1]} inputs")
    with torch.no_grad():
        moved = weight[:, source:source + count].clone()
        weight[:, source:source + count] = 0
        weight[:, target:target + count] = moved
    return unet


def _zero_conv_like(old: torch.nn.Conv2d, in_channels: int) -> torch.nn.Conv2d:
    """A convolution of ``in_channels`` inputs shaped like ``old`` otherwise (outputs, kernel,
    stride, padding, device, dtype), its weights at zero and ``old``'s bias copied."""
    new = torch.nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size,
        stride=old.stride, padding=old.padding, bias=old.bias is not None,
    ).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        if old.bias is not None:
            new.bias.copy_(old.bias)
    return new


def load_pretrained_unet(model_id_or_path: str | Path,
                         subfolder: str | None = "unet") -> UNet2DConditionModel:
    """A pretrained UNet (e.g. Stable Diffusion 2 inpainting, 9 channels) given GarDiff's input
    by :func:`widen_conv_in`, its weights in memory of their own
    (:func:`~gardiffmini.models.memory.own_memory`). ``model_id_or_path`` is a Hugging Face
    model id (downloads) or a local folder.
    """
    unet = UNet2DConditionModel.from_pretrained(str(model_id_or_path), subfolder=subfolder)
    return own_memory(widen_conv_in(unet))
